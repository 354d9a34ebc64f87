"""A sweep's record in SQLite (`sweeps`, `sweep_trials`): what was asked, what each trial tried and how it did,
and the best so far. The CLI and the app read it without the sampler; the driver (easytune.sweep.driver)
writes it. A sweep is RUNNING while a driver works on it, STOPPED when the user stopped it, COMPLETED
after its last trial; one RUNNING with no live driver (the app or CLI that ran it is gone) reads as
INTERRUPTED. Stopped and interrupted sweeps continue where they were.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from pathlib import Path

import psutil

from easytune.i18n import UserError, t
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import dumps, open_db
from easytune.sweep.metric import HIGHER_IS_BETTER, choose_metric, require_validation
from easytune.sweep.space import checked_values, full_plan, parse_vary, search_space

DEFAULT_TRIALS = 6
DEFAULT_FRACTION = 0.3  # a trial trains 30 % of the plan's steps: six trials cost about two full runs
DEFAULT_PRUNE_AFTER = 2  # trials that must have finished before another can be stopped early
MAX_TRIALS = 200
TRIAL_STATES = ("RUNNING", "COMPLETE", "PRUNED", "INFEASIBLE", "FAILED")
FINISHED = ("COMPLETE", "PRUNED", "INFEASIBLE", "FAILED")


def create_sweep(settings: Settings, plan: TrainingPlan | str | Path, *, trials: int = DEFAULT_TRIALS,
                 vary=None, metric: str = "auto", fraction: float = DEFAULT_FRACTION, tries: list[dict] | None = None,
                 prune_after: int = DEFAULT_PRUNE_AFTER) -> dict:
    """Record a sweep of `plan` (a TrainingPlan or a plan file): everything is checked here, before a trial runs.
    `tries`: values to try first, one trial each ({setting: value}), after the plan's own values."""
    from easytune.models.registry import require_trainable, resolve_path

    plan = plan if isinstance(plan, TrainingPlan) else TrainingPlan.load(Path(plan))
    if not 1 <= int(trials) <= MAX_TRIALS:
        raise UserError("sweep.error.bad_trials", trials=trials, most=MAX_TRIALS)
    if not 0 < float(fraction) <= 1:
        raise UserError("sweep.error.bad_fraction", fraction=fraction)
    if int(prune_after) < 0:
        raise UserError("sweep.error.bad_prune_after", value=prune_after)
    vary = parse_vary(vary)
    tries = [checked_values(plan, vary, values) for values in tries or []]
    space = search_space(plan, vary, tries)
    require_trainable(settings, plan.model)
    resolve_path(settings, plan.model)  # (an unknown model is named now, not at the first trial)
    require_validation(settings, plan)
    chosen = choose_metric(settings, plan, metric)
    own = {name: getattr(plan, name) for name in vary}  # the first trial: the plan itself, the one to beat
    sweep_id = "sw-" + uuid.uuid4().hex[:8]
    row = {"id": sweep_id, "name": f"{Path(plan.model).name} · {plan.dataset}", "state": "RUNNING",
           "plan": dumps(plan.to_dict()), "vary": dumps(vary), "space": dumps(space), "metric": chosen,
           "trials": int(trials), "fraction": float(fraction), "prune_after": int(prune_after),
           "first": dumps([own, *tries][:int(trials)]), "created_at": time.time()}
    open_db(settings.db_path)["sweeps"].insert(row)
    return get_sweep(settings, sweep_id)


def get_sweep(settings: Settings, sweep_id: str) -> dict:
    try:
        row = open_db(settings.db_path)["sweeps"].get(sweep_id)
    except Exception:  # sqlite_utils.db.NotFoundError
        raise UserError("sweep.error.unknown", sweep=sweep_id) from None
    for name in ("plan", "vary", "space", "first"):
        row[name] = json.loads(row[name])
    row["error"] = json.loads(row["error"]) if row["error"] else None
    row["shown_state"] = "INTERRUPTED" if row["state"] == "RUNNING" and not driver_alive(row) else row["state"]
    return row


