"""`nss report`: figures (PNG), the tables behind them (CSV) and report.md for a set of run folders."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from nss.errors import DataError
from nss.experiments.experiment import is_experiment
from nss.io import staged_directory
from nss.runs.folder import RunFolder
from search_spaces import Architecture

from . import experiments, figures, qualitative, tables
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
    "architecture_frequency": (experiments.plot_architecture_frequency, experiments.architecture_frequency_table,
                               "Per temperature τ, the share of the searches (seeds, other settings) that kept each "
                               "head, and how many found the most frequent architecture (table: "
                               "architecture_modal.csv)."),
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
COMMAND_KEYS = {"search": ("tau", "sparsity", "sparsity_kind", "gate_warmup", "select", "min_gain", "contiguous",
                           "pretrain_steps", "search_steps", "from_run"),
                "pretrain": ("pretrain_steps",),
                "retrain": ("architecture", "balancing", "retrain_steps", "augment")}


def _shown(key: str, value: object) -> str:
    """A setting as the runs table shows it: a run folder (or a run's architecture.json) by its run label, not its
    full path."""
    if key == "from_run":
        return run_label(value)
    if key == "architecture" and str(value).endswith(".json"):
        return run_label(Path(value).parent) + "/" + Path(value).name
    return str(value)


def build_report(paths: Runs, out: str | Path, force: bool = False) -> Path:
    """Write OUT/report.md with every figure the runs have data for, each next to its CSV table. Sweep and tune
    folders stand for their trials' run folders, and add their own figures."""
    given, experiment_folders = experiments.expand_runs(paths)
    runs = [Path(r) for r in given]
    for run in runs:
        run_config(run)  # a clear error for anything that is not a run folder
    with staged_directory(out, force, "report folder") as folder:
        lines = ["# NSS report", ""]
        if experiment_folders:
            lines += ["Experiments: " + ", ".join(f"`{p}`" for p in experiment_folders), ""]
        lines += ["## Runs", "", "| run | " + " | ".join(COMMON_KEYS) + " | settings |",
                  "|---" * (len(COMMON_KEYS) + 2) + "|"]
        for run in runs:
            config = run_config(run)
            settings = ", ".join(f"{k}={_shown(k, config[k])}" for k in COMMAND_KEYS.get(config.get("command"), ())
                                 if config.get(k) is not None)
            lines.append(f"| {run_label(run)} | " + " | ".join(str(config.get(k, "")) for k in COMMON_KEYS)
                         + f" | {settings} |")
        lines.append("")
        for name, (plot, table_of, sentence) in SECTIONS.items():
            table = table_of(runs)
            if not len(table):
                lines += [f"## {name.replace('_', ' ')}", "", "_No run given has the data for this figure._", ""]
                continue
            lines += _section(folder, name, plot(runs), table, sentence)
            if name == "architecture_frequency":
                experiments.modal_architecture_table(runs).to_csv(folder / "architecture_modal.csv", index=False)
        for experiment in experiment_folders:
            kind = is_experiment(experiment)
            lines += _tune_sections(folder, experiment) if kind == "tune" else \
                _groundtruth_sections(folder, experiment, runs) if kind == "groundtruth" else []
        for run in map(Path, paths):  # per run given directly (an experiment's trials have the frequency)
            if not is_experiment(run) and (RunFolder(run).checkpoints / RunFolder.LAST).is_file():
                lines += _outputs_section(folder, run)
            arch_path = run / RunFolder.ARCHITECTURE
            if arch_path.is_file():
                data = json.loads(arch_path.read_text())
                figure = figures.plot_architecture(Architecture.from_dict(data), data.get("gates"))
                figure.savefig(folder / f"architecture_{run_label(run)}.png", dpi=110)
                lines += [f"## architecture of {run_label(run)}", "",
                          "Kept and dropped heads (with the final gate on-probabilities of a search).", "",
                          f"![architecture](architecture_{run_label(run)}.png)", ""]
        (folder / "report.md").write_text("\n".join(lines))
    return Path(out)


def _outputs_section(folder: Path, run: Path) -> list[str]:
    """A run's outputs on a few validation frames of its data (said so where that data is not here)."""
    title = f"outputs_{run_label(run)}"
    try:
        figure = qualitative.plot_outputs(run)
    except DataError as err:  # e.g. a run whose data folder has moved: the rest of the report stands
        return [f"## {title.replace('_', ' ')}", "", f"_No outputs figure: {err}._", ""]
    return _section(folder, title, figure, None,
                    f"What each scale of {run_label(run)} adds: every head's output on a few validation frames, at "
                    "full resolution, next to the ground truth (flows and the flows homographies imply in the "
                    "Middlebury colour wheel).")


def _section(folder: Path, name: str, figure: Figure, table: pd.DataFrame | None, sentence: str) -> list[str]:
    """Save a figure (and the table behind it) into the report folder; the lines of report.md that show them."""
    figure.savefig(folder / f"{name}.png", dpi=110)
    lines = [f"## {name.replace('_', ' ')}", "", sentence, "", f"![{name}]({name}.png)", ""]
    if table is not None:
        table.to_csv(folder / f"{name}.csv", index=False)
        lines += [f"Data: [{name}.csv]({name}.csv)", ""]
    return lines


def _groundtruth_sections(folder: Path, experiment: Path, runs: list[Path]) -> list[str]:
    """A ground truth's architectures with the searches' picks, the heads' marginal values beside their gates, and
    the distribution of Δ_MTL with the picks' percentiles."""
    ranking_path = experiment / "ranking.csv"
    if not ranking_path.is_file():
        return []
    prefix = f"{experiment.name}_"
    picks = experiments.search_picks(experiment, runs)
    lines = _section(folder, prefix + "groundtruth", experiments.plot_groundtruth(experiment, picks),
                     pd.read_csv(ranking_path),
                     "Every architecture of the space, retrained under one budget, on the latency / Δ_MTL plane "
                     "with its Pareto front; a star marks an architecture a search found, with its rank.")
    lines += _section(folder, prefix + "marginal_values", experiments.plot_marginal_values(experiment, runs), None,
                      "Each head's measured value (mean Δ_MTL of the architectures with it minus those without) "
                      "beside the final gate on-probability the searches gave it.")
    lines += _section(folder, prefix + "delta_distribution", experiments.plot_delta_distribution(experiment, picks),
                      picks if len(picks) else None,
                      "The distribution of Δ_MTL over the space, and the percentile of each search's pick.")
    return lines


def _tune_sections(folder: Path, experiment: Path) -> list[str]:
    """A tune folder's Pareto front of its trials and Optuna's own plots of the study."""
    trials = experiments.tune_trials(experiment)
    if not len(trials) or not (trials["status"] == "done").any():
        return []
    prefix = f"{experiment.name}_"
    lines = _section(folder, prefix + "pareto", experiments.plot_tune_pareto(experiment), trials,
                     "Every tuning trial's median latency against its validation Δ_MTL; the red line joins the "
                     "study's Pareto set (pareto.csv).")
    for name, figure in experiments.optuna_figures(experiment).items():
        lines += _section(folder, prefix + name, figure, None,
                          "Optuna's optimisation history and parameter importances of the first objective.")
        plt.close(figure)
    return lines
