"""`nss spaces`."""
from __future__ import annotations

import argparse

from search_spaces import get_space, list_spaces

from ..config import check_frame_size
from ..errors import NSSError
from . import Command
from .options import frame_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "show", "costs"), default="list")
    parser.add_argument("name", nargs="?", help="preset name or JSON file (show; costs: default every preset)")
    parser.add_argument("--size", type=frame_size, default=(64, 64), metavar="HxW",
                        help="input size for the FLOPs shares (costs; default 64x64)")


def run(args: argparse.Namespace) -> None:
    if args.action == "show":
        if not args.name:
            raise NSSError("nss spaces show: give a space name or JSON file")
        print(get_space(args.name).to_json())
        return
    if args.action == "costs":
        print_costs([args.name] if args.name else list_spaces(), args.size)
        return
    for name in list_spaces():
        space = get_space(name)
        tasks = ", ".join(t.name for t in space.tasks)
        print(f"{name:16s} {tasks} × {space.scales} scales; {len(space.searchable)} searchable heads")


def print_costs(spaces: list[str], size: tuple[int, int]) -> None:
    """`nss spaces costs`: the paper networks' parameter counts, then every component's share per preset."""
    from ..model.costs import head_share_table, paper_network_table
    for name in spaces:
        check_frame_size(get_space(name), *size, "--size")
    papers = paper_network_table()
    papers["ours"] = (papers["params"] / 1e6).map("{:.2f} M".format)
    papers["paper"] = (papers["paper_params"] / 1e6).map("{:.1f} M".format)
    papers["deviation"] = papers["deviation_pct"].map("{:+.1f}%".format)
    print("The paper network (--network paper) against the parameter counts the papers report:\n")
    print(papers[["network", "space", "heads", "ours", "paper", "deviation", "source"]].to_string(index=False))
    for name in spaces:
        shares = head_share_table(name, *size)
        grid = shares.pivot_table(index="component", columns="size", values=["params_pct", "flops_pct"], sort=False)
        grid = grid.reindex(columns=[(v, s) for s in dict.fromkeys(shares["size"]) for v in ("params_pct", "flops_pct")])
        grid.columns = [f"{s} {'params' if v == 'params_pct' else 'FLOPs'}" for v, s in grid.columns]
        totals = shares.groupby("size", sort=False)[["params", "flops"]].sum()
        print(f"\n{name}: share of the supernet's parameters and FLOPs (%, two-frame forward at {size[0]}x{size[1]}); "
              + "; ".join(f"{s} {r.params / 1e6:.2f} M, {r.flops / 1e9:.2f} GFLOPs" for s, r in totals.iterrows()))
        print(grid.loc[list(dict.fromkeys(shares["component"]))].to_string(float_format=lambda v: f"{v:.1f}"))


SPACES = Command("spaces", "list search-space presets, show one as JSON, or what their parts cost", add_arguments, run,
                 "list: the presets; show NAME: a space as JSON; costs [NAME]: the paper networks' parameter counts "
                 "against the papers', and every component's share of parameters and FLOPs on each size preset.")
