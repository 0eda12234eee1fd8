"""The paper network's parameter counts against the papers', the presets' proportions, the heads' structure."""
import pytest
import torch

from nss.cli import main
from nss.deploy.export import export_onnx
from nss.model.costs import (PAPER_NETWORKS, component_costs, count_flops, count_parameters, head_share_table,
                             paper_network_table)
from search_spaces import get_size, get_space, list_spaces
from supernet import build_network
from supernet.heads import HomographyHead
from supernet.paper import HOMOGRAPHY_BLOCKS

# What our build counts (a change to the modules shows up here first), each within ±10% of the paper's #P.
OUR_COUNTS = {"MOST-NET+ SW": 13_378_814, "MOST-NET+ DW": 30_135_040, "MOST-NET++": 8_585_524,
              "MOST-NSS++": 6_533_776}


def test_paper_network_reproduces_the_papers_parameter_counts():
    table = paper_network_table().set_index("network")
    assert set(table.index) == {p.name for p in PAPER_NETWORKS} == set(OUR_COUNTS)
    for paper in PAPER_NETWORKS:
        params = table.loc[paper.name, "params"]
        assert params == OUR_COUNTS[paper.name]
        assert abs(params / (paper.params_m * 1e6) - 1) <= 0.10, paper.name
    # what pruning saves: the papers' ratios within ±10%
    ratio = lambda a, b: table.loc[a, "params"] / table.loc[b, "params"]  # noqa: E731
    assert ratio("MOST-NET+ DW", "MOST-NET+ SW") == pytest.approx(29.8 / 13.2, rel=0.10)
    assert ratio("MOST-NET++", "MOST-NSS++") == pytest.approx(8.9 / 6.8, rel=0.10)


@pytest.mark.parametrize("space", list_spaces())
def test_smaller_presets_keep_the_paper_networks_proportions(space):
    shares = head_share_table(space, 32, 32).set_index(["size", "component"])
    components = shares.loc["paper"].index
    for size, tolerance in (("cpu", 3.0), ("tiny", 5.0)):  # percentage points
        for column in ("params_pct", "flops_pct"):
            ours, paper = shares.loc[size].loc[components, column], shares.loc["paper"][column]
            assert (ours - paper).abs().max() <= tolerance, (size, column, (ours - paper).abs().idxmax())


def test_component_costs_add_up_to_the_whole_network():
    network = build_network(get_space("most_net_pp"), get_size("tiny"))
    table = component_costs(network, 32, 32)
    assert table["params"].sum() == count_parameters(network)
    assert table["flops"].sum() == count_flops(network, 32, 32)
    assert set(network.heads) <= set(table["component"]) and {"encoder", "decoder@1"} <= set(table["component"])
    assert network.training  # counting leaves the network as it was


def test_homography_estimators_at_coarser_scales_are_truncations_of_the_finest():
    network = build_network(get_space("most_net_pp"), get_size("paper"))
    widths = {}
    for scale in (1, 2, 3):
        head = network.heads[f"homography@{scale}"]
        assert isinstance(head, HomographyHead)
        convs = [m for m in head.features if isinstance(m, torch.nn.Conv2d)]
        pools = [m for m in head.features if isinstance(m, torch.nn.MaxPool2d)]
        norms = [m for m in head.features if isinstance(m, torch.nn.BatchNorm2d)]
        assert len(convs) == len(pools) == len(norms)
        widths[scale] = tuple(c.out_channels for c in convs)
        assert head.regress[0].p == 0.2  # dropout before the regression layer
    assert widths[1] == HOMOGRAPHY_BLOCKS == (64, 128, 256, 256, 256)
    # "truncated from the second (s = 2) and third (s = 3) layers onwards": the layers from the s-th on are cut
    assert widths[2] == widths[1][:1] and widths[3] == widths[1][:2]


def test_flow_estimators_are_seven_convolutions_at_a_quarter_of_their_scale():
    network = build_network(get_space("most_net_plus"), get_size("paper"))
    for scale in (1, 2, 3):
        body = network.heads[f"flow@{scale}"].body
        convs = [m for m in body if isinstance(m, torch.nn.Conv2d)]
        assert len(convs) == 7 and [c.stride[0] for c in convs] == [2, 2, 1, 1, 1, 1, 1]
        assert convs[-1].out_channels == 2


def test_fp16_onnx_export_of_the_paper_heads_matches_pytorch(tmp_path):
    # fp16 keeps 11 significant bits (~5e-4 relative per operation); on outputs of order 1 through ~40 layers
    # the error stays below 1e-2 (measured: 3e-4 at 32×32).
    torch.manual_seed(0)
    network = build_network(get_space("most_net_pp"), get_size("paper"))
    report = export_onnx(network, tmp_path / "paper.onnx", 32, 32, fp16=True)
    assert report["precision"] == "fp16" and report["max_abs_diff"] < 1e-2


def test_nss_spaces_costs_prints_both_tables(capsys):
    assert main(["spaces", "costs", "most_net_pp", "--size", "32x32"]) == 0
    out = capsys.readouterr().out
    assert "MOST-NSS++" in out and "8.9 M" in out and "homography@1" in out and "paper FLOPs" in out
