"""Jobs: create, queue, launch the training worker as a subprocess, follow its events into SQLite,
stop, pause, resume, finish with the best checkpoint, restart, clone, delete, and recover after a
crash. Runs in the app (or CLI) process and never imports the training stack.

States: PENDING → PREPARING → RUNNING → COMPLETED | FAILED | STOPPED | PAUSED, and INTERRUPTED for a
run cut short from outside the training: its worker ended without saying how (killed, perhaps by the
system for lack of memory; or gone while nobody was watching, found on the next start), or it failed
for a cause the user can remove (a full disk), while it has a checkpoint to continue from. A worker
that ended without a word and left nothing to continue from is FAILED, with its signal or exit code,
unless nobody saw how it ended. A job is never left active once its worker is gone, and what its
worker left half-written is removed then. A job is PAUSED by the user or by the forgetting guard.
PAUSED, STOPPED and INTERRUPTED jobs resume from their latest checkpoint as the same job, back
through PENDING, or finish with their best checkpoint as the result.

The queue: one job holds the device (PREPARING or RUNNING) at a time; the others wait as PENDING and
start in creation order. There is no scheduler process: whoever follows jobs (the app's Monitor, a
CLI follower, any `easytune jobs` command) starts the next one when it sees the device free.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from importlib import metadata
from pathlib import Path

import psutil

from easytune import health
from easytune.datasets import job_split, resolve_dataset
from easytune.i18n import UserError, t
from easytune.job_folder import JobFolder
from easytune.models.registry import require_trainable, resolve_path
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import dumps, open_db
from easytune.train.deliver import deliver_checkpoint, deliverable_step, delivered_folder
from easytune.train.events import (
    ACTIVE_STATES,
    EVENTS_FILE,
    PAUSE_FILE,
    RESUMABLE_STATES,
    STOP_FILE,
    TERMINAL_STATES,
    EventWriter,
    read_events,
)
from easytune.train.guard import ACCEPTED, PAUSE_REASON
from easytune.train.launch import worker_command
from easytune.train.objective import resolve_objective
from easytune.train.partial import sweep

STACK = ("torch", "transformers", "peft", "accelerate")
SLOT_STATES = ("PREPARING", "RUNNING")  # a job in one of these holds the device
LAUNCH_GRACE_S = 30.0  # a job claimed for start whose worker has no pid yet is being spawned, not dead
SUGGESTIONS = ("retention", "lower_lr", "less_memory")
RESUME_SETTINGS = ("learning_rate", "retention_ratio", "forgetting_guard")  # what a resumed run may change
# worker failures whose cause lies outside the training and can be removed: the run continues from its checkpoint
RESUMABLE_FAILURES = ("train.error.disk_full",)
# the curves kept per job: a step event's figures, and an evaluation's under their stored names (DPO's
# held-out reward figures get a val_ prefix beside the training batch's own)
STEP_METRICS = ("loss", "lr", "tokens_per_s", "reward_margin", "reward_accuracy")
EVAL_METRICS = {"val_loss": "val_loss", "cf_score": "cf_score", "cf_pct": "cf_pct",
                "reward_margin": "val_reward_margin", "reward_accuracy": "val_reward_accuracy"}
_children: dict[str, subprocess.Popen] = {}  # workers this process started (so it can reap them)
_sync_lock = threading.Lock()


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("easytune", *STACK):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _cpu_bf16(settings: Settings, plan: TrainingPlan, model_path: Path) -> bool:
    """Whether precision "auto" trains in bf16 should the job run on this CPU: decided here, by the planner's
    measured rule, and kept with the job so that a resumed run computes as it began. The model's size is
    read from its weight files' headers: creating a job never waits for the training stack to import."""
    from easytune.models.calibrate import cpu_trains_bf16
    from easytune.models.inspect import stored_counts

    if plan.precision != "auto" or plan.device not in ("auto", "cpu"):
        return False
    return cpu_trains_bf16(settings, sum(stored_counts(model_path).values()))


