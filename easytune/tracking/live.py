"""What a job whose plan turns tracking on writes as it runs, and after it is evaluated. The follower
(jobs/follow.py: the app's monitor, or the CLI waiting on a job) hands over each batch of worker events it has
just stored, so the training process and its loop pay nothing: TensorBoard's event file in the job folder
grows as the events are read (a second or so behind the worker), and the MLflow run is written when the job
ends, from SQLite. A stored evaluation adds its figures to both.

A write that fails (a full disk; the tensorboard package removed since the job was created) must not stop
the following of the job: it is noted once in the job's log, as a warning, and the curves stay in SQLite,
from which `easytune jobs export-metrics` writes them again.
"""

from __future__ import annotations

import time

from easytune.i18n import UserError
from easytune.jobs.folder import JobFolder
from easytune.jobs.status import job_plan
from easytune.settings import Settings
from easytune.store import dumps, open_db

_noted: set[tuple[str, str]] = set()  # (job id, tool) whose failure this process has written in the log
_plans: dict = {}  # plan file -> (its mtime, the plan): the follower asks every second, the file rarely changes


def _plan_of(job: dict):
    """The job's plan, read again only when its file changed (a resume with new settings rewrites it)."""
    path = JobFolder(job["job_dir"]).plan_file
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return None
    if _plans.get(path, (None,))[0] != stamp:
        try:
            _plans[path] = (stamp, job_plan(job))
        except UserError:  # a plan nobody can read: the worker says so; following the job goes on
            _plans[path] = (stamp, None)
    return _plans[path][1]


def track(settings: Settings, job: dict, events: list[dict], ended: bool) -> None:
    """After the follower stored `events` of `job` (ended: its run has just ended)."""
    plan = _plan_of(job)
    if plan is None or not (plan.tensorboard or plan.mlflow):
        return
    if plan.tensorboard and events:
        _noting_failure(settings, job["id"], "tensorboard", lambda: _append(job, plan.to_dict(), events))
    if plan.mlflow and ended:
        from easytune.tracking.record import collect
        from easytune.tracking.service import mlflow_store, write_mlflow

        _noting_failure(settings, job["id"], "mlflow",
                        lambda: write_mlflow(collect(settings, job["id"]), mlflow_store(settings)))


def evaluated(settings: Settings, job_id: str) -> None:
    """After an evaluation of the job is stored: its figures and verdict join the job's TensorBoard file and
    MLflow run, where the plan keeps them (both written anew: the job has ended)."""
    from easytune.jobs.rows import get_job
    from easytune.tracking.service import USUAL, export_metrics

    plan = _plan_of(get_job(settings, job_id))
    if plan is None or not (plan.tensorboard or plan.mlflow):
        return
    _noting_failure(settings, job_id, "tensorboard" if plan.tensorboard else "mlflow",
                    lambda: export_metrics(settings, job_id, tensorboard=USUAL if plan.tensorboard else None,
                                           mlflow=USUAL if plan.mlflow else None))


def _append(job: dict, plan: dict, events: list[dict]) -> None:
    from easytune.jobs.follow import metric_rows
    from easytune.tracking.record import tracked_name
    from easytune.tracking.service import tensorboard_dir, write_header
    from easytune.tracking.tensorboard_files import EventFile

    with EventFile(tensorboard_dir(job)) as tensorboard:
        if tensorboard.new:
            write_header(tensorboard, plan, job["id"], events[0]["t"])
        for event in events:
            if event["type"] == "state" and event["state"] == "PREPARING":
                resumed = JobFolder(job["job_dir"]).resolved().get("resume_from")
                if resumed:  # the worker measures the steps after its checkpoint again
                    tensorboard.restart(int(resumed.rsplit("-", 1)[1]) + 1, event["t"])
            for row in metric_rows(job["id"], event):
                tensorboard.scalar(tracked_name(row["name"]), row["value"], row["step"], row["t"])


def _noting_failure(settings: Settings, job_id: str, tool: str, write) -> None:
    try:
        write()
    except (OSError, UserError) as exc:
        if (job_id, tool) in _noted:
            return
        _noted.add((job_id, tool))
        key, params = ((exc.key, exc.params) if isinstance(exc, UserError)  # its own words, in either language
                       else ("tracking.log.write_failed", {"tool": tool, "detail": str(exc)}))
        data = {"v": 1, "t": time.time(), "type": "log", "level": "warning", "key": key, "params": params}
        open_db(settings.db_path)["job_events"].insert({"job_id": job_id, "t": data["t"], "type": "log",
                                                        "level": "warning", "data": dumps(data)})
