"""Starting jobs. The queue: one job holds the device (PREPARING or RUNNING) at a time; the others wait as
PENDING and start in creation order. There is no scheduler process: whoever follows jobs (the app's Monitor, a
CLI follower, any `easytune jobs` command) starts the next one when it sees the device free.

The worker is one process, or N data-parallel ones under `accelerate launch` (torchrun underneath; the worker
joins them with NCCL on GPUs, gloo on the CPU), on this machine or on several (jobs/machines.py). No training
stack is imported here."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from easytune.i18n import UserError
from easytune.jobs.folder import JobFolder
from easytune.jobs.machines import launch_arguments, network_env
from easytune.jobs.rows import get_job
from easytune.settings import Settings
from easytune.store import open_db

ACCELERATE_CONFIG = "accelerate.yaml"

# Written into the job folder, so a user's own default accelerate config never changes how a job runs.
# MULTI_GPU is accelerate's name for "one torchrun process per device"; on a CPU they share the cores.
CONFIG_TEMPLATE = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: {machines}
machine_rank: {rank}
num_processes: {total}
gpu_ids: all
mixed_precision: 'no'
use_cpu: false
"""


def worker_command(job_dir: Path, plan) -> list[str]:
    worker = ["--module", "easytune.train", str(job_dir)]
    total = plan.processes
    if total <= 1:
        return [sys.executable, "-m", "easytune.train", str(job_dir)]
    config = Path(job_dir) / ACCELERATE_CONFIG
    config.write_text(CONFIG_TEMPLATE.format(machines=plan.num_machines, rank=plan.machine_rank, total=total),
                      encoding="utf-8")
    if plan.num_machines > 1:  # through easytune.train.launch, which says why a launch never reached the worker
        return [sys.executable, "-m", "easytune.train.launch", "--config_file", str(config),
                *launch_arguments(plan), *worker]
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(total), "--main_process_port", "0", *worker]


SLOT_STATES = ("PREPARING", "RUNNING")  # a job in one of these holds the device
LAUNCH_GRACE_S = 30.0  # a job claimed for start whose worker has no pid yet is being spawned, not dead
_children: dict[str, subprocess.Popen] = {}  # workers this process started (so it can reap them)


def start_job(settings: Settings, job_id: str) -> dict:
    """Put a PENDING job in line for the device: it starts now if the device is free, else it waits
    (PENDING, with its queue_position) and starts when the jobs before it have ended."""
    job = get_job(settings, job_id)
    if job["state"] != "PENDING":
        raise UserError("jobs.error.not_pending", job=job_id, state=job["state"])
    start_next(settings)
    return get_job(settings, job_id)


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


def _spawn(settings: Settings, job_id: str) -> dict:
    """Run the worker for a job this process has claimed (PREPARING)."""
    job_dir = Path(get_job(settings, job_id)["job_dir"])
    plan = JobFolder(job_dir).plan()
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    if plan.num_machines > 1:
        env.update(network_env(plan, os.environ))
    with open(JobFolder(job_dir).worker_log, "ab") as log:
        # Its own session: the job survives the app being closed, and is stopped as one group.
        command = worker_command(job_dir, plan)
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    _children[job_id] = proc
    try:
        born = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # already gone: the follower reads its exit code from our child
        born = time.time()
    open_db(settings.db_path)["jobs"].update(job_id, {"pid": proc.pid, "pid_started_at": born})
    return get_job(settings, job_id)