def create_job(settings: Settings, plan: TrainingPlan, name: str | None = None) -> dict:
    """Validate what the plan names, write a self-contained job folder, record it as PENDING."""
    require_trainable(settings, plan.model)
    model_path = resolve_path(settings, plan.model)
    data = resolve_dataset(settings, plan.dataset)
    objective = resolve_objective(plan.objective, data.kind, data.name)  # preference pairs need dpo (or auto)
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    folder = JobFolder(job_dir)
    plan.save(folder.plan_file)
    train_file, val_file = job_split(data, plan.val_ratio, plan.seed, folder.data)
    resolved = {"job_id": job_id, "model_path": str(model_path), "train_file": str(train_file),
                "val_file": str(val_file) if val_file else None,
                "val_source": "val_file" if val_file == data.val_file else "holdout", "dataset": data.name,
                "dataset_sha256": data.sha256, "dataset_rows": data.rows, "dataset_kind": data.kind,
                "objective": objective,
                "versions": _versions(),
                "cache_dir": str(settings.folder("cache")), "cpu_bf16": _cpu_bf16(settings, plan, Path(model_path))}
    folder.write_resolved(resolved)
    row = {"id": job_id, "name": name or f"{Path(plan.model).name} · {data.name}", "state": "PENDING",
           "model": plan.model, "dataset": plan.dataset, "job_dir": str(job_dir), "created_at": time.time()}
    open_db(settings.db_path)["jobs"].insert(row)
    return get_job(settings, job_id)


def start_job(settings: Settings, job_id: str) -> dict:
    """Put a PENDING job in line for the device: it starts now if the device is free, else it waits
    (PENDING, with its queue_position) and starts when the jobs before it have ended."""
    job = get_job(settings, job_id)
    if job["state"] != "PENDING":
        raise UserError("jobs.error.not_pending", job=job_id, state=job["state"])
    start_next(settings)
    return get_job(settings, job_id)


def launch(settings: Settings, plan: TrainingPlan, name: str | None = None) -> dict:
    return start_job(settings, create_job(settings, plan, name)["id"])


def start_next(settings: Settings) -> dict | None:
    """Start the oldest PENDING job if no job holds the device; return it, or None.

    The app and several CLIs may call this at the same moment: the claim is one UPDATE that succeeds
    only while the job is still PENDING and no job holds the device, so exactly one of them starts it."""
    db = open_db(settings.db_path)
    while True:
        waiting = list(db["jobs"].rows_where("state = 'PENDING'", order_by="created_at, id", limit=1))
        if not waiting:
            return None
        with db.conn:
            claimed = db.conn.execute(
                "UPDATE jobs SET state = 'PREPARING', started_at = ?, finished_at = NULL, pid = NULL, "
                "pid_started_at = NULL WHERE id = ? AND state = 'PENDING' AND NOT EXISTS "
                "(SELECT 1 FROM jobs WHERE state IN ('PREPARING', 'RUNNING'))",
                [time.time(), waiting[0]["id"]]).rowcount
        if claimed:
            return _spawn(settings, waiting[0]["id"])
        if db.execute("SELECT 1 FROM jobs WHERE state IN ('PREPARING', 'RUNNING')").fetchone():
            return None  # the device is busy (perhaps another follower just started this very job)
        # the job left the queue (stopped, deleted) between the two statements: try the next one


def _spawn(settings: Settings, job_id: str) -> dict:
    """Run the worker for a job this process has claimed (PREPARING)."""
    job_dir = Path(get_job(settings, job_id)["job_dir"])
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    with open(JobFolder(job_dir).worker_log, "ab") as log:
        # Its own session: the job survives the app being closed, and is stopped as one group.
        command = worker_command(job_dir, JobFolder(job_dir).plan().num_processes)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _children[job_id] = proc
    try:
        born = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # already gone: the follower reads its exit code from our child
        born = time.time()
    open_db(settings.db_path)["jobs"].update(job_id, {"pid": proc.pid, "pid_started_at": born})
    return get_job(settings, job_id)


def get_job(settings: Settings, job_id: str) -> dict:
    """The job's row, with queue_position (1 = next to start) while it waits."""
    try:
        job = open_db(settings.db_path)["jobs"].get(job_id)
    except Exception:  # sqlite_utils.db.NotFoundError
        raise UserError("jobs.error.unknown", job=job_id) from None
    job["queue_position"] = _positions(settings).get(job_id)
    return job


def list_jobs(settings: Settings, state: str | None = None) -> list[dict]:
    where, args = ("state = ?", [state]) if state else (None, None)
    positions = _positions(settings)
    return [dict(row, queue_position=positions.get(row["id"]))
            for row in open_db(settings.db_path)["jobs"].rows_where(where, args, order_by="created_at desc")]


