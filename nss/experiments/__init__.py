"""Many-run experiments: trials are ordinary runs recorded in an experiment folder, run on Ray Tune (or one after
another in this process); sweeps, Optuna tuning, ground truths, and where a search stands in one (rank)."""

# What a tuning study can optimise: objective → (Optuna direction, the trial result's key); and its name in the
# study's storage. Here, free of Optuna, for the command line.
OBJECTIVES = {"delta_mtl": ("maximize", "delta_mtl"), "latency": ("minimize", "latency_ms"),
              "params": ("minimize", "params"), "flops": ("minimize", "flops")}
STUDY_NAME = "nss-tune"
