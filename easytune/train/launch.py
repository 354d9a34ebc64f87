"""The command that starts a job's worker: one process, or N data-parallel ones under `accelerate launch`
(torchrun underneath; the worker joins them with NCCL on GPUs, gloo on the CPU). No training stack is
imported here: the jobs service builds the command."""

from __future__ import annotations

import sys
from pathlib import Path

ACCELERATE_CONFIG = "accelerate.yaml"

# Written into the job folder, so a user's own default accelerate config never changes how a job runs.
# MULTI_GPU is accelerate's name for "one torchrun process per device"; on a CPU they share the cores.
CONFIG_TEMPLATE = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: {n}
gpu_ids: all
mixed_precision: 'no'
use_cpu: false
"""


def worker_command(job_dir: Path, num_processes: int) -> list[str]:
    if num_processes <= 1:
        return [sys.executable, "-m", "easytune.train", str(job_dir)]
    config = Path(job_dir) / ACCELERATE_CONFIG
    config.write_text(CONFIG_TEMPLATE.format(n=num_processes), encoding="utf-8")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            "--num_processes", str(num_processes), "--main_process_port", "0", "--module",
            "easytune.train", str(job_dir)]