def queue(settings: Settings) -> list[dict]:
    """The jobs waiting for the device, next first, each with its queue_position."""
    rows = open_db(settings.db_path)["jobs"].rows_where("state = 'PENDING'", order_by="created_at, id")
    return [dict(row, queue_position=n) for n, row in enumerate(rows, 1)]


def _positions(settings: Settings) -> dict[str, int]:
    rows = open_db(settings.db_path).execute("SELECT id FROM jobs WHERE state = 'PENDING' ORDER BY created_at, id")
    return {job_id: n for n, (job_id,) in enumerate(rows, 1)}


def metrics(settings: Settings, job_id: str) -> dict[str, list[tuple[int, float]]]:
    """{name: [(step, value), …]} in step order."""
    out: dict[str, list[tuple[int, float]]] = {}
    rows = open_db(settings.db_path)["job_metrics"].rows_where("job_id = ?", [job_id], order_by="step")
    for row in rows:
        out.setdefault(row["name"], []).append((row["step"], row["value"]))
    return out


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


def events(settings: Settings, job_id: str, types=("log", "error", "artifact", "state", "checkpoint")) -> list[dict]:
    marks = ",".join("?" * len(types))
    rows = open_db(settings.db_path)["job_events"].rows_where(
        f"job_id = ? and type in ({marks})", [job_id, *types], order_by="t")
    return [dict(row, data=json.loads(row["data"])) for row in rows]


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


# ---- following a worker -------------------------------------------------------------------------

def _worker_alive(job: dict) -> tuple[bool, int | None]:
    """(alive, exit code if known). Checks our own child first; else the pid and its start time."""
    proc = _children.get(job["id"])
    if proc is not None and proc.pid == job.get("pid"):  # (an older run's child says nothing of this one)
        code = proc.poll()
        return code is None, code
    if not job.get("pid"):  # claimed: another follower is spawning the worker right now
        return time.time() - (job.get("started_at") or 0) < LAUNCH_GRACE_S, None
    try:
        same = abs(psutil.Process(job["pid"]).create_time() - (job["pid_started_at"] or 0)) < 1
        return same and psutil.Process(job["pid"]).status() != psutil.STATUS_ZOMBIE, None
    except psutil.Error:
        return False, None


def _apply(db, job: dict, event: dict, update: dict) -> None:
    kind = event["type"]
    if kind == "state":
        state = event["state"]
        if state == "STOPPED" and (Path(job["job_dir"]) / PAUSE_FILE).exists():
            state = "PAUSED"  # the worker stops the same way either way; the user asked for a pause
        if state == "FAILED" and event.get("reason") in RESUMABLE_FAILURES and latest_checkpoint(job["job_dir"]):
            state = "INTERRUPTED"  # once the user has removed the cause, the run continues where it was
        update["state"] = state
        if state in TERMINAL_STATES:
            update["finished_at"] = event["t"]
        if event.get("reason"):
            update["error"] = dumps({"key": event["reason"], "params": event.get("params") or {}})
    elif kind == "step":
        update["progress"] = event["step"] / max(1, event["total_steps"])
        update["total_steps"] = event["total_steps"]
        db["job_metrics"].insert_all(
            {"job_id": job["id"], "step": event["step"], "name": name, "value": event[name], "t": event["t"]}
            for name in STEP_METRICS if event.get(name) is not None)
    elif kind == "eval":
        db["job_metrics"].insert_all(
            {"job_id": job["id"], "step": event["step"], "name": stored, "value": event[name], "t": event["t"]}
            for name, stored in EVAL_METRICS.items() if event.get(name) is not None)
    if kind != "step":
        level = event.get("level") or ("error" if kind == "error" else "info")
        db["job_events"].insert({"job_id": job["id"], "t": event["t"], "type": kind, "level": level,
                                 "data": dumps(event)})


