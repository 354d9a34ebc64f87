"""A worker that dies while someone watches: killed (as the system's out-of-memory killer does) under a
foreground `easytune train` or under the app's follower, or failing on a full disk. Whenever it left a
checkpoint the job is INTERRUPTED, says why and what to do in both languages, resumes as the same job
and ends at the loss of a run that was never cut; what the dead worker left half-written is removed at
once, resumed or not.

Every run uses one short plan; the uninterrupted run of it is the yardstick (see test_job_lifecycle).
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_job_lifecycle import first_checkpoint, first_job_id, loss_steps, short_plan, wait_until, worker_pid

from support import ROOT, cli, cli_json

pytestmark = pytest.mark.slow

TOTAL = 15  # steps of the short plan; it saves every 3 and evaluates at the end
DISK_MB = 24  # the job folder's own small disk in the disk-full run


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    return short_plan(tmp_path_factory.mktemp("plans") / "short.yaml", max_steps=TOTAL, save_every=3)


@pytest.fixture(scope="module")
def straight_loss(tmp_path_factory, plan_file) -> float:
    """The final loss of the plan trained once through, never interrupted."""
    done = cli_json("train", "--config", str(plan_file), home=tmp_path_factory.mktemp("straight-home"))
    assert done["state"] == "COMPLETED", done
    return done["final_loss"]


def steps_seen(job_dir: Path) -> int:
    from easytune.jobs.events import read_events

    return max([e["step"] for e in read_events(job_dir)[0] if e["type"] == "step"], default=0)


def kill_at_a_random_step(job_dir: Path, pid: int) -> int:
    """SIGKILL the worker (what the out-of-memory killer sends) once it has saved a checkpoint and reached a
    random later step; returns that step."""
    saved = first_checkpoint(job_dir, pid)
    assert saved, "the worker ended before its first checkpoint"
    step = random.randint(int(saved.split("-")[1]), TOTAL - 3)
    wait_until(lambda: steps_seen(job_dir) >= step)
    os.kill(pid, signal.SIGKILL)
    return step


def leave_a_half_written_save(job_dir: Path) -> Path:
    """What a save cut short by the kill leaves: a `.partial` copy of a checkpoint, never renamed into place
    (named after a step already saved, so this worker never writes or clears it itself)."""
    index = json.loads((job_dir / "checkpoints" / "index.json").read_text(encoding="utf-8"))
    partial = job_dir / "checkpoints" / f".{index['latest']}.partial"
    shutil.copytree(job_dir / "checkpoints" / index["latest"], partial)
    return partial


def test_a_worker_killed_under_a_watching_cli_is_interrupted_and_resumes(tmp_path, plan_file, straight_loss):
    home = tmp_path / "home"
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="zh")
    follower = subprocess.Popen([sys.executable, "-m", "easytune.cli", "train", "--config", str(plan_file), "--json"],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    job_id = wait_until(lambda: first_job_id(home))
    job_dir = home / "jobs" / job_id
    pid = worker_pid(home, job_id)
    first_checkpoint(job_dir, pid)
    partial = leave_a_half_written_save(job_dir)
    step = kill_at_a_random_step(job_dir, pid)
    said, _ = follower.communicate(timeout=120)
    ended = json.loads(said)

    assert follower.returncode == 1 and ended["state"] == "INTERRUPTED", (step, ended)
    assert json.loads(ended["error"])["key"] == "jobs.error.killed_resumable"
    checkpoint_step = int(ended["checkpoint"].rsplit("-", 1)[1])
    assert "内存不足" in ended["error_message"] and f"第 {checkpoint_step} 步的检查点已保留" in ended["error_message"]
    assert ended["actions"][0] == "resume" and "less_memory" in ended["actions"]
    shown = cli("jobs", "show", job_id, home=home).stdout
    assert "lack of memory" in shown and f"checkpoint at step {checkpoint_step} is kept" in shown
    assert f"easytune jobs resume {job_id}" in shown
    assert not partial.exists(), "the half-written save is removed when the job ends, before any resume"

    done = cli_json("jobs", "resume", job_id, "--follow", home=home)
    assert done["id"] == job_id and done["state"] == "COMPLETED", (step, done)
    assert loss_steps(home, job_id) == list(range(1, TOTAL + 1)), "each step drawn once"
    assert done["final_loss"] == pytest.approx(straight_loss, rel=0.05), f"killed at step {step}"


def test_a_worker_killed_under_the_apps_follower_is_interrupted_and_resumes(settings, plan_file, straight_loss):
    from easytune import jobs
    from easytune.i18n import t
    from easytune.jobs.events import ACTIVE_STATES
    from easytune.plan.schema import TrainingPlan

    monitor = jobs.Monitor(settings, interval=0.3).start()  # as the app runs it, in the process that launched
    try:
        job = jobs.launch(settings, TrainingPlan.load(plan_file))
        step = kill_at_a_random_step(Path(job["job_dir"]), worker_pid(settings.home, job["id"]))
        ended = wait_until(lambda: (j := jobs.get_job(settings, job["id"]))["state"] not in ACTIVE_STATES and j)
        assert ended["state"] == "INTERRUPTED", (step, ended)
        error = json.loads(ended["error"])
        assert error["key"] == "jobs.error.killed_resumable" and error["params"]["signal"] == signal.SIGKILL
        assert {"resume", "less_memory"} <= set(jobs.available_actions(settings, ended))
        for lang, said in (("en", "resume the job"), ("zh", "继续这个任务")):
            assert said in t(error["key"], lang, **error["params"])

        jobs.perform(settings, job["id"], "resume")  # the app's Resume button
        done = wait_until(lambda: (j := jobs.get_job(settings, job["id"]))["state"] not in ACTIVE_STATES and j)
    finally:
        monitor.close()
    assert done["state"] == "COMPLETED", (step, done)
    loss = jobs.metrics(settings, job["id"])["loss"]
    assert [s for s, _ in loss] == list(range(1, TOTAL + 1))
    assert loss[-1][1] == pytest.approx(straight_loss, rel=0.05), f"killed at step {step}"


DISK_FULL_RUN = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from support import cli, cli_json
from test_faults_worker import fill_the_disk_after_the_first_checkpoint
home = Path({home!r})
follower = fill_the_disk_after_the_first_checkpoint(home, {plan!r})
ended = json.loads(follower.communicate(timeout=300)[0])
refused = cli("jobs", "show", ended["id"], "--json", home=home, lang="zh")
(home / "jobs" / "ballast").unlink()  # the user frees some space
resumed = cli_json("jobs", "resume", ended["id"], "--follow", home=home)
print(json.dumps({{"ended": ended, "shown_zh": json.loads(refused.stdout), "resumed": resumed}}))
"""


