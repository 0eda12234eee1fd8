"""Search spaces, architectures and presets as plain data. Imports no torch."""
from .architecture import Architecture, is_architecture_file
from .presets import (DEFAULT_SPACE, TASKS, NetworkSize, every_task_at_every_scale, get_size, get_space,
                      list_sizes, list_spaces)
from .space import (MOTION_KINDS, TASK_KINDS, Metric, SearchSpace, SpaceError, TaskSpec, head_name,
                    parse_head, read_json)

__all__ = ["Architecture", "is_architecture_file", "DEFAULT_SPACE", "TASKS", "NetworkSize", "every_task_at_every_scale", "get_size",
           "get_space", "list_sizes", "list_spaces", "MOTION_KINDS", "TASK_KINDS", "Metric", "SearchSpace",
           "SpaceError", "TaskSpec", "head_name", "parse_head", "read_json"]