def list_sweeps(settings: Settings) -> list[dict]:
    """Every sweep, newest first, with its trials counted and its best metric."""
    ids = [row["id"] for row in open_db(settings.db_path)["sweeps"].rows_where(order_by="created_at desc")]
    out = []
    for sweep_id in ids:
        shown = show_sweep(settings, sweep_id)
        out.append({key: shown[key] for key in ("id", "name", "state", "metric", "trials", "done", "fraction",
                                                "vary", "created_at")}
                   | {"best_metric": shown["best"]["metric"] if shown["best"] else None})
    return out


def trial_rows(settings: Settings, sweep_id: str) -> list[dict]:
    rows = open_db(settings.db_path)["sweep_trials"].rows_where("sweep_id = ?", [sweep_id], order_by="number")
    return [dict(row, params=json.loads(row["params"]), error=json.loads(row["error"]) if row["error"] else None)
            for row in rows]


def best_of(metric: str, trials: list[dict]) -> dict | None:
    """The best feasible, finished trial: by the metric, then the lower validation loss, then the earlier trial."""
    candidates = [row for row in trials if row["state"] == "COMPLETE" and row["metric"] is not None]
    if not candidates:
        return None
    sign = -1 if HIGHER_IS_BETTER[metric] else 1
    return min(candidates, key=lambda row: (sign * row["metric"], row["val_loss"] if row["val_loss"] is not None
                                            else math.inf, row["number"]))


def show_sweep(settings: Settings, sweep_id: str) -> dict:
    """The sweep with its trials table, its best trial and the plan that trains the best in full."""
    sweep = get_sweep(settings, sweep_id)
    trials = trial_rows(settings, sweep_id)
    best = best_of(sweep["metric"], trials)
    plan = TrainingPlan.from_dict(sweep["plan"])
    for row in trials:
        row["best"] = best is not None and row["number"] == best["number"]
    infeasible_only = not best and any(row["state"] == "INFEASIBLE" for row in trials)
    best_file = best_file_path(settings, sweep_id)
    return {**{k: v for k, v in sweep.items() if k not in ("shown_state", "driver_pid", "driver_started_at")},
            "state": sweep["shown_state"], "higher_is_better": HIGHER_IS_BETTER[sweep["metric"]],
            "done": sum(1 for row in trials if row["state"] in FINISHED), "rows": trials, "best": best,
            "best_plan": full_plan(plan, best["params"]).to_dict() if best else None,
            "best_plan_file": str(best_file) if best and best_file.is_file() else None,
            "no_best": None if best else "sweep.no_best_forgetting" if infeasible_only else "sweep.no_best"}


def best_file_path(settings: Settings, sweep_id: str) -> Path:
    return settings.home / "sweeps" / sweep_id / "best.yaml"


def best_plan(settings: Settings, sweep_id: str) -> TrainingPlan:
    """The plan that trains the best trial's values in full (not the trial's short run)."""
    shown = show_sweep(settings, sweep_id)
    if not shown["best"]:
        raise UserError(shown["no_best"] + "_error", sweep=sweep_id)
    return TrainingPlan.from_dict(shown["best_plan"])


