"""Neural Scale Search for multi-task, multi-scale video networks.

Every `nss` command is a thin wrapper over a function here, the pipeline in order: `write_synthetic`,
`check_folder` (data); `pretrain`, `search`, `retrain` (training); `derive`; `evaluate_run`; `profile_target`,
`export_run`, `predict` (deployment); `sweep`, `tune`, `groundtruth`, `rank` (many-run experiments).
`TrainedModel.load(run)` opens a trained run without its training data. ARCHITECTURE.md says where each part
lives. Names are imported on first use, so that `import nss` (and `nss --help`) costs nothing.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Architecture": "search_spaces", "SearchSpace": "search_spaces", "get_space": "search_spaces",
    "list_spaces": "search_spaces",
    "RunConfig": "nss.config", "resolve_config": "nss.config",
    "NSSError": "nss.errors", "DataError": "nss.errors", "NonFiniteLossError": "nss.errors",
    "SyntheticSpec": "nss.data", "check_folder": "nss.data", "open_dataset": "nss.data", "write_synthetic": "nss.data",
    "Gates": "nss.scale_search.gates", "sparsity_penalty": "nss.scale_search.gates",
    "architecture_table": "nss.scale_search.derive", "derive_architecture": "nss.scale_search.derive",
    "save_architecture": "nss.scale_search.derive",
    "TrainedModel": "nss.runs.trained", "derive": "nss.runs.trained",
    "SearchResult": "nss.training.phases", "pretrain": "nss.training.api", "search": "nss.training.api",
    "retrain": "nss.training.api",
    "evaluate_run": "nss.evaluation.runs",
    "export_run": "nss.deploy.export", "profile_target": "nss.deploy.targets", "predict": "nss.deploy.predict",
    "Resources": "nss.experiments.runner", "sweep": "nss.experiments.sweep", "tune": "nss.experiments.tune",
    "groundtruth": "nss.experiments.groundtruth", "rank": "nss.experiments.rank",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nss' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
