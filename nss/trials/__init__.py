"""Many-run experiments (DESIGN §10): trials are ordinary runs, executed on Ray Tune, recorded in an experiment
folder from which a killed experiment resumes. Sweeps (`nss.sweep`), tuning (`nss.tune`) and ground truth use it."""
from .experiment import Experiment, Trial, is_experiment
from .jobs import JOBS, execute
from .runner import WAIT, ListSource, Resources, TrialSource, progress_bar, ray_session, run_trials

__all__ = ["Experiment", "JOBS", "ListSource", "Resources", "Trial", "TrialSource", "execute", "is_experiment",
           "progress_bar", "ray_session", "run_trials", "WAIT"]