def _death_of(job: dict, code: int | None) -> dict:
    """The state of a job whose worker ended without saying so: INTERRUPTED where it can continue from a
    checkpoint, whoever watched; else FAILED with the signal or exit code, where we saw it end."""
    checkpoint = latest_checkpoint(Path(job["job_dir"]))
    if code is None:  # not our child (the app or CLI that started it is gone): how it ended is unknown
        return {"state": "INTERRUPTED", "error": dumps({"key": "jobs.error.interrupted", "params": {}})}
    if code < 0:  # a signal: SIGKILL is what the system's out-of-memory killer sends
        key, params = "jobs.error.killed", {"signal": -code}
    else:
        key, params = "jobs.error.exited", {"code": code}
    if checkpoint is None:
        return {"state": "FAILED", "error": dumps({"key": key, "params": params})}
    params["step"] = int(checkpoint.rsplit("-", 1)[1])  # jobs.error.killed_resumable, jobs.error.exited_resumable
    return {"state": "INTERRUPTED", "error": dumps({"key": key + "_resumable", "params": params})}


def _follow_worker(settings: Settings, job_id: str) -> tuple[dict, bool]:
    """Read a running job's new events into SQLite and settle its state if the worker is gone.
    Returns (job row, whether its run ended just now)."""
    with _sync_lock:
        db = open_db(settings.db_path)
        job = get_job(settings, job_id)
        if job["state"] not in SLOT_STATES:
            return job, False
        alive, code = _worker_alive(job)  # before reading: events written before death are all read
        new, offset = read_events(Path(job["job_dir"]), job["events_offset"])
        if new:  # claim these events first: the app and a CLI may follow the same job at once
            with db.conn:
                claimed = db.conn.execute("UPDATE jobs SET events_offset = ? WHERE id = ? AND events_offset = ?",
                                          [offset, job_id, job["events_offset"]]).rowcount
            if not claimed:
                return get_job(settings, job_id), False
        update: dict = {}
        with db.conn:
            for event in new:
                _apply(db, job, event, update)
            if not alive and update.get("state", job["state"]) not in TERMINAL_STATES:
                update.update(_death_of(job, code))
                update["finished_at"] = time.time()
            if update:
                db["jobs"].update(job_id, update)
        if not alive:
            _children.pop(job_id, None)
            sweep(JobFolder(job["job_dir"]).checkpoints)  # a save the worker was killed in will never finish
        job = get_job(settings, job_id)
        return job, job["state"] not in SLOT_STATES


def sync_job(settings: Settings, job_id: str) -> dict:
    """Follow one job: read its worker's new events, settle its state if the worker is gone, and when
    the device is free (this job just ended, or it waits in the queue) start the next job in line."""
    job, ended = _follow_worker(settings, job_id)
    if job["state"] == "PENDING":  # its turn comes when the holder ends: check on the holder too
        for holder in list_jobs(settings):
            if holder["state"] in SLOT_STATES:
                _follow_worker(settings, holder["id"])
    if ended or job["state"] == "PENDING":
        start_next(settings)
    return get_job(settings, job_id)


def sync_active(settings: Settings) -> list[dict]:
    """Follow every active job and start the next one in line. On start-up this is also the recovery:
    a job whose worker died with the last app or CLI becomes INTERRUPTED, one whose worker still runs
    is re-attached, and a queue nobody was watching moves on."""
    for job in list_jobs(settings):
        if job["state"] in SLOT_STATES:
            _follow_worker(settings, job["id"])
    start_next(settings)
    return [job for job in list_jobs(settings) if job["state"] in ACTIVE_STATES]


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


# ---- resume, restart, clone, delete ---------------------------------------------------------------

