"""Analysis of run folders: gradient conflicts, gate convergence, temperature robustness, scale gains, training
curves and quality-vs-latency Pareto fronts, as tidy pandas tables and matplotlib figures; `build_report` (the
`nss report` command) writes them all with a report.md."""
from nss.training.conflicts import cosine_matrix

from .figures import (plot_architecture, plot_conflicts, plot_gate_convergence, plot_pareto, plot_scale_gains,
                      plot_temperature_robustness, plot_training_curves)
from .report import build_report
from .tables import (architecture_table, conflict_rates, conflict_table, gate_table, group_conflict_rates,
                     pair_conflict_rates, pareto_table, scale_gain_table, validation_table)

__all__ = ["architecture_table", "build_report", "conflict_rates", "conflict_table", "cosine_matrix", "gate_table",
           "group_conflict_rates", "pair_conflict_rates", "pareto_table", "plot_architecture", "plot_conflicts",
           "plot_gate_convergence", "plot_pareto", "plot_scale_gains", "plot_temperature_robustness",
           "plot_training_curves", "scale_gain_table", "validation_table"]
