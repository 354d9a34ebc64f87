"""Sweeps: "try several settings". Short trials of one plan with some settings varied around the planner's
values, each an ordinary job in the queue (stop, resume and crash recovery as for any job), compared by
what the user cares about (held-out fact accuracy, else validation loss) with forgetting as a constraint;
the best is then trained in full.

    space       what varies, over which values; a trial's plan and the full plan of its values
    metric      what trials are compared by, and when one forgets too much
    record      the `sweeps` and `sweep_trials` tables: create, show, best, stop
    driver      running a sweep: optuna proposes, the queue trains, the pruner stops the hopeless

    sweep = create_sweep(settings, "plan.yaml", trials=6, vary="learning_rate,lora_r,epochs")
    run_sweep(settings, sweep["id"])            # blocks, like `easytune train`
    train_best(settings, sweep["id"])           # the best trial's values, trained in full

Nothing here imports the training stack; optuna is imported by the driver when a sweep runs.
"""

from easytune.sweep.driver import run_sweep, start_in_background
from easytune.sweep.record import (
    best_plan,
    create_sweep,
    get_sweep,
    list_sweeps,
    show_sweep,
    stop_sweep,
    train_best,
)
from easytune.sweep.space import DEFAULT_VARY, variable_settings

__all__ = ["DEFAULT_VARY", "best_plan", "create_sweep", "get_sweep", "list_sweeps", "run_sweep", "show_sweep",
           "start_in_background", "stop_sweep", "train_best", "variable_settings"]
