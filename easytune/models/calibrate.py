"""A short measurement of this machine's matrix-multiply rate, for the planner's time estimate.

The planner turns FLOPs per token into seconds with the rate this machine really reaches, not a table
of typical hardware. The first plan on a machine measures it (about a second, in a subprocess: the app
process never imports torch) and keeps the figure in the app's folder, keyed by device, cores and torch
version, so later plans read it at once. Measured: fp32 on a CPU, bf16 on a GPU, as training runs there.

    python -m easytune.models.calibrate [cpu|cuda|mps|xpu]    prints {"device", "flops"}
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata

from easytune.settings import Settings

CACHE_FILE = "calibration.json"
TIMEOUT_S = 60


def _key(device: str) -> str:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    return f"{device}|{platform.machine()}|{os.cpu_count()}|torch {torch_version}"


def matmul_rate(settings: Settings, device: str) -> float | None:
    """This machine's measured matmul FLOP/s on `device` (cached), or None where it cannot be measured."""
    path = settings.home / CACHE_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    key = _key(device)
    if isinstance(cached.get(key), (int, float)):
        return float(cached[key])
    try:
        done = subprocess.run([sys.executable, "-m", "easytune.models.calibrate", device], capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=True)
        rate = float(json.loads(done.stdout.strip().splitlines()[-1])["flops"])
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError):
        return None  # the plan falls back to its table of typical rates
    cached[key] = rate
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cached, indent=1), encoding="utf-8")
    return rate


def measure(device: str, seconds: float = 1.0) -> float:
    """Best FLOP/s of square products, repeated for about `seconds` after a warm-up."""
    import torch

    target = torch.device(device)
    gpu = target.type != "cpu"
    n = 4096 if gpu else 1024
    dtype = torch.bfloat16 if gpu else torch.float32
    a, b = torch.randn(n, n, device=target, dtype=dtype), torch.randn(n, n, device=target, dtype=dtype)

    def sync():
        if target.type == "cuda":
            torch.cuda.synchronize()
        elif target.type in ("mps", "xpu"):
            getattr(torch, target.type).synchronize()

    a @ b
    sync()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


if __name__ == "__main__":
    device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
    print(json.dumps({"device": device, "flops": measure(device)}))