def fill_the_disk_after_the_first_checkpoint(home: Path, plan: str) -> subprocess.Popen:
    """Start a foreground `easytune train`; once its worker saved a checkpoint, fill the job folder's disk
    but for 2 MB (runs where home/jobs is its own small disk)."""
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    follower = subprocess.Popen([sys.executable, "-m", "easytune.cli", "train", "--config", plan, "--json"],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    job_id = wait_until(lambda: first_job_id(home))
    assert first_checkpoint(home / "jobs" / job_id, worker_pid(home, job_id))
    with open(home / "jobs" / "ballast", "wb") as ballast:
        ballast.write(b"\0" * (shutil.disk_usage(home / "jobs").free - (2 << 20)))
    return follower


def test_a_full_disk_interrupts_the_job_and_it_resumes_once_space_is_freed(tmp_path, plan_file, straight_loss):
    """The job folder on a real, small disk of its own (a tmpfs mounted in a private mount namespace),
    filled while the worker trains under a watching `easytune train`."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is needed to give the job folder a small disk of its own")
    home = tmp_path / "home"
    (home / "jobs").mkdir(parents=True)
    script = DISK_FULL_RUN.format(tests=str(ROOT / "tests"), home=str(home), plan=str(plan_file))
    mount = f"mount -t tmpfs -o size={DISK_MB}m tmpfs {home / 'jobs'}"
    probe = subprocess.run(["unshare", "-Urm", "sh", "-c", mount], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine allows no private mount namespace: {probe.stderr.strip()}")
    run = subprocess.run(["unshare", "-Urm", "sh", "-c", f'{mount} && exec "$0" -c "$1"', sys.executable, script],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    said = json.loads(run.stdout.strip().splitlines()[-1])
    ended, shown_zh, resumed = said["ended"], said["shown_zh"], said["resumed"]

    assert ended["state"] == "INTERRUPTED", ended
    error = json.loads(ended["error"])
    assert error["key"] == "train.error.disk_full" and error["params"]["free_mb"] <= 2
    assert "Free some space" in ended["error_message"] and "resume the job" in ended["error_message"]
    assert "请先清理空间" in shown_zh["error_message"] and "继续这个任务" in shown_zh["error_message"]
    assert ended["actions"][0] == "resume"
    assert resumed["id"] == ended["id"] and resumed["state"] == "COMPLETED", resumed
    assert loss_steps(home, ended["id"]) == list(range(1, TOTAL + 1))
    assert resumed["final_loss"] == pytest.approx(straight_loss, rel=0.05)