def latest_checkpoint(job_dir: Path) -> str | None:
    """The worker's latest checkpoint as `checkpoints/step-N` (relative to the job folder), or None."""
    try:
        latest = json.loads((JobFolder(job_dir).checkpoints / "index.json").read_text(encoding="utf-8"))["latest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"checkpoints/{latest}" if latest and (JobFolder(job_dir).checkpoints / latest).is_dir() else None


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
    changed = TrainingPlan.from_dict({**plan.to_dict(), **changes})  # checked before anything is touched
    changes = {key: getattr(changed, key) for key in changes if getattr(changed, key) != getattr(plan, key)}
    checkpoint = latest_checkpoint(job_dir)
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
    return get_job(settings, job_id)


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


ADAPTER_SHAPE = ("model", "method", "lora_r", "target_modules")  # what a new version must keep to train on


def next_version(settings: Settings, job_id: str, dataset: str, changes: dict | None = None) -> dict:
    """Version N+1 of a finished job's model: its plan on new data (its feedback, or a new file), training on
    from its adapter instead of from the base, put in line for the device. The lineage (first job, version
    number, previous job) is kept in the new job's record."""
    source = get_job(settings, job_id)
    if source["state"] != "COMPLETED":
        raise UserError("jobs.error.next_needs_finished", job=job_id, state=source["state"])
    folder = JobFolder(source["job_dir"])
    if not folder.adapter.is_dir():
        raise UserError("jobs.error.next_needs_adapter", job=job_id)
    changes = dict(changes or {})
    kept = [key for key in ADAPTER_SHAPE if key in changes]
    if kept:
        raise UserError("jobs.error.next_keeps_shape", key=kept[0], keys=", ".join(ADAPTER_SHAPE))
    # the new data decides what is learned (labelled feedback after answers trains with KTO), unless set
    plan = TrainingPlan.from_dict({**folder.plan().to_dict(), "objective": "auto", **changes, "dataset": dataset})
    lineage = folder.resolved().get("lineage", job_id)
    version = max(_record(j).get("version", 1) for j in _lineage(settings, lineage)) + 1  # after the newest
    job = create_job(settings, plan, f"{source['name'].split(' · v')[0]} · v{version}")
    JobFolder(job["job_dir"]).update_resolved(start_adapter=str(folder.adapter), version=version, lineage=lineage,
                                              previous=job_id)
    return start_job(settings, job["id"])


def versions(settings: Settings, job_id: str) -> list[dict]:
    """Every version of the model this job belongs to, first to last: id, version, state, and its latest
    verdict and forgetting score where it was evaluated (the same evaluation, version beside version)."""
    from easytune.evaluation.service import list_evaluations

    lineage = _record(get_job(settings, job_id)).get("lineage", job_id)
    out = []
    for job in _lineage(settings, lineage):
        record = _record(job)
        quality = next(iter(list_evaluations(settings, job_id=job["id"], kind="quality")), None)
        result = quality["result"] if quality else {}
        out.append({"id": job["id"], "name": job["name"], "version": record.get("version", 1),
                    "previous": record.get("previous"), "state": job["state"], "dataset": job["dataset"],
                    "verdict": result.get("verdict"), "cf_pct": (result.get("forgetting") or {}).get("cf_pct"),
                    "buckets": {name: {k: v for k, v in bucket.items() if k != "samples"}
                                for name, bucket in (result.get("buckets") or {}).items()}})
    return sorted(out, key=lambda v: v["version"])


def _lineage(settings: Settings, lineage: str) -> list[dict]:
    """The jobs of one lineage: its first job and every version made from it."""
    return [job for job in list_jobs(settings) if job["id"] == lineage or _record(job).get("lineage") == lineage]


def _record(job: dict) -> dict:
    folder = JobFolder(job["job_dir"])
    return folder.resolved() if folder.resolved_file.is_file() else {}


def suggested_changes(settings: Settings, job_id: str, action: str) -> dict:
    """Plan changes for a rerun: 'retention' mixes general text back in (30 %) at half the learning
    rate, against forgetting; 'lower_lr' takes 0.3 × the learning rate, against a diverging loss;
    'less_memory' halves the batch (the same effective batch), else recomputes activations, else
    halves the length, after running out of memory."""
    plan = JobFolder(get_job(settings, job_id)["job_dir"]).plan()
    if action == "retention":
        return {"retention_ratio": max(plan.retention_ratio, health.RETENTION_SHARE),
                "learning_rate": _round(plan.learning_rate * 0.5)}
    if action == "lower_lr":
        return {"learning_rate": _round(plan.learning_rate * 0.3)}
    if action == "less_memory":  # the out-of-memory message's own advice, in its order
        if plan.batch_size > 1:
            smaller = plan.batch_size // 2
            return {"batch_size": smaller, "grad_accum": plan.grad_accum * plan.batch_size // smaller}
        if not plan.grad_checkpointing:
            return {"grad_checkpointing": True}
        return {"max_seq_len": max(64, plan.max_seq_len // 2)}
    raise UserError("jobs.error.unknown_suggestion", action=action, choices=", ".join(SUGGESTIONS))


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def job_plan(job: dict) -> TrainingPlan | None:
    """The plan a job was created with; None while a job folder is being written or after it was lost."""
    folder = JobFolder(job["job_dir"])
    return folder.plan() if folder.plan_file.is_file() else None


def warnings(settings: Settings, job: dict) -> list[dict]:
    """The warnings a job's curves call for, judged with its own plan (knowledge retention is no advice to a
    run that already uses it): the one reading the monitor, the CLI and the action menu all show."""
    plan = job_plan(job)
    return health.assess(metrics(settings, job["id"]), job["total_steps"], plan.retention_ratio if plan else 0.0,
                         plan.forgetting_guard if plan else True)


def available_actions(settings: Settings, job: dict) -> list[str]:
    """What a user can do with a job in its state, in the order to offer them. Besides the lifecycle
    actions: 'lower_lr' after a diverging loss, 'retention' after a forgetting warning (see suggested_changes),
    done as a resume ('resume_retention', 'resume_lower_lr') where a checkpoint allows; and 'finish_best',
    which ends a resumable job with its best checkpoint as the result."""
    state = job["state"]
    if state == "PENDING":
        return ["pause", "stop", "delete"]
    if state in SLOT_STATES:
        return ["pause", "stop"]
    job_dir = Path(job["job_dir"])
    resumable = state in RESUMABLE_STATES and latest_checkpoint(job_dir) is not None
    error = json.loads(job["error"]) if job.get("error") else {}
    warned = {w["key"] for w in warnings(settings, job)}
    forgetting = "health.forgetting" in warned or error.get("key") == PAUSE_REASON
    plan = job_plan(job)
    retained = plan is not None and plan.retention_ratio >= health.RETENTION_SHARE  # retention is on already
    actions = ["resume"] if resumable else []
    if resumable and forgetting:
        actions += ["resume_lower_lr"] if retained else ["resume_retention", "resume_lower_lr"]
    if resumable and deliverable_step(job_dir) and delivered_folder(job_dir):
        actions.append("finish_best")
    if state != "COMPLETED":
        actions.append("restart")
    if error.get("key") == "train.error.diverged" or warned & {"health.diverged", "health.spike"}:
        actions.append("lower_lr")
    if error.get("key", "").startswith("train.error.oom") or _killed_for_memory(error):
        actions.append("less_memory")
    if forgetting and not resumable:
        actions.append("lower_lr" if retained else "retention")
    return list(dict.fromkeys([*actions, "clone", "delete"]))  # (a diverged and forgetting run: one lower_lr)


def _killed_for_memory(error: dict) -> bool:
    """Killed by SIGKILL, which is what the system's out-of-memory killer sends."""
    killed = error.get("key", "").startswith("jobs.error.killed")
    return killed and (error.get("params") or {}).get("signal") == signal.SIGKILL


def delete_job(settings: Settings, job_id: str) -> dict:
    """Remove an ended or waiting job: its folder, curves, events, evaluations and the exports the app
    wrote under its home. Refused while the job's worker runs."""
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
    home = settings.home.resolve()
    for path in [Path(job["job_dir"])] + [Path(e["path"]) for e in exports if e.get("path")]:
        if not path.resolve().is_relative_to(home) or path.resolve() == home:
            continue  # only what the app wrote itself, never a folder of the user's
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return job


class Monitor:
    """Follows every active job in the background, so states and plots move without a browser."""

    def __init__(self, settings: Settings, interval: float = 1.0):
        self.settings, self.interval = settings, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="easytune-monitor", daemon=True)

    def start(self) -> Monitor:
        sync_active(self.settings)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                sync_active(self.settings)
            except Exception as exc:  # noqa: BLE001 — a bad read must not kill the follower
                print(f"easytune monitor: {exc}", file=sys.stderr)

    def close(self) -> None:
        self._stop.set()


def perform(settings: Settings, job_id: str, action: str) -> dict:
    """Run one of available_actions() on a job; returns the job it leaves the user looking at (a clone for
    restart, clone, lower_lr, retention and less_memory; the same job for the others)."""
    simple = {"pause": pause_job, "stop": stop_job, "resume": resume_job, "restart": restart_job,
              "delete": delete_job}
    if action in simple:
        return simple[action](settings, job_id)
    if action == "clone":
        return clone_job(settings, job_id)
    if action in ("lower_lr", "retention", "less_memory"):
        return clone_job(settings, job_id, suggested_changes(settings, job_id, action))
    if action in ("resume_lower_lr", "resume_retention"):
        return resume_job(settings, job_id, suggested_changes(settings, job_id, action.removeprefix("resume_")))
    if action == "finish_best":
        return finish_job(settings, job_id)
    raise UserError("jobs.error.unknown_action", action=action)
