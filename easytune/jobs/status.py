"""How a job is doing, said once for the monitor, the CLI and the action menu: time left, warnings, log lines."""

from __future__ import annotations

import time

from easytune import health
from easytune.i18n import t
from easytune.jobs.folder import JobFolder
from easytune.jobs.rows import logged_params, metrics
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import open_db

PACE_FROM_STEP = 3  # the first steps pay for allocation and the forgetting score's pass over the base model


def time_left(settings: Settings, job: dict) -> float | None:
    """Seconds a running job has left, at the pace of its steps since the first few (evaluations between
    them included: they recur); None until that pace is known. Measured from the job's start, one slow
    first step made a 3-minute plan read "65 minutes left"."""
    if job["state"] != "RUNNING" or not job["total_steps"]:
        return None
    rows = open_db(settings.db_path).execute(
        "select step, t from job_metrics where job_id = ? and name = 'loss' and step >= ? order by step",
        [job["id"], PACE_FROM_STEP]).fetchall()
    if len(rows) < 2 or rows[-1][0] == rows[0][0]:
        return None
    (first, started), (last, now) = rows[0], rows[-1]
    return (now - started) / (last - first) * max(0, job["total_steps"] - last)


def event_text(data: dict, lang: str) -> str:
    """One job event as a log line in the user's language."""
    stamp = time.strftime("%H:%M:%S", time.localtime(data["t"]))
    if data["type"] == "state":
        return f"{stamp} {t('state.' + data['state'], lang)}"
    if data["type"] == "artifact":
        return f"{stamp} {t('cli.logs.artifact', lang, kind=data['kind'], path=data['path'])}"
    if data["type"] == "checkpoint":
        if data.get("val_loss") is None:
            return f"{stamp} {t('jobs.log.checkpoint', lang, step=data['step'])}"
        key = "jobs.log.checkpoint_best" if data.get("best") else "jobs.log.checkpoint_val"
        return f"{stamp} {t(key, lang, step=data['step'], val_loss=round(data['val_loss'], 4))}"
    key = data.get("key") or data.get("code")
    return f"{stamp} [{data.get('level', 'error')}] {t(key, lang, **(data.get('params') or {}))}"


def job_plan(job: dict) -> TrainingPlan | None:
    """The plan a job was created with; None while a job folder is being written or after it was lost."""
    folder = JobFolder(job["job_dir"])
    return folder.plan() if folder.plan_file.is_file() else None


def warnings(settings: Settings, job: dict) -> list[dict]:
    """The warnings a job's curves call for, judged with its own plan (knowledge retention is no advice to a
    run that already uses it): the one reading the monitor, the CLI and the action menu all show."""
    plan = job_plan(job)
    return health.assess(metrics(settings, job["id"]), job["total_steps"], plan.retention_ratio if plan else 0.0,
                         plan.forgetting_guard if plan else True, held_out_trusted(settings, job))


def held_out_trusted(settings: Settings, job: dict) -> bool:
    """Whether the run held out enough rows for their loss to tell anything: as many as the planner asks
    before it delivers the weights of the lowest validation loss (presets/intents.yaml, best_min_rows).
    True until the worker has said how many it holds out."""
    from easytune.plan.rules import load_intents

    split = logged_params(settings, job["id"], "train.log.data")
    return split is None or split.get("val", 0) >= load_intents().validation.best_min_rows
