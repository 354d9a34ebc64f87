"""Training gives cores up to another program that keeps them busy, and takes them back once they stay free."""

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from easytune.train.core_share import WINDOW_S, CoreShare, machine_cpu_seconds, others_cpu_seconds
from support import cli_json, write_plan


class Machine:
    """A clock and the other programs' CPU seconds, moved by hand."""

    def __init__(self):
        self.now, self.others = 0.0, 0.0

    def run(self, seconds: float, others_busy: float) -> None:
        self.now += seconds
        self.others += seconds * others_busy


def sharing(cores: int = 2):
    machine, threads = Machine(), []
    share = CoreShare(cores, threads.append, others=lambda: machine.others, clock=lambda: machine.now)
    return machine, share, threads


def test_a_busy_program_takes_a_core_at_once_and_gives_it_back_once_it_stays_idle():
    machine, share, threads = sharing()
    machine.run(WINDOW_S, others_busy=0.05)  # the app polling now and then
    assert share.after_step() is None
    machine.run(WINDOW_S, others_busy=0.7)  # one busy program, squeezed by training's two threads
    assert share.after_step() == 1 and threads == [1]
    machine.run(WINDOW_S, others_busy=1.0)
    assert share.after_step() is None
    machine.run(WINDOW_S, others_busy=0.0)  # one quiet window: it may only be pausing
    assert share.after_step() is None
    machine.run(WINDOW_S, others_busy=1.0)
    assert share.after_step() is None
    for _ in range(2):
        machine.run(WINDOW_S, others_busy=0.1)
        back = share.after_step()
    assert back == 2 and threads == [1, 2]


def test_a_window_too_short_to_read_decides_nothing():
    machine, share, threads = sharing()
    machine.run(WINDOW_S / 4, others_busy=2.0)
    assert share.after_step() is None and threads == []
    machine.run(WINDOW_S, others_busy=2.0)  # read over the whole time since the last reading
    assert share.after_step() == 1


def test_a_large_machine_leaves_the_busy_cores_and_keeps_one_at_least():
    machine, share, threads = sharing(cores=16)
    machine.run(WINDOW_S, others_busy=3.4)
    assert share.after_step() == 13
    machine.run(WINDOW_S, others_busy=40.0)
    assert share.after_step() == 1 and threads == [13, 1]


@contextmanager
def busy_program():
    """Another program keeping one core busy."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        yield
    finally:
        busy.kill()
        busy.wait()


def test_another_programs_cpu_time_is_read_from_the_machine():
    """A real busy program beside this process: its CPU time counts, this process's own does not."""
    with busy_program():
        share = CoreShare(2, lambda threads: None)
        before_others, before_all, started = others_cpu_seconds(), machine_cpu_seconds(), time.monotonic()
        while time.monotonic() - started < WINDOW_S + 0.2:
            sum(i * i for i in range(20_000))  # this process busy too: not another program
        seconds = time.monotonic() - started
        taken, busy = (others_cpu_seconds() - before_others) / seconds, (machine_cpu_seconds() - before_all) / seconds
        assert taken > 0.6, taken
        assert busy - taken > 0.25, (busy, taken)  # what this process itself used is not counted
        assert share.after_step() == 1


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one core: training has none to give up")
def test_a_job_beside_a_busy_program_trains_on_the_core_left_and_says_so(tmp_path):
    plan = write_plan(tmp_path / "plan.yaml", max_steps=60)  # the tiny model: a few seconds of steps
    with busy_program():
        job = cli_json("train", "--config", str(plan), home=tmp_path / "home")
    assert job["state"] == "COMPLETED", job
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    said = [e for e in events if e.get("key") == "train.log.cores_shared"]
    assert said, [e for e in events if e["type"] == "log"]
    assert 1 <= said[0]["params"]["threads"] < said[0]["params"]["cores"], said


def spin_in_child(parent_env: dict) -> tuple[str, str]:
    """GOMP_SPINCOUNT in a process that imported EasyTune, and in the worker-like process it starts."""
    script = ("import os, subprocess, sys, easytune; print(os.environ['GOMP_SPINCOUNT']); sys.stdout.flush(); "
              "subprocess.run([sys.executable, '-c', 'import os, easytune; easytune.spin_turns(3000); "
              "print(os.environ[\"GOMP_SPINCOUNT\"])'])")
    out = subprocess.run([sys.executable, "-c", script], env=parent_env, capture_output=True, text=True, check=True)
    parent, child = out.stdout.split()
    return parent, child


def test_the_worker_spins_longer_than_the_process_that_started_it_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "EASYTUNE_SPIN_TURNS")}
    assert spin_in_child(env) == ("300", "3000")
    assert spin_in_child({**env, "GOMP_SPINCOUNT": "50"}) == ("50", "50")
