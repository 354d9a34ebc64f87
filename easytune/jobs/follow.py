"""Following a worker: its new events into SQLite, its state settled when it is gone, the next job started
when the device is free. On start-up this is also the recovery (sync_active)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil

from easytune.jobs.events import ACTIVE_STATES, PAUSE_FILE, TERMINAL_STATES, read_events
from easytune.jobs.folder import JobFolder
from easytune.jobs.partial import sweep
from easytune.jobs.rows import get_job, list_jobs
from easytune.jobs.spawn import LAUNCH_GRACE_S, SLOT_STATES, _children, start_next
from easytune.settings import Settings
from easytune.store import dumps, open_db

# the curves kept per job: a step event's figures, and an evaluation's under their stored names (DPO's
# held-out reward figures get a val_ prefix beside the training batch's own)
# "tokens": a step's tokens, with its time: the speed a plan's estimate reads, evaluations included
STEP_METRICS = ("loss", "lr", "tokens", "tokens_per_s", "reward_margin", "reward_accuracy")
EVAL_METRICS = {"val_loss": "val_loss", "cf_score": "cf_score", "cf_pct": "cf_pct",
                "reward_margin": "val_reward_margin", "reward_accuracy": "val_reward_accuracy"}

# worker failures whose cause lies outside the training and can be removed: the run continues from its checkpoint
RESUMABLE_FAILURES = ("train.error.disk_full",)
_sync_lock = threading.Lock()


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


def metric_rows(job_id: str, event: dict) -> list[dict]:
    """The points of the job's curves a worker event adds, under their stored names (none for most kinds)."""
    names = {"step": {name: name for name in STEP_METRICS}, "eval": EVAL_METRICS}.get(event["type"], {})
    return [{"job_id": job_id, "step": event["step"], "name": stored, "value": event[name], "t": event["t"]}
            for name, stored in names.items() if event.get(name) is not None]


def _apply(db, job: dict, event: dict, update: dict) -> None:
    kind = event["type"]
    if kind == "state":
        state = event["state"]
        if state == "STOPPED" and (Path(job["job_dir"]) / PAUSE_FILE).exists():
            state = "PAUSED"  # the worker stops the same way either way; the user asked for a pause
        resumable = event.get("reason") in RESUMABLE_FAILURES and JobFolder(job["job_dir"]).latest_checkpoint()
        if state == "FAILED" and resumable:
            state = "INTERRUPTED"  # once the user has removed the cause, the run continues where it was
        update["state"] = state
        if state in TERMINAL_STATES:
            update["finished_at"] = event["t"]
        if event.get("reason"):
            update["error"] = dumps({"key": event["reason"], "params": event.get("params") or {}})
    elif kind == "step":
        update["progress"] = event["step"] / max(1, event["total_steps"])
        update["total_steps"] = event["total_steps"]
    db["job_metrics"].insert_all(metric_rows(job["id"], event))
    if kind != "step":
        level = event.get("level") or ("error" if kind == "error" else "info")
        db["job_events"].insert({"job_id": job["id"], "t": event["t"], "type": kind, "level": level,
                                 "data": dumps(event)})


def _death_of(job: dict, code: int | None) -> dict:
    """The state of a job whose worker ended without saying so: INTERRUPTED where it can continue from a
    checkpoint, whoever watched; else FAILED with the signal or exit code, where we saw it end."""
    checkpoint = JobFolder(job["job_dir"]).latest_checkpoint()
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
        ended = job["state"] not in SLOT_STATES
        if new or ended:  # TensorBoard and MLflow, where the plan asks: outside the worker, as events arrive
            from easytune.tracking.live import track

            track(settings, job, new, ended)
        return job, ended


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
