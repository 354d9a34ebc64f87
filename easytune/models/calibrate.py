"""A short measurement of this machine's matrix-multiply rate, for the planner's time estimate.

The planner turns FLOPs per token into seconds with the rate this machine really reaches, not a table
of typical hardware. The first plan on a machine measures it (about a second, in a subprocess: the app
process never imports torch) and keeps the figure in the app's folder, keyed by device, dtype, cores and
torch version, so later plans read it at once. A figure measured while the machine was busy (a job training,
say) reads the chip as slower than it is — measured here beside a training run, fp32 read 131 GFLOP/s against
220-230 quiet — so it is kept only until a plan finds the machine quiet: measured again then, the higher
figure stays.

Measured: bf16 on a GPU; on a CPU both fp32 and bf16, since whether bf16 pays there is a property of the
chip, decided by measurement (`cpu_trains_bf16`): CPUs with matrix engines for it (AMX, AVX-512 BF16: Xeon
servers and workstations) multiply bf16 several times faster than fp32, most laptop CPUs emulate it and are
slower.

    python -m easytune.models.calibrate [cpu|cuda|mps|xpu]    prints {"device", "flops": {dtype: FLOP/s}}
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
# A CPU trains in bf16 only where its bf16 products are at least this much faster than fp32: the rest of a
# step (norms, the loss over the vocabulary, the optimiser, casts) does not speed up, so measured here a
# 6.6x faster product made a LoRA step 1.8x faster; a chip at 2x would gain little, and lose some accuracy.
CPU_BF16_MIN_GAIN = 2.0
# ...and only for a model whose step is products at all: below this size it is Python and small kernels
# (measured here: the 1.2M-parameter built-in model trains at ~1,550 tokens/s in bf16, ~2,350 in fp32).
CPU_BF16_MIN_PARAMS = 20_000_000
# The machine counts as busy while its one-minute load average is at least this share of its cores.
BUSY_LOAD = 0.5
BUSY_KEY = "measured busy"  # the keys of the figures measured while busy, in the cache file


def native_dtype(device: str) -> str:
    """The dtype a matmul rate means when none is named: what training uses there by default."""
    return "fp32" if device == "cpu" else "bf16"


def _key(device: str, dtype: str) -> str:
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    named = "" if dtype == native_dtype(device) else f"|{dtype}"  # earlier caches keep their meaning
    return f"{device}{named}|{platform.machine()}|{os.cpu_count()}|torch {torch_version}"


def cpu_rates(settings: Settings) -> dict | None:
    """{"fp32": FLOP/s, "bf16": FLOP/s} of this CPU, or None where either cannot be measured."""
    rates = {dtype: matmul_rate(settings, "cpu", dtype) for dtype in ("fp32", "bf16")}
    return rates if all(rates.values()) else None


def bf16_pays(rates: dict | None, params: int | None) -> bool:
    """Whether a model of `params` parameters trains in bf16 on a CPU with these measured rates: the one
    rule, which the planner (for its plan) and the jobs service (for the worker) both ask."""
    return bool(rates and params) and params >= CPU_BF16_MIN_PARAMS and (
        rates["bf16"] >= CPU_BF16_MIN_GAIN * rates["fp32"])


def auto_precision(device: str, gpu_bf16: bool = False, cpu_bf16: bool = False) -> str:
    """What precision "auto" trains in on `device`: bf16 where it is native there — a CUDA GPU that supports
    it (`gpu_bf16`), an Intel XPU, a CPU whose bf16 products measured clearly faster (`cpu_bf16`, see
    bf16_pays) — else fp32, Apple's MPS included. The one rule for the plan, the fit check and the worker."""
    native = (device == "cuda" and gpu_bf16) or device == "xpu" or (device == "cpu" and cpu_bf16)
    return "bf16" if native else "fp32"


def cpu_trains_bf16(settings: Settings, params: int | None) -> bool:
    small = not params or params < CPU_BF16_MIN_PARAMS  # decided by size alone: nothing to measure
    return not small and bf16_pays(cpu_rates(settings), params)


def matmul_rate(settings: Settings, device: str, dtype: str | None = None) -> float | None:
    """This machine's measured matmul FLOP/s on `device` in `dtype` (by default what training uses there),
    cached; None where it cannot be measured."""
    dtype = dtype or native_dtype(device)
    path = settings.home / CACHE_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cached = {}
    key, busy = _key(device, dtype), machine_busy()
    known = cached.get(key) if isinstance(cached.get(key), (int, float)) else None
    if known is not None and (busy is not False or key not in cached.get(BUSY_KEY, [])):
        return float(known)
    try:  # one process measures every dtype the device is asked about (torch is imported once)
        done = subprocess.run([sys.executable, "-m", "easytune.models.calibrate", device], capture_output=True,
                              text=True, timeout=TIMEOUT_S, check=True)
        rates = json.loads(done.stdout.strip().splitlines()[-1])["flops"]
        measured = {_key(device, kind): float(rate) for kind, rate in rates.items()}
    except (subprocess.SubprocessError, OSError, ValueError, KeyError, IndexError, AttributeError):
        return known  # the figure kept before, or None: the plan falls back to its table of typical rates
    was_busy = set(cached.pop(BUSY_KEY, []))
    for name, rate in measured.items():  # a busy machine only ever reads slow: the higher figure stands
        kept = cached.get(name) if name in was_busy else None
        cached[name] = max(rate, kept) if isinstance(kept, (int, float)) else rate
    was_busy = (was_busy - measured.keys()) | (measured.keys() if busy else set())
    if was_busy:
        cached[BUSY_KEY] = sorted(was_busy)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cached, indent=1), encoding="utf-8")
    return cached.get(key)


def machine_busy() -> bool | None:
    """Whether other work keeps this machine's cores busy now (None where the system does not say)."""
    try:
        return os.getloadavg()[0] >= BUSY_LOAD * (os.cpu_count() or 1)
    except (OSError, AttributeError):  # Windows has no load average
        return None


def measured_dtypes(device: str) -> tuple[str, ...]:
    return ("fp32", "bf16") if device == "cpu" else (native_dtype(device),)


def measure(device: str, dtype: str | None = None, seconds: float = 0.5) -> float:
    """Best FLOP/s of square products, repeated for about `seconds` after a warm-up."""
    import torch

    target = torch.device(device)
    n = 1024 if target.type == "cpu" else 4096
    kind = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype or native_dtype(device)]
    a, b = torch.randn(n, n, device=target, dtype=kind), torch.randn(n, n, device=target, dtype=kind)

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
    print(json.dumps({"device": device, "flops": {dtype: measure(device, dtype) for dtype in measured_dtypes(device)}}))
