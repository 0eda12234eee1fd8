"""`nss report`: figures (PNG), the tables behind them (CSV) and report.md for a set of run folders."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pandas as pd
from matplotlib.figure import Figure

from nss.io import staged_directory
from search_spaces import Architecture

from . import figures, tables
from .tables import Runs, run_config, run_label

# name → (figure, table behind it, the one sentence report.md says about it)
SECTIONS: dict[str, tuple[Callable[[Runs], Figure], Callable[[Runs], pd.DataFrame], str]] = {
    "conflicts": (figures.plot_conflicts, tables.conflict_rates,
                  "Share of measured updates in which at least two tasks' gradients on the shared parameters point "
                  "against each other (cosine < 0), per epoch, per task pair and per module group."),
    "gate_convergence": (figures.plot_gate_convergence, tables.gate_table,
                         "Gate on-probabilities and mean refinement magnitudes |Δ| of every searchable head during "
                         "the search (mean across runs, band from min to max)."),
    "temperature_robustness": (figures.plot_temperature_robustness, tables.architecture_table,
                               "The heads each search kept, one column per search run ordered by temperature τ."),
    "scale_gains": (figures.plot_scale_gains, tables.scale_gain_table,
                    "Every metric at every scale (upsampled to full resolution), for the supernet and the derived "
                    "networks: what each scale adds to each task."),
    "training_curves": (figures.plot_training_curves, tables.validation_table,
                        "Validation metrics over retraining, one curve per run labelled by its task balancing."),
    "pareto": (figures.plot_pareto, tables.pareto_table,
               "Median batch-1 latency against the multi-task score Δ_MTL; the red line is the Pareto front."),
}
# What the runs table shows of each run's config.yaml: common settings, then those of its command.
COMMON_KEYS = ("command", "network", "data", "frame_size", "seed")
COMMAND_KEYS = {"search": ("tau", "sparsity", "sparsity_kind", "pretrain_steps", "search_steps", "from_run"),
                "pretrain": ("pretrain_steps",),
                "retrain": ("architecture", "balancing", "retrain_steps", "augment")}


def build_report(runs: Runs, out: str | Path, force: bool = False) -> Path:
    """Write OUT/report.md with every figure the runs have data for, each next to its CSV table."""
    runs = [Path(r) for r in runs]
    for run in runs:
        run_config(run)  # a clear error for anything that is not a run folder
    with staged_directory(out, force, "report folder") as folder:
        lines = ["# NSS report", "", "## Runs", "", "| run | " + " | ".join(COMMON_KEYS) + " | settings |",
                 "|---" * (len(COMMON_KEYS) + 2) + "|"]
        for run in runs:
            config = run_config(run)
            settings = ", ".join(f"{k}={config[k]}" for k in COMMAND_KEYS.get(config.get("command"), ())
                                 if config.get(k) is not None)
            lines.append(f"| {run_label(run)} | " + " | ".join(str(config.get(k, "")) for k in COMMON_KEYS)
                         + f" | {settings} |")
        lines.append("")
        for name, (plot, table_of, sentence) in SECTIONS.items():
            table = table_of(runs)
            if not len(table):
                lines += [f"## {name.replace('_', ' ')}", "", "_No run given has the data for this figure._", ""]
                continue
            table.to_csv(folder / f"{name}.csv", index=False)
            plot(runs).savefig(folder / f"{name}.png", dpi=110)
            lines += [f"## {name.replace('_', ' ')}", "", sentence, "", f"![{name}]({name}.png)", "",
                      f"Data: [{name}.csv]({name}.csv)", ""]
        for run in runs:
            arch_path = run / "architecture.json"
            if arch_path.is_file():
                data = json.loads(arch_path.read_text())
                figure = figures.plot_architecture(Architecture.from_dict(data), data.get("gates"))
                figure.savefig(folder / f"architecture_{run_label(run)}.png", dpi=110)
                lines += [f"## architecture of {run_label(run)}", "",
                          "Kept and dropped heads (with the final gate on-probabilities of a search).", "",
                          f"![architecture](architecture_{run_label(run)}.png)", ""]
        (folder / "report.md").write_text("\n".join(lines))
    return Path(out)
