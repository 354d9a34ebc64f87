"""What a sweep's trials are compared by, and how far each may forget.

The metric is what the user cares about: held-out fact accuracy where the data's answers carry facts
(numbers, names, codes: easytune.evaluation.facts), else validation loss. Either way forgetting is a
constraint, not a trade: a trial whose forgetting score passes the warning threshold (presets/health.yaml,
the monitor's own warning) is infeasible, however well it scores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from easytune.i18n import UserError
from easytune.plan.schema import TrainingPlan
from easytune.plan.task_choice import answers_carry_facts
from easytune.settings import Settings

METRICS = ("auto", "val_loss", "fact_accuracy")
HIGHER_IS_BETTER = {"val_loss": False, "fact_accuracy": True}
MEASURE_TIMEOUT_S = 3600


def choose_metric(settings: Settings, plan: TrainingPlan, asked: str) -> str:
    """The metric a sweep compares by: `auto` picks fact accuracy where the data has facts."""
    if asked not in METRICS:
        raise UserError("sweep.error.bad_metric", metric=asked, choices=", ".join(METRICS))
    has = answers_carry_facts(settings, plan.dataset, plan.seed)
    if asked == "fact_accuracy" and not has:
        raise UserError("sweep.error.no_facts", dataset=plan.dataset)
    return asked if asked != "auto" else "fact_accuracy" if has else "val_loss"


def require_validation(settings: Settings, plan: TrainingPlan) -> None:
    """Trials are compared on held-out rows: a plan that holds none out cannot be swept."""
    from easytune.datasets import resolve_dataset

    if not plan.val_ratio and resolve_dataset(settings, plan.dataset).val_file is None:
        raise UserError("sweep.error.no_validation")


def delivered_val_loss(plan: TrainingPlan, series: dict) -> float | None:
    """The validation loss of what the job delivered: its best evaluation where the plan keeps the best, else its
    last (step 0 is the untrained model, never delivered)."""
    values = [value for step, value in series.get("val_loss", []) if step > 0]
    if not values:
        return None
    return min(values) if plan.keep_best else values[-1]


def forgetting(series: dict) -> tuple[float | None, float | None]:
    """(share %, nats/token) of the job's last forgetting measurement."""
    pct, nats = series.get("cf_pct"), series.get("cf_score")
    return (pct[-1][1] if pct else None), (nats[-1][1] if nats else None)


def forgets_too_much(pct: float | None, nats: float | None) -> bool:
    from easytune.health import forgetting_level

    return pct is not None and nats is not None and forgetting_level(pct, nats) is not None


def fact_accuracy(settings: Settings, job_id: str) -> dict:
    """The job's held-out fact accuracy, measured in a process of its own (easytune.evaluation.held_out), so the
    app or CLI that drives the sweep never loads the training stack. A failure is a UserError."""
    env = dict(os.environ, EASYTUNE_HOME=str(settings.home))
    try:
        done = subprocess.run([sys.executable, "-m", "easytune.evaluation.held_out", job_id], capture_output=True,
                              text=True, env=env, timeout=MEASURE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise UserError("sweep.error.measure_failed", job=job_id, detail="timeout") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        raise UserError("sweep.error.measure_failed", job=job_id,
                        detail=(done.stderr.strip().splitlines() or ["?"])[-1][:300]) from None
    if "error" in result:
        raise UserError(result["error"], **result["params"])
    return result
