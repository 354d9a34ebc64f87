"""Jobs: create, launch the training worker as a subprocess, follow its events into SQLite, stop,
and recover after a crash. Runs in the app (or CLI) process and never imports the training stack.

States: PENDING → PREPARING → RUNNING → COMPLETED | FAILED | STOPPED, and INTERRUPTED for a job
whose worker vanished while nobody was watching (found on the next start). A job is never left
active once its worker is gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from importlib import metadata
from pathlib import Path

import psutil

from easytune.datasets import resolve_dataset
from easytune.i18n import UserError, t
from easytune.models.registry import resolve_path
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import dumps, open_db
from easytune.train.events import ACTIVE_STATES, STOP_FILE, TERMINAL_STATES, read_events

STACK = ("torch", "transformers", "peft", "accelerate")
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


def create_job(settings: Settings, plan: TrainingPlan, name: str | None = None) -> dict:
    """Validate what the plan names, write a self-contained job folder, record it as PENDING."""
    model_path = resolve_path(settings, plan.model)
    data = resolve_dataset(settings, plan.dataset)
    if data.kind in ("preference", "kto"):  # these need a preference trainer, not supervised fine-tuning
        raise UserError("jobs.error.method_needed", dataset=data.name, kind=data.kind)
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    plan.save(job_dir / "plan.yaml")
    resolved = {"job_id": job_id, "model_path": str(model_path), "train_file": str(data.train_file),
                "val_file": str(data.val_file) if data.val_file else None, "dataset": data.name,
                "dataset_sha256": data.sha256, "dataset_rows": data.rows, "versions": _versions(),
                "cache_dir": str(settings.folder("cache"))}
    (job_dir / "job.json").write_text(json.dumps(resolved, indent=2, ensure_ascii=False), encoding="utf-8")
    row = {"id": job_id, "name": name or f"{Path(plan.model).name} · {data.name}", "state": "PENDING",
           "model": plan.model, "dataset": plan.dataset, "job_dir": str(job_dir), "created_at": time.time()}
    open_db(settings.db_path)["jobs"].insert(row)
    return get_job(settings, job_id)


def start_job(settings: Settings, job_id: str) -> dict:
    job = get_job(settings, job_id)
    if job["state"] != "PENDING":
        raise UserError("jobs.error.not_pending", job=job_id, state=job["state"])
    job_dir = Path(job["job_dir"])
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    with open(job_dir / "worker.log", "ab") as log:
        # Its own session: the job survives the app being closed, and is stopped as one group.
        proc = subprocess.Popen([sys.executable, "-m", "easytune.train", str(job_dir)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _children[job_id] = proc
    open_db(settings.db_path)["jobs"].update(job_id, {
        "state": "PREPARING", "pid": proc.pid, "pid_started_at": psutil.Process(proc.pid).create_time(),
        "started_at": time.time()})
    return get_job(settings, job_id)


def launch(settings: Settings, plan: TrainingPlan, name: str | None = None) -> dict:
    return start_job(settings, create_job(settings, plan, name)["id"])


def get_job(settings: Settings, job_id: str) -> dict:
    try:
        return open_db(settings.db_path)["jobs"].get(job_id)
    except Exception:  # sqlite_utils.db.NotFoundError
        raise UserError("jobs.error.unknown", job=job_id) from None


def list_jobs(settings: Settings, state: str | None = None) -> list[dict]:
    where, args = ("state = ?", [state]) if state else (None, None)
    return list(open_db(settings.db_path)["jobs"].rows_where(where, args, order_by="created_at desc"))


def metrics(settings: Settings, job_id: str) -> dict[str, list[tuple[int, float]]]:
    """{name: [(step, value), …]} in step order."""
    out: dict[str, list[tuple[int, float]]] = {}
    rows = open_db(settings.db_path)["job_metrics"].rows_where("job_id = ?", [job_id], order_by="step")
    for row in rows:
        out.setdefault(row["name"], []).append((row["step"], row["value"]))
    return out


def events(settings: Settings, job_id: str, types=("log", "error", "artifact", "state")) -> list[dict]:
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
    key = data.get("key") or data.get("code")
    return f"{stamp} [{data.get('level', 'error')}] {t(key, lang, **(data.get('params') or {}))}"


# ---- following a worker -------------------------------------------------------------------------

def _worker_alive(job: dict) -> tuple[bool, int | None]:
    """(alive, exit code if known). Checks our own child first; else the pid and its start time."""
    proc = _children.get(job["id"])
    if proc is not None:
        code = proc.poll()
        return code is None, code
    if not job.get("pid"):
        return False, None
    try:
        same = abs(psutil.Process(job["pid"]).create_time() - (job["pid_started_at"] or 0)) < 1
        return same and psutil.Process(job["pid"]).status() != psutil.STATUS_ZOMBIE, None
    except psutil.Error:
        return False, None


def _apply(db, job: dict, event: dict, update: dict) -> None:
    kind = event["type"]
    if kind == "state":
        update["state"] = event["state"]
        if event["state"] in TERMINAL_STATES:
            update["finished_at"] = event["t"]
        if event.get("reason"):
            update["error"] = dumps({"key": event["reason"], "params": event.get("params") or {}})
    elif kind == "step":
        update["progress"] = event["step"] / max(1, event["total_steps"])
        update["total_steps"] = event["total_steps"]
        db["job_metrics"].insert_all(
            {"job_id": job["id"], "step": event["step"], "name": name, "value": event[name], "t": event["t"]}
            for name in ("loss", "lr", "tokens_per_s") if event.get(name) is not None)
    elif kind == "eval":
        db["job_metrics"].insert_all(
            {"job_id": job["id"], "step": event["step"], "name": name, "value": event[name], "t": event["t"]}
            for name in ("val_loss", "cf_score", "cf_pct") if event.get(name) is not None)
    if kind != "step":
        level = event.get("level") or ("error" if kind == "error" else "info")
        db["job_events"].insert({"job_id": job["id"], "t": event["t"], "type": kind, "level": level,
                                 "data": dumps(event)})


def _death_of(code: int | None) -> dict:
    """The state of a job whose worker ended without saying so."""
    if code is None:  # not our child (the app or CLI that started it is gone): resumable
        return {"state": "INTERRUPTED", "error": dumps({"key": "jobs.error.interrupted", "params": {}})}
    if code < 0:
        return {"state": "FAILED", "error": dumps({"key": "jobs.error.killed", "params": {"signal": -code}})}
    return {"state": "FAILED", "error": dumps({"key": "jobs.error.exited", "params": {"code": code}})}


def sync_job(settings: Settings, job_id: str) -> dict:
    """Read the worker's new events into SQLite; settle the state if the worker is gone."""
    with _sync_lock:
        db = open_db(settings.db_path)
        job = db["jobs"].get(job_id)
        if job["state"] in TERMINAL_STATES or job["state"] == "PENDING":
            return job
        alive, code = _worker_alive(job)  # before reading: events written before death are all read
        new, offset = read_events(Path(job["job_dir"]), job["events_offset"])
        if new:  # claim these events first: the app and a CLI may follow the same job at once
            with db.conn:
                claimed = db.conn.execute("UPDATE jobs SET events_offset = ? WHERE id = ? AND events_offset = ?",
                                          [offset, job_id, job["events_offset"]]).rowcount
            if not claimed:
                return db["jobs"].get(job_id)
        update: dict = {}
        with db.conn:
            for event in new:
                _apply(db, job, event, update)
            if not alive and update.get("state", job["state"]) not in TERMINAL_STATES:
                update.update(_death_of(code))
                update["finished_at"] = time.time()
            if update:
                db["jobs"].update(job_id, update)
        if not alive:
            _children.pop(job_id, None)
        return db["jobs"].get(job_id)


