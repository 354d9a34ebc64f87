"""How many of the CPU's cores training uses while other programs may want them too.

A training step on a CPU is thousands of small parallel operations, each ending with its threads waiting for one
another. The worker's threads spin a while before they sleep (easytune.train.__main__): fast while every thread has
a core to itself, slow when one of them waits for a core another program holds, its partners spinning for nothing
meanwhile. So the worker watches the CPU time the other programs take and trains on the cores they leave, and takes
the others back once they stay free. AMD EPYC, 2 cores of a virtual machine, a LoRA step of SmolLM2-135M (8 rows
of about 63 tokens, bf16), alone | beside one busy program:
    2 threads, asleep after 300 turns (every process's default, easytune/__init__.py)   2.3-2.6 s | 2.8-3.0 s
    2 threads, asleep after 3,000 turns (the worker's)                                  1.6-1.7 s | 4.7-5.3 s
    1 thread                                                                           2.2-2.4 s | 2.4-2.6 s
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import psutil

WINDOW_S = 2.0  # the shortest time the others' share is read over: shorter reads the scheduler's noise
FREE_WINDOWS = 2  # windows in a row the cores must stay free before training takes them back


def machine_cpu_seconds() -> float:
    """CPU seconds every program has used since the machine started. Time the hypervisor gave to other machines
    (steal) is left out: no thread count here wins it back."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


def others_cpu_seconds() -> float:
    """CPU seconds every program but this one has used since the machine started."""
    own = psutil.Process().cpu_times()
    return machine_cpu_seconds() - own.user - own.system


class CoreShare:
    """Threads for training on `cores` cores: call `after_step()` after each step; it returns the new thread count
    when it changed it (a core counts as taken once other programs keep half of it busy), else None."""

    def __init__(self, cores: int, set_threads: Callable[[int], None],
                 others: Callable[[], float] = others_cpu_seconds, clock: Callable[[], float] = time.monotonic):
        self.cores = self.threads = cores
        self.set_threads, self.others, self.clock = set_threads, others, clock
        self.since, self.used = clock(), others()
        self.free_windows = 0

    def after_step(self) -> int | None:
        now = self.clock()
        if now - self.since < WINDOW_S:
            return None
        used = self.others()
        taken = (used - self.used) / (now - self.since)  # cores the other programs kept busy
        self.since, self.used = now, used
        wanted = max(1, self.cores - math.floor(taken + 0.5))
        if wanted < self.threads:  # at once: a thread waiting for a busy core slows every step
            return self._use(wanted)
        if wanted > self.threads:  # only once the cores stay free: a program that pauses often is still there
            self.free_windows += 1
            return self._use(wanted) if self.free_windows >= FREE_WINDOWS else None
        self.free_windows = 0
        return None

    def _use(self, threads: int) -> int:
        self.threads, self.free_windows = threads, 0
        self.set_threads(threads)
        return threads
