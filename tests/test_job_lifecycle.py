"""Job lifecycle: the queue, pause and resume, crash recovery with resume, clone, restart, delete.

Every run here uses one short plan, so the uninterrupted run in the queue scenario is also the yardstick
for the resumed runs: the same plan and seed must end at (nearly) the same loss however it was cut.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import sqlite_utils

from support import ROOT, cli, cli_json, write_plan

pytestmark = pytest.mark.slow

PLAN = {"epochs": 3, "eval_every": 15, "save_every": 5}  # 30 steps, 3 evaluations, a checkpoint every 5 steps
NO_CHECKPOINTS = "the training worker does not write checkpoints/index.json yet, so there is nothing to resume from"


def settings_for(home: Path):
    from easytune.settings import load_settings

    return load_settings(home=home, language="en")


def rows(home: Path, table: str, job_id: str, column: str = "job_id") -> list[dict]:
    return list(sqlite_utils.Database(home / "easytune.db")[table].rows_where(f"{column} = ?", [job_id]))


def loss_steps(home: Path, job_id: str) -> list[int]:
    return sorted(r["step"] for r in rows(home, "job_metrics", job_id) if r["name"] == "loss")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(condition, timeout: float = 600, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out")


def first_job_id(home: Path) -> str | None:
    try:
        return next(iter(sqlite_utils.Database(home / "easytune.db")["jobs"].rows))["id"]
    except Exception:  # noqa: BLE001 — not created yet
        return None


def worker_pid(home: Path, job_id: str) -> int:
    return wait_until(lambda: rows(home, "jobs", job_id, "id")[0]["pid"])


def first_checkpoint(job_dir: Path, pid: int) -> str | None:
    """The worker's first checkpoint, watched from its files only (nobody follows the job meanwhile);
    None when the worker ended without writing one."""
    index = job_dir / "checkpoints" / "index.json"

    def seen():
        if index.exists():
            try:
                return json.loads(index.read_text(encoding="utf-8"))["latest"]
            except (ValueError, KeyError):
                return None  # being replaced at this very moment
        return "ended" if not alive(pid) else None

    latest = wait_until(seen)
    return None if latest == "ended" else latest


def follow(settings, job_id: str, timeout: float = 600) -> dict:
    from easytune import jobs

    return wait_until(lambda: (j := jobs.sync_job(settings, job_id))["state"] not in ("PENDING", "PREPARING", "RUNNING")
                      and j, timeout, every=0.3)


def short_plan(path: Path, **changes) -> Path:
    from easytune.plan.schema import plan_fields

    known = {f.name for f in plan_fields()}  # (save_every arrived with the worker's checkpoints)
    return write_plan(path, **{k: v for k, v in {**PLAN, **changes}.items() if k in known})


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    return short_plan(tmp_path_factory.mktemp("plans") / "short.yaml")


@pytest.fixture(scope="module")
def queued(tmp_path_factory, plan_file) -> dict:
    """Three jobs for one device. A trains under an `easytune train` follower, killed with -9 mid-run;
    B is a second `easytune train` (one epoch), which waits in the queue and then follows its job; C is
    a clone of A with another learning rate, queued behind B. Nothing else watches."""
    from easytune import jobs
    from easytune.i18n import UserError

    home = tmp_path_factory.mktemp("queue-home")
    settings = settings_for(home)
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")

    def train(plan: Path, out=subprocess.DEVNULL) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "easytune.cli", "train", "--config", str(plan)], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)

    follower_a = train(plan_file)
    a_id = wait_until(lambda: first_job_id(home))  # (read without migrating: the follower creates the database)
    a_pid = worker_pid(home, a_id)  # a worker takes seconds to load: A is surely still running below
    follower_b = train(short_plan(plan_file.with_name("one-epoch.yaml"), epochs=1), subprocess.PIPE)
    b_id = wait_until(lambda: [j["id"] for j in jobs.list_jobs(settings) if j["id"] != a_id])[0]
    c = cli_json("jobs", "clone", a_id, "--set", "learning_rate=1e-3", "--set", "epochs=1", home=home)
    waiting = cli_json("jobs", "queue", home=home)
    with pytest.raises(UserError) as refused:
        jobs.delete_job(settings, a_id)
    follower_a.kill()
    follower_a.wait()
    a_alive_after_follower = alive(a_pid)
    b_said, _ = follower_b.communicate(timeout=600)
    c_done = follow(settings, c["id"])
    return {"home": home, "a_id": a_id, "b_id": b_id, "c": c, "waiting": waiting, "refused": refused.value,
            "a_alive_after_follower": a_alive_after_follower, "b_said": b_said, "b_code": follower_b.returncode,
            "c_done": c_done, **{k: cli_json("jobs", "show", i, home=home) for k, i in (("a", a_id), ("b", b_id))}}


def test_queued_jobs_wait_their_turn_and_start_one_after_another(queued):
    a, b, c = queued["a"], queued["b"], queued["c_done"]
    assert [(j["id"], j["queue_position"]) for j in queued["waiting"]] == [(b["id"], 1), (c["id"], 2)]
    assert queued["c"]["state"] == "PENDING" and queued["c"]["queue_position"] == 2
    assert "number 1 in the queue" in queued["b_said"], "the queued `easytune train` said it waits"
    assert queued["b_code"] == 0 and b["state"] == "COMPLETED", "then it followed its job to the end"
    assert c["state"] == "COMPLETED"
    assert a["finished_at"] <= b["started_at"] and b["finished_at"] <= c["started_at"], "one job at a time"


def test_killing_the_follower_leaves_the_worker_training_and_another_follower_reattaches(queued):
    a, home = queued["a"], queued["home"]
    assert queued["a_alive_after_follower"]
    assert a["state"] == "COMPLETED" and a["error_message"] is None
    assert loss_steps(home, a["id"]) == list(range(1, a["total_steps"] + 1)), "every step recorded once"
    assert a["final_loss"] < a["first_loss"] * 0.7
    assert (Path(a["job_dir"]) / "adapter" / "adapter_model.safetensors").is_file()


def test_a_clone_trains_with_its_changed_learning_rate(queued):
    import yaml

    c = queued["c_done"]
    plan = yaml.safe_load((Path(c["job_dir"]) / "plan.yaml").read_text(encoding="utf-8"))
    assert plan["learning_rate"] == pytest.approx(1e-3) and plan["epochs"] == 1
    lrs = [r["value"] for r in rows(queued["home"], "job_metrics", c["id"]) if r["name"] == "lr"]
    assert max(lrs) == pytest.approx(1e-3), "the worker ran with the clone's learning rate"
    assert json.loads((Path(c["job_dir"]) / "job.json").read_text(encoding="utf-8"))["clone_of"] == queued["a_id"]


def test_delete_is_refused_while_running_then_removes_folder_and_rows(queued):
    home, a_id, b = queued["home"], queued["a_id"], queued["b"]  # (the other tests read only what was kept)
    refused = queued["refused"]
    assert refused.key == "jobs.error.still_active" and f"easytune jobs stop {a_id}" in refused.message("en")
    assert Path(queued["a"]["job_dir"]).is_dir()
    assert rows(home, "job_metrics", b["id"]) and rows(home, "job_events", b["id"])
    cli_json("jobs", "delete", b["id"], home=home)
    assert not Path(b["job_dir"]).exists()
    assert not rows(home, "jobs", b["id"], "id")
    assert not rows(home, "job_metrics", b["id"]) and not rows(home, "job_events", b["id"])
    gone = cli("jobs", "show", b["id"], "--json", home=home, check=False)
    assert gone.returncode == 2 and json.loads(gone.stdout)["error"] == "jobs.error.unknown"
    assert Path(queued["a"]["job_dir"]).is_dir() and rows(home, "job_metrics", a_id), "only that job went"


def test_pause_then_resume_completes_like_an_uninterrupted_run(tmp_path, plan_file, queued):
    from easytune import jobs

    home = tmp_path / "home"
    job = cli_json("train", "--config", str(plan_file), "--detach", home=home)
    pid = worker_pid(home, job["id"])
    if not first_checkpoint(Path(job["job_dir"]), pid):
        pytest.skip(NO_CHECKPOINTS)
    paused = jobs.pause_job(settings_for(home), job["id"])  # at once: a fast machine would finish first
    assert paused["state"] == "PAUSED" and not alive(pid)
    shown = cli_json("jobs", "show", job["id"], home=home)
    assert shown["checkpoint"] and shown["actions"][0] == "resume"
    assert loss_steps(home, job["id"])[-1] < shown["total_steps"], "paused mid-run"
    done = cli_json("jobs", "resume", job["id"], "--follow", home=home)
    assert done["id"] == job["id"] and done["state"] == "COMPLETED"
    resumed_from = json.loads((Path(job["job_dir"]) / "job.json").read_text(encoding="utf-8"))["resume_from"]
    assert resumed_from.startswith("checkpoints/step-")
    assert loss_steps(home, job["id"]) == list(range(1, done["total_steps"] + 1)), "each step drawn once"
    assert done["final_loss"] == pytest.approx(queued["a"]["final_loss"], rel=0.05)


def test_a_worker_killed_with_nobody_watching_is_interrupted_and_resumes(tmp_path, plan_file, queued):
    home = tmp_path / "home"
    job = cli_json("train", "--config", str(plan_file), "--detach", home=home)  # its starter exits at once
    pid = worker_pid(home, job["id"])
    if not first_checkpoint(Path(job["job_dir"]), pid):
        pytest.skip(NO_CHECKPOINTS)
    os.kill(pid, signal.SIGKILL)
    found = {j["id"]: j for j in cli_json("jobs", "list", home=home)}[job["id"]]  # the next start finds it
    assert found["state"] == "INTERRUPTED"
    shown = cli("jobs", "show", job["id"], home=home).stdout
    assert f"easytune jobs resume {job['id']}" in shown and f"easytune jobs restart {job['id']}" in shown
    done = cli_json("jobs", "resume", job["id"], "--follow", home=home)
    assert done["state"] == "COMPLETED"
    assert loss_steps(home, job["id"]) == list(range(1, done["total_steps"] + 1))
    assert done["final_loss"] == pytest.approx(queued["a"]["final_loss"], rel=0.05)


def test_followers_racing_to_start_the_queue_start_one_job(home, settings):
    """The app and several CLIs may all see the device free at once: exactly one job starts."""
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(write_plan(home.parent / "long.yaml", max_steps=100000))
    created = [jobs.create_job(settings, plan)["id"] for _ in range(3)]
    barrier = threading.Barrier(4)

    def follower():
        barrier.wait()
        jobs.start_next(settings)

    threads = [threading.Thread(target=follower) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    states = [jobs.get_job(settings, job_id) for job_id in created]
    try:
        assert [j["state"] for j in states] == ["PREPARING", "PENDING", "PENDING"], "the oldest starts first"
        assert [j["queue_position"] for j in states] == [None, 1, 2]
        assert [j["id"] for j in jobs.queue(settings)] == created[1:]
        held = jobs.pause_job(settings, created[2])  # a waiting job can be held back
        assert held["state"] == "PAUSED" and [j["id"] for j in jobs.queue(settings)] == [created[1]]
    finally:
        for job_id in reversed(created):
            jobs.stop_job(settings, job_id)
    assert {jobs.get_job(settings, job_id)["state"] for job_id in created[:2]} == {"STOPPED"}
    assert not alive(states[0]["pid"]), "the started worker was stopped"


def test_refusals_name_the_state_and_the_way_out(queued):
    home, job = queued["home"], queued["a"]
    before = len(cli_json("jobs", "list", home=home))
    for action, key in (("pause", "jobs.error.not_pausable"), ("resume", "jobs.error.not_resumable")):
        for lang in ("en", "zh"):
            result = cli("jobs", action, job["id"], "--json", home=home, check=False, lang=lang)
            assert result.returncode == 2 and json.loads(result.stdout)["error"] == key
            assert job["id"] in json.loads(result.stdout)["message"]
    bad = cli("jobs", "clone", job["id"], "--set", "learning_rate=-1", "--json", home=home, check=False)
    assert bad.returncode == 2 and json.loads(bad.stdout)["error"] == "plan.out_of_range"
    typo = cli("jobs", "clone", job["id"], "--set", "learning_rat=0.1", "--json", home=home, check=False)
    assert json.loads(typo.stdout)["error"] == "plan.unknown_key" and "learning_rate" in typo.stdout
    assert len(cli_json("jobs", "list", home=home)) == before, "a refused clone creates nothing"


def test_suggested_changes_for_a_rerun(queued):
    from easytune import jobs
    from easytune.i18n import UserError

    settings, job_id = settings_for(queued["home"]), queued["a_id"]  # lr 0.005, retention 0.3
    assert jobs.suggested_changes(settings, job_id, "lower_lr") == {"learning_rate": 0.0015}
    assert jobs.suggested_changes(settings, job_id, "retention") == {"retention_ratio": 0.3, "learning_rate": 0.0025}
    with pytest.raises(UserError, match="retention, lower_lr"):
        jobs.suggested_changes(settings, job_id, "faster")


def test_out_of_memory_offers_a_run_with_less_memory(home, settings, tmp_path):
    """After an out-of-memory failure: half the batch with the same effective batch, then checkpointing,
    then shorter rows; offered as a one-click action and as a command."""
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan
    from easytune.store import dumps, open_db

    job = jobs.create_job(settings, TrainingPlan.load(write_plan(tmp_path / "plan.yaml", batch_size=8, grad_accum=2,
                                                                 max_steps=100000)))
    open_db(settings.db_path)["jobs"].update(job["id"], {  # as the worker's FAILED event leaves it
        "state": "FAILED", "error": dumps({"key": "train.error.oom_batch", "params": {
            "device": "cpu", "batch_size": 8, "max_seq_len": 256, "smaller_batch": 4, "more_accum": 4,
            "shorter_len": 128}})})
    assert "less_memory" in jobs.available_actions(settings, jobs.get_job(settings, job["id"]))
    assert f"easytune jobs clone {job['id']} --suggest less_memory" in cli("jobs", "show", job["id"], home=home).stdout
    assert jobs.suggested_changes(settings, job["id"], "less_memory") == {"batch_size": 4, "grad_accum": 4}
    again = jobs.perform(settings, job["id"], "less_memory")
    try:
        plan = TrainingPlan.load(Path(again["job_dir"]) / "plan.yaml")
        assert (plan.batch_size, plan.grad_accum) == (4, 4)
        one = jobs.create_job(settings, TrainingPlan.load(write_plan(tmp_path / "one.yaml", batch_size=1)))
        assert jobs.suggested_changes(settings, one["id"], "less_memory") == {"grad_checkpointing": True}
    finally:
        jobs.stop_job(settings, again["id"])


def test_a_failed_job_says_why_and_offers_a_restart(home, settings, tmp_path):
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan
    from easytune.store import dumps, open_db

    job = jobs.create_job(settings, TrainingPlan.load(write_plan(tmp_path / "plan.yaml", max_steps=100000)))
    open_db(settings.db_path)["jobs"].update(job["id"], {  # as the worker's FAILED event leaves it
        "state": "FAILED", "error": dumps({"key": "train.error.diverged", "params": {"step": 7}})})
    for lang, said in (("en", "step 7"), ("zh", "第 7 步")):
        shown = cli("jobs", "show", job["id"], home=home, lang=lang).stdout
        assert said in shown
        assert f"easytune jobs restart {job['id']}" in shown and "--suggest lower_lr" in shown
    assert "resume" not in cli_json("jobs", "show", job["id"], home=home)["actions"], "no checkpoint to resume"
    again = cli_json("jobs", "restart", job["id"], home=home)
    try:
        assert again["id"] != job["id"] and again["state"] in ("PENDING", "PREPARING")
        assert json.loads((Path(again["job_dir"]) / "job.json").read_text(encoding="utf-8"))["clone_of"] == job["id"]
        assert jobs.get_job(settings, job["id"])["state"] == "FAILED", "the failed run is kept to compare with"
    finally:
        assert cli_json("jobs", "stop", again["id"], home=home)["state"] == "STOPPED"
