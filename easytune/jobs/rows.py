"""Reading jobs back: a job's row (with its place in the queue), lists of jobs, its curves and its events."""

from __future__ import annotations

import json

from easytune.i18n import UserError
from easytune.settings import Settings
from easytune.store import open_db


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


def timed_metrics(settings: Settings, job_id: str) -> dict[str, list[tuple[int, float, float]]]:
    """{name: [(step, value, unix time), …]} in step order: the curves with when each point was measured."""
    out: dict[str, list[tuple[int, float, float]]] = {}
    rows = open_db(settings.db_path)["job_metrics"].rows_where("job_id = ?", [job_id], order_by="step, t")
    for row in rows:
        out.setdefault(row["name"], []).append((row["step"], row["value"], row["t"]))
    return out


def logged_events(settings: Settings, job_id: str,
                  types=("log", "error", "artifact", "state", "checkpoint")) -> list[dict]:
    marks = ",".join("?" * len(types))
    rows = open_db(settings.db_path)["job_events"].rows_where(
        f"job_id = ? and type in ({marks})", [job_id, *types], order_by="t")
    return [dict(row, data=json.loads(row["data"])) for row in rows]


def logged_params(settings: Settings, job_id: str, key: str) -> dict | None:
    """The parameters of the first log line `key` of a job (None before it is logged), read without
    parsing the job's other events."""
    rows = open_db(settings.db_path)["job_events"].rows_where(
        "job_id = ? and type = 'log' and json_extract(data, '$.key') = ?", [job_id, key], order_by="t", limit=1)
    return next((json.loads(row["data"]).get("params") or {} for row in rows), None)
