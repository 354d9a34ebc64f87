"""The dashboard's numbers: what is here (datasets, models, jobs) and how busy the machine is.

Cheap enough to poll every few seconds: SQLite counts, psutil, and nvidia-smi when it exists (the
app never imports torch to ask about a GPU).
"""

from __future__ import annotations

import shutil
import subprocess

import psutil

from easytune.jobs.events import ACTIVE_STATES
from easytune.settings import Settings
from easytune.store import open_db


def gpu_usage() -> list[dict]:
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,utilization.gpu,memory.used,memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=3).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, util, used, total = (part.strip() for part in line.split(","))
        gpus.append({"name": name, "util_pct": float(util), "memory_used_mb": float(used),
                     "memory_total_mb": float(total)})
    return gpus


def resources(settings: Settings) -> dict:
    memory = psutil.virtual_memory()
    disk = shutil.disk_usage(settings.home)
    return {"cpu_pct": psutil.cpu_percent(interval=None), "cpu_count": psutil.cpu_count(),
            "ram_used": memory.total - memory.available, "ram_total": memory.total,
            "disk_free": disk.free, "disk_total": disk.total, "gpus": gpu_usage()}


def overview(settings: Settings, recent: int = 5) -> dict:
    from easytune.models.registry import registered

    db = open_db(settings.db_path)
    marks = ",".join("?" * len(ACTIVE_STATES))
    return {
        "counts": {"datasets": db["datasets"].count, "models": 1 + len(registered(settings)),  # 1: built-in
                   "jobs": db["jobs"].count,
                   "running": db.execute(f"select count(*) from jobs where state in ({marks})",
                                         list(ACTIVE_STATES)).fetchone()[0],
                   "exports": db.execute("select count(*) from exports where state = 'READY'").fetchone()[0]},
        "recent_jobs": list(db["jobs"].rows_where(order_by="created_at desc", limit=recent)),
        "resources": resources(settings),
    }
