"""Stop, kill -9 and vanished workers: a job always ends in a state that says why, never RUNNING."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import sqlite_utils

from support import ROOT, cli_json, free_port, wait_http, write_plan

pytestmark = pytest.mark.slow


def start_long_job(home, tmp_path):
    plan = write_plan(tmp_path / "long.yaml", max_steps=100000, eval_every=100000)
    return cli_json("train", "--config", str(plan), "--detach", home=home)


def wait_for(home, job_id, predicate, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = cli_json("jobs", "show", job_id, home=home)
        if predicate(job):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached the expected condition: {job}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_mid_run(tmp_path):
    home = tmp_path / "home"
    job = start_long_job(home, tmp_path)
    running = wait_for(home, job["id"], lambda j: j["state"] == "RUNNING" and j["final_loss"] is not None)
    stopped = cli_json("jobs", "stop", job["id"], home=home)
    assert stopped["state"] == "STOPPED"
    assert gone(running["pid"])
    assert (ROOT / "tests").exists()  # sanity: paths below are the job's own
    folder = stopped["job_dir"]
    assert os.path.isfile(os.path.join(folder, "adapter", "adapter_model.safetensors")), "stop keeps the work so far"
    assert all(j["state"] != "RUNNING" for j in cli_json("jobs", "list", home=home))


def test_kill_9_of_the_worker_is_reported_and_the_app_keeps_serving(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    app = subprocess.Popen([sys.executable, "-m", "easytune.cli", "ui", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=app)
        job = start_long_job(home, tmp_path)
        running = wait_for(home, job["id"], lambda j: j["state"] == "RUNNING" and j["final_loss"] is not None)
        os.kill(running["pid"], signal.SIGKILL)
        ended = wait_for(home, job["id"], lambda j: j["state"] not in ("PREPARING", "RUNNING"))
        assert ended["state"] in ("FAILED", "INTERRUPTED")
        assert ended["error_message"] and "worker.log" in ended["error_message"]
        assert "EasyTune" in wait_http(f"http://127.0.0.1:{port}/", proc=app)
        # the app and this CLI followed the job at the same time: every step is recorded once
        steps = [r["step"] for r in sqlite_utils.Database(home / "easytune.db")["job_metrics"].rows_where(
            "job_id = ? and name = 'loss'", [job["id"]])]
        assert steps and len(steps) == len(set(steps))
    finally:
        app.terminate()
        app.wait(timeout=20)


def test_a_child_killed_under_its_app_is_failed_with_the_signal(settings, tmp_path):
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(write_plan(tmp_path / "long.yaml", max_steps=100000))
    job = jobs.launch(settings, plan)
    deadline = time.time() + 90
    while jobs.sync_job(settings, job["id"])["state"] != "RUNNING" and time.time() < deadline:
        time.sleep(0.3)
    os.kill(job["pid"], signal.SIGKILL)
    deadline = time.time() + 30
    while jobs.sync_job(settings, job["id"])["state"] == "RUNNING" and time.time() < deadline:
        time.sleep(0.3)
    ended = jobs.get_job(settings, job["id"])
    assert ended["state"] == "FAILED"
    assert json.loads(ended["error"]) == {"key": "jobs.error.killed", "params": {"signal": 9}}


def test_orchestrator_and_worker_killed_then_restart_finds_it_interrupted(tmp_path):
    home = tmp_path / "home"
    plan = write_plan(tmp_path / "long.yaml", max_steps=100000)
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    follower = subprocess.Popen([sys.executable, "-m", "easytune.cli", "train", "--config", str(plan)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    job = None
    while time.time() < deadline:
        listed = cli_json("jobs", "list", home=home) if (home / "easytune.db").exists() else []
        if listed and listed[0]["state"] == "RUNNING":
            job = listed[0]
            break
        time.sleep(0.5)
    assert job, "the job never started"
    follower.kill()
    follower.wait()
    os.kill(job["pid"], signal.SIGKILL)
    time.sleep(0.5)
    ended = cli_json("jobs", "show", job["id"], home=home)
    assert ended["state"] == "INTERRUPTED"
    assert ended["error_message"]