def sync_active(settings: Settings) -> list[dict]:
    """Follow every active job. On start-up this is also the recovery: a job whose worker died with
    the last app or CLI becomes INTERRUPTED, and one whose worker still runs is re-attached."""
    return [sync_job(settings, job["id"]) for job in list_jobs(settings) if job["state"] in ACTIVE_STATES]


def stop_job(settings: Settings, job_id: str, timeout: float = 20.0) -> dict:
    """Ask the worker to stop (it saves what it has), wait, and kill it if it does not answer."""
    job = sync_job(settings, job_id)
    if job["state"] == "PENDING":
        open_db(settings.db_path)["jobs"].update(job_id, {"state": "STOPPED", "finished_at": time.time()})
        return get_job(settings, job_id)
    if job["state"] in TERMINAL_STATES:
        return job
    (Path(job["job_dir"]) / STOP_FILE).touch()
    _signal(job, signal.SIGTERM)
    deadline = time.time() + timeout
    while time.time() < deadline and _worker_alive(job)[0]:
        time.sleep(0.2)
    if _worker_alive(job)[0]:
        _signal(job, signal.SIGKILL)
        time.sleep(0.5)
    job = sync_job(settings, job_id)
    if job["state"] != "STOPPED":  # killed before it could say so: the user asked, so it is STOPPED
        open_db(settings.db_path)["jobs"].update(job_id, {"state": "STOPPED", "error": None,
                                                          "finished_at": time.time()})
    return get_job(settings, job_id)


def _signal(job: dict, sig: int) -> None:
    try:
        os.killpg(job["pid"], sig)
    except (ProcessLookupError, PermissionError, TypeError):
        pass


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
