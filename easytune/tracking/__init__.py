"""Tracking: a job's curves, plan and outcome in the tools people already use, offline, and jobs side by side.
Never imports the training stack: the app process runs all of it, outside the worker's loop.

    record          what a job recorded, gathered once: its curves with their times, plan, latest evaluation,
                    and the outcome figures a comparison shows (the one reader the writers and compare share)
    tensorboard_files   TensorBoard event files (the `tensorboard` package writes the records; optional)
    mlflow_files    a run in an MLflow file store, written as MLflow's plain files (MLflow is not needed)
    live            what a job whose plan turns tracking on writes while it runs and when it ends
    service         export_metrics: both, for any ended job, where the user says or under the home
    compare         jobs side by side: the settings that differ, what each run came to, the loss curves

Names are the same in both tools: `train/<name>` for what each step measures, `eval/<name>` for the
held-out evaluations during training, `evaluation/<bucket>/<side>_<figure>` for a stored evaluation.
"""

import importlib

# the service API, loaded on first use: jobs/create.py asks tensorboard_files whether the package is there
# and must not pull in the rest (which reads jobs back through easytune.jobs)
_OWNER_OF = {"export_metrics": "service", "compare_runs": "compare"}
__all__ = sorted(_OWNER_OF)


def __getattr__(name: str):
    if name not in _OWNER_OF:
        raise AttributeError(f"module 'easytune.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(f"easytune.tracking.{_OWNER_OF[name]}"), name)
