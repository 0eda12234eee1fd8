"""Neural Scale Search for multi-task, multi-scale video networks.

Every `nss` command is a thin wrapper over a function here: `search`, `pretrain`, `retrain`, `evaluate_run`,
`export_run`, `profile_target`, `sweep`, `tune`, `write_synthetic`, `check_folder`, `derive`, `list_spaces`;
`nss.metrics`, `nss.balancing` and `nss.costs` hold the metrics, task balancers and cost tables, `nss.trials`
the machinery of many-trial experiments on Ray Tune.
"""
from search_spaces import Architecture, SearchSpace, get_space, list_spaces

from .config import RunConfig, resolve_config
from .data import SyntheticSpec, check_folder, open_dataset, write_synthetic
from .derive import architecture_table, derive, derive_architecture, gate_probabilities, save_architecture
from .errors import DataError, NonFiniteLossError, NSSError
from .gates import Gates, sparsity_penalty
from .runs import SearchResult, evaluate_run, export_run, pretrain, profile_target, retrain, search
from .groundtruth import groundtruth
from .predict import predict
from .rank import rank
from .sweep import sweep
from .tune import tune
from .trials import Resources

__all__ = ["Architecture", "DataError", "Gates", "NSSError", "NonFiniteLossError", "RunConfig", "SearchResult",
           "SearchSpace", "SyntheticSpec", "architecture_table", "check_folder", "derive", "derive_architecture",
           "gate_probabilities", "get_space", "list_spaces", "open_dataset", "evaluate_run", "export_run", "profile_target", "pretrain", "resolve_config", "retrain",
           "save_architecture", "search", "sparsity_penalty", "groundtruth", "predict", "rank", "sweep", "tune", "Resources", "write_synthetic"]
