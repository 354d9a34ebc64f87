"""What a user does to a job: stop, pause, resume, finish with the best checkpoint, restart, clone, delete."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from easytune.i18n import UserError
from easytune.jobs.create import create_job
from easytune.jobs.deliver import deliver_checkpoint
from easytune.jobs.events import (
    ACTIVE_STATES,
    EVENTS_FILE,
    PAUSE_FILE,
    RESUMABLE_STATES,
    STOP_FILE,
    EventWriter,
    read_events,
)
from easytune.jobs.folder import JobFolder
from easytune.jobs.follow import _apply, _follow_worker, _worker_alive
from easytune.jobs.guard import ACCEPTED, PAUSE_REASON
from easytune.jobs.rows import get_job
from easytune.jobs.spawn import SLOT_STATES, _children, start_job, start_next
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import open_db

RESUME_SETTINGS = ("learning_rate", "retention_ratio", "forgetting_guard")  # what a resumed run may change


def stop_job(settings: Settings, job_id: str, timeout: float = 20.0) -> dict:
    """Ask the worker to stop (it saves what it has), wait, and kill it if it does not answer.
    A waiting job just leaves the queue."""
    return _end_run(settings, job_id, "STOPPED", timeout)


def pause_job(settings: Settings, job_id: str, timeout: float = 20.0) -> dict:
    """Stop the worker so that it saves a checkpoint, and record PAUSED: `resume_job` continues from
    there. A waiting job leaves the queue until it is resumed."""
    job = get_job(settings, job_id)
    if job["state"] not in ACTIVE_STATES:
        raise UserError("jobs.error.not_pausable", job=job_id, state=job["state"])
    return _end_run(settings, job_id, "PAUSED", timeout)


def _end_run(settings: Settings, job_id: str, final: str, timeout: float) -> dict:
    db = open_db(settings.db_path)
    job, _ = _follow_worker(settings, job_id)
    if job["state"] == "PENDING" and _move(db, job_id, "PENDING", state=final, finished_at=time.time()):
        return get_job(settings, job_id)
    job = get_job(settings, job_id)  # it may have been started meanwhile
    if job["state"] not in SLOT_STATES:
        return job
    job_dir = Path(job["job_dir"])
    if final == "PAUSED":
        (job_dir / PAUSE_FILE).touch()  # before STOP: whoever reads the worker's STOPPED records PAUSED
    else:
        (job_dir / PAUSE_FILE).unlink(missing_ok=True)
    (job_dir / STOP_FILE).touch()
    signalled = None
    deadline = time.time() + timeout
    while time.time() < deadline and _worker_alive(job)[0]:
        if job.get("pid") != signalled:  # (a job claimed a moment ago gets its pid when spawned)
            _signal(job, signal.SIGTERM)
            signalled = job.get("pid")
        time.sleep(0.2)
        job = get_job(settings, job_id)
    if _worker_alive(job)[0]:
        _signal(job, signal.SIGKILL)
        time.sleep(0.5)
    job, _ = _follow_worker(settings, job_id)
    if job["state"] not in (final, "COMPLETED"):  # killed before it could say so: the user asked
        db["jobs"].update(job_id, {"state": final, "error": None, "finished_at": time.time()})
    start_next(settings)  # the device is free
    return get_job(settings, job_id)


def _move(db, job_id: str, expected: str, **changes) -> bool:
    """Compare-and-swap on the state column: apply `changes` only if the job is still `expected`."""
    names = ", ".join(f"{name} = ?" for name in changes)
    with db.conn:
        return bool(db.conn.execute(f"UPDATE jobs SET {names} WHERE id = ? AND state = ?",
                                    [*changes.values(), job_id, expected]).rowcount)


def _signal(job: dict, sig: int) -> None:
    try:
        os.killpg(job["pid"], sig)
    except (ProcessLookupError, PermissionError, TypeError):
        pass


def resume_job(settings: Settings, job_id: str, changes: dict | None = None) -> dict:
    """Continue a paused, stopped or interrupted job from its latest checkpoint, as the same job id and
    through the queue. Its curves keep the steps up to the checkpoint; the worker redoes the rest.
    `changes` (RESUME_SETTINGS only) apply from the checkpoint on: the plan is updated, and job.json
    records what was changed from which step. Resuming past a forgetting pause accepts the forgetting
    reached so far (easytune.train.guard)."""
    job = get_job(settings, job_id)
    if job["state"] not in RESUMABLE_STATES:
        raise UserError("jobs.error.not_resumable", job=job_id, state=job["state"])
    changes = dict(changes or {})
    for key in changes:
        if key not in RESUME_SETTINGS:
            raise UserError("jobs.error.resume_setting", key=key, choices=", ".join(RESUME_SETTINGS))
    db = open_db(settings.db_path)
    job_dir = Path(job["job_dir"])
    folder = JobFolder(job_dir)
    plan = folder.plan()
    if plan.num_machines > 1:  # only the main machine keeps checkpoints: the others could not pick up with it
        raise UserError("jobs.error.machines_resume", job=job_id)
    changed = TrainingPlan.from_dict({**plan.to_dict(), **changes})  # checked before anything is touched
    changes = {key: getattr(changed, key) for key in changes if getattr(changed, key) != getattr(plan, key)}
    checkpoint = JobFolder(job_dir).latest_checkpoint()
    trained = db.execute("SELECT 1 FROM job_metrics WHERE job_id = ? AND name = 'loss'", [job_id]).fetchone()
    if checkpoint is None and trained:
        raise UserError("jobs.error.no_checkpoint", job=job_id)
    step = int(checkpoint.rsplit("-", 1)[1]) if checkpoint else -1  # -1: not a step was trained, start over
    error = json.loads(job["error"]) if job.get("error") else {}
    accepted = error["params"].get("pct") if error.get("key") == PAUSE_REASON else None
    folder.update_resolved(resume_from=checkpoint, **({ACCEPTED: accepted} if accepted is not None else {}))
    if changes:
        changed.save(folder.plan_file)
        before = {key: getattr(plan, key) for key in changes}
        history = folder.resolved().get("plan_changes", [])
        folder.update_resolved(plan_changes=[*history, {"from_step": max(step, 0), "changes": changes,
                                                            "before": before}])
    for name in (STOP_FILE, PAUSE_FILE):
        (job_dir / name).unlink(missing_ok=True)
    offset = _seal_events(job_dir)
    if changes:  # in the job's own log, read from `offset` on like the resumed worker's events
        EventWriter(job_dir).log("jobs.log.resumed_with", step=max(step, 0),
                                 changes=", ".join(f"{key}: {before[key]} → {value}" for key, value in changes.items()))
    total = job["total_steps"] or 0
    if not _move(db, job_id, job["state"], state="PENDING", error=None, finished_at=None, pid=None,
                 pid_started_at=None, events_offset=offset, progress=max(step, 0) / total if total else 0.0):
        raise UserError("jobs.error.not_resumable", job=job_id, state=get_job(settings, job_id)["state"])
    with db.conn:  # the run after the checkpoint is done again: its points would be drawn twice
        db.conn.execute("DELETE FROM job_metrics WHERE job_id = ? AND step > ?", [job_id, step])
    start_next(settings)
    return get_job(settings, job_id)


def finish_job(settings: Settings, job_id: str) -> dict:
    """End a paused, stopped or interrupted job as COMPLETED with its best checkpoint (by validation
    loss; the latest where none was scored) as the result, instead of training on."""
    job = get_job(settings, job_id)
    if job["state"] not in RESUMABLE_STATES:
        raise UserError("jobs.error.not_finishable", job=job_id, state=job["state"])
    job_dir = Path(job["job_dir"])
    delivered = deliver_checkpoint(job_dir, job_id)
    offset = _seal_events(job_dir)
    writer = EventWriter(job_dir)  # the folder's own record says how it ended, as a worker's run would
    writer.log("jobs.log.finished_best" if delivered["best"] else "jobs.log.finished_latest", step=delivered["step"])
    writer.emit("artifact", kind=delivered["kind"], path=delivered["kind"])
    writer.state("COMPLETED")
    new, end = read_events(job_dir, offset)
    db = open_db(settings.db_path)
    update: dict = {}
    with db.conn:
        for event in new:
            _apply(db, job, event, update)
        update.update(error=None, events_offset=end)
        names = ", ".join(f"{name} = ?" for name in update)
        if not db.conn.execute(f"UPDATE jobs SET {names} WHERE id = ? AND state = ?",
                               [*update.values(), job_id, job["state"]]).rowcount:  # (rolls the events back)
            raise UserError("jobs.error.not_finishable", job=job_id, state=get_job(settings, job_id)["state"])
    from easytune.tracking.live import track

    job = get_job(settings, job_id)
    track(settings, job, new, ended=True)  # its MLflow run, where the plan asks, as a worker's end writes it
    return job


def _seal_events(job_dir: Path) -> int:
    """Where the resumed worker's events will start: the end of events.jsonl, after ending a line the
    killed worker may have left half-written (so the next event is not glued to it)."""
    path = job_dir / EVENTS_FILE
    if not path.exists():
        return 0
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                f.write(b"\n")
                size += 1
    return size


def restart_job(settings: Settings, job_id: str) -> dict:
    """A fresh run of an ended job's plan, as a new job (a clone with no changes): the old run keeps its
    curves, logs and failure reason to compare with, and each job id stays one run with one event log."""
    job = get_job(settings, job_id)
    if job["state"] in ACTIVE_STATES:
        raise UserError("jobs.error.still_active", job=job_id, state=job["state"])
    return clone_job(settings, job_id, {})


def clone_job(settings: Settings, job_id: str, changes: dict | None = None) -> dict:
    """A new job from another job's plan with `changes` applied (checked like any plan), put in line
    for the device."""
    source = get_job(settings, job_id)
    plan = JobFolder(source["job_dir"]).plan()
    changes = dict(changes or {})
    plan = TrainingPlan.from_dict({**plan.to_dict(), **changes})
    named = ", ".join(f"{key}={value}" for key, value in changes.items())
    job = create_job(settings, plan, f"{source['name']} · {named}" if named else source["name"])
    JobFolder(job["job_dir"]).update_resolved(clone_of=job_id, changes=changes or None)
    return start_job(settings, job["id"])


def delete_job(settings: Settings, job_id: str) -> dict:
    """Remove an ended or waiting job: its folder, curves, events, evaluations, its MLflow run and the exports
    the app wrote under its home. Refused while the job's worker runs."""
    job = get_job(settings, job_id)
    db = open_db(settings.db_path)
    exports = (list(db["exports"].rows_where("job_id = ?", [job_id])) if "exports" in db.table_names() else [])
    with db.conn:
        for table in ("job_metrics", "job_events", "evaluations", "exports"):
            if table in db.table_names():
                db.conn.execute(f"DELETE FROM {table} WHERE job_id = ?", [job_id])
        deleted = db.conn.execute("DELETE FROM jobs WHERE id = ? AND state NOT IN ('PREPARING', 'RUNNING')",
                                  [job_id]).rowcount
        if not deleted:  # (the with block rolls the other deletions back)
            raise UserError("jobs.error.still_active", job=job_id, state=get_job(settings, job_id)["state"])
    _children.pop(job_id, None)
    from easytune.tracking.mlflow_files import remove_run
    from easytune.tracking.service import mlflow_store

    remove_run(mlflow_store(settings), job_id)  # its run in the home's MLflow store (one the user chose is theirs)
    home = settings.home.resolve()
    for path in [Path(job["job_dir"])] + [Path(e["path"]) for e in exports if e.get("path")]:
        if not path.resolve().is_relative_to(home) or path.resolve() == home:
            continue  # only what the app wrote itself, never a folder of the user's
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return job