def write_best(settings: Settings, sweep_id: str, lang: str = "en") -> Path | None:
    """best.yaml beside the sweep: `easytune train --config` trains it. Rewritten whenever the best changes."""
    shown = show_sweep(settings, sweep_id)
    if not shown["best"]:
        return None
    path = best_file_path(settings, sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    TrainingPlan.from_dict(shown["best_plan"]).save(path, lang)
    return path


def train_best(settings: Settings, sweep_id: str, lang: str = "en") -> dict:
    """The best trial's values trained in full: an ordinary job in the queue."""
    from easytune import jobs

    plan = best_plan(settings, sweep_id)
    return jobs.launch(settings, plan, name=t("sweep.best_job_name", lang, sweep=sweep_id))


def record_trial(settings: Settings, sweep_id: str, number: int, params: dict) -> dict:
    open_db(settings.db_path)["sweep_trials"].insert({"sweep_id": sweep_id, "number": number, "params": dumps(params),
                                                      "state": "RUNNING", "created_at": time.time()})
    return next(row for row in trial_rows(settings, sweep_id) if row["number"] == number)


def update_trial(settings: Settings, sweep_id: str, number: int, **changes) -> None:
    if "error" in changes and changes["error"] is not None:
        changes["error"] = dumps(changes["error"])
    if changes.get("state") in FINISHED:
        changes.setdefault("finished_at", time.time())
    open_db(settings.db_path)["sweep_trials"].update((sweep_id, number), changes)


def open_trial(settings: Settings, sweep_id: str) -> dict | None:
    """The trial that is running (or was, when its sweep stopped): the sweep continues with it."""
    return next((row for row in trial_rows(settings, sweep_id) if row["state"] == "RUNNING"), None)


def set_state(settings: Settings, sweep_id: str, state: str, error: dict | None = None) -> None:
    changes = {"state": state, "error": dumps(error) if error else None}
    if state == "COMPLETED":
        changes["finished_at"] = time.time()
    open_db(settings.db_path)["sweeps"].update(sweep_id, changes)


def stop_sweep(settings: Settings, sweep_id: str) -> dict:
    """Stop a sweep: its running trial's job stops (the normal stop), and the sweep waits to be continued."""
    from easytune import jobs
    from easytune.jobs.events import ACTIVE_STATES

    sweep = get_sweep(settings, sweep_id)
    if sweep["state"] == "COMPLETED":
        raise UserError("sweep.error.finished", sweep=sweep_id)
    set_state(settings, sweep_id, "STOPPED")
    trial = open_trial(settings, sweep_id)
    if trial and trial["job_id"]:
        try:
            if jobs.get_job(settings, trial["job_id"])["state"] in ACTIVE_STATES:
                jobs.stop_job(settings, trial["job_id"])
        except UserError:  # the job was deleted: the driver records the trial as failed when it continues
            pass
    return show_sweep(settings, sweep_id)


# ---- the driver's claim: one driver per sweep at a time ------------------------------------------------------

def driver_alive(row: dict) -> bool:
    if not row.get("driver_pid"):
        return False
    try:
        process = psutil.Process(row["driver_pid"])
        return abs(process.create_time() - (row["driver_started_at"] or 0)) < 1 and (
            process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def claim(settings: Settings, sweep_id: str) -> dict:
    """Make this process the sweep's driver (a stopped or interrupted sweep runs again). One UPDATE that succeeds
    only while the driver seen here is still the one recorded, so two starting at once cannot both win."""
    sweep = get_sweep(settings, sweep_id)
    if sweep["state"] == "COMPLETED":
        raise UserError("sweep.error.finished", sweep=sweep_id)
    if driver_alive(sweep):
        raise UserError("sweep.error.driven", sweep=sweep_id, pid=sweep["driver_pid"])
    db = open_db(settings.db_path)
    with db.conn:
        won = db.conn.execute(
            "UPDATE sweeps SET state = 'RUNNING', error = NULL, driver_pid = ?, driver_started_at = ? WHERE id = ? "
            "AND state != 'COMPLETED' AND coalesce(driver_pid, 0) = ? AND coalesce(driver_started_at, 0) = ?",
            [os.getpid(), psutil.Process().create_time(), sweep_id, sweep["driver_pid"] or 0,
             sweep["driver_started_at"] or 0]).rowcount
    if not won:
        raise UserError("sweep.error.driven", sweep=sweep_id, pid=get_sweep(settings, sweep_id)["driver_pid"])
    return get_sweep(settings, sweep_id)


def release(settings: Settings, sweep_id: str) -> None:
    open_db(settings.db_path)["sweeps"].update(sweep_id, {"driver_pid": None, "driver_started_at": None})
