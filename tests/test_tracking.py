"""Tracking: a job's curves, plan and outcome written for TensorBoard and MLflow and read back by each tool's own
reader (EventAccumulator, MlflowClient on a file: URI); a plan with tracking on writes TensorBoard events while
it trains and its MLflow run when it ends; jobs compared side by side."""

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest

from support import cli, cli_json, mlflow_run, tensorboard_scalars, write_plan

pytestmark = pytest.mark.slow

TRACKED = {"tensorboard": True, "mlflow": True, "learning_rate": 0.002, "max_steps": 36, "eval_every": 12,
           "retention_ratio": 0.0}  # short, and unlike the demo's plan in a few settings


def close_to(read: list[tuple[int, float]], recorded: list[list]) -> bool:
    """Event files hold float32: equal to the recorded values at their steps, to float32's precision."""
    return [step for step, _ in read] == [step for step, _ in recorded] and all(
        value == pytest.approx(expected, rel=1e-6) for (_, value), (_, expected) in zip(read, recorded))


@pytest.fixture(scope="module")
def track_home(demo_job, tmp_path_factory) -> Path:
    """A home holding the demo job, not yet evaluated (its database copied without the evaluations other tests
    may have stored: its folder stays where the demo left it)."""
    demo_home, _ = demo_job
    home = tmp_path_factory.mktemp("tracking") / "home"
    home.mkdir()
    with sqlite3.connect(demo_home / "easytune.db") as source, sqlite3.connect(home / "easytune.db") as copy:
        source.backup(copy)
        copy.execute("DELETE FROM evaluations")
    return home


@pytest.fixture(scope="module")
def tracked(track_home, tmp_path_factory) -> dict:
    """A short run whose plan turns both tools on, followed in this process as the app follows it; what its
    TensorBoard folder held while it was still running, and its summary at the end."""
    from easytune import jobs
    from easytune.i18n import UserError
    from easytune.plan.schema import TrainingPlan
    from easytune.settings import load_settings
    from easytune.tracking import export_metrics
    from easytune.tracking.service import tensorboard_dir

    settings = load_settings(home=track_home, language="en")
    plan = TrainingPlan.load(write_plan(tmp_path_factory.mktemp("plans") / "tracked.yaml", **TRACKED))
    job = jobs.launch(settings, plan)
    during, refused = None, None
    deadline = time.time() + 600
    while job["state"] in ("PENDING", "PREPARING", "RUNNING") and time.time() < deadline:
        job = jobs.sync_job(settings, job["id"])
        loss = jobs.metrics(settings, job["id"]).get("loss", [])
        if during is None and job["state"] == "RUNNING" and len(loss) >= 3:
            during = {"loss": [list(point) for point in loss], "read": tensorboard_scalars(tensorboard_dir(job))}
            try:
                export_metrics(settings, job["id"])
            except UserError as exc:
                refused = exc
        time.sleep(0.2)
    assert job["state"] == "COMPLETED", job
    return {"job": job, "during": during, "refused": refused,
            "metrics": cli_json("jobs", "metrics", job["id"], home=track_home)}


def test_exported_tensorboard_files_hold_the_jobs_curves_and_plan(demo_job, track_home, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, job = demo_job
    recorded = cli_json("jobs", "metrics", job["id"], home=track_home)
    out = cli_json("jobs", "export-metrics", job["id"], "--tensorboard", str(tmp_path / "tb"), home=track_home)
    assert "mlflow" not in out and out["tensorboard"]["path"] == str(tmp_path / "tb" / job["id"])
    read = tensorboard_scalars(tmp_path / "tb" / job["id"])
    assert close_to(read["train/loss"], recorded["loss"]) and len(recorded["loss"]) > 50
    assert close_to(read["eval/val_loss"], recorded["val_loss"]) and close_to(read["eval/cf_pct"], recorded["cf_pct"])
    assert close_to(read["train/lr"], recorded["lr"])
    assert out["tensorboard"]["scalars"] == sum(len(points) for points in recorded.values())
    assert out["tensorboard"]["command"] == f"tensorboard --logdir {tmp_path / 'tb' / job['id']}"

    events = EventAccumulator(str(tmp_path / "tb" / job["id"]), size_guidance={"tensors": 0})
    events.Reload()
    plan_text = events.Tensors("plan")[0].tensor_proto.string_val[0].decode()
    assert "learning_rate: 0.005" in plan_text and "dataset: demo:shop_faq_zh" in plan_text
    assert "_hparams_/session_start_info" in events.Tags()["tensors"]  # the HParams tab lists its settings

    again = cli_json("jobs", "export-metrics", job["id"], "--tensorboard", str(tmp_path / "tb"), home=track_home)
    assert again["tensorboard"]["scalars"] == out["tensorboard"]["scalars"]
    assert len(list((tmp_path / "tb" / job["id"]).glob("events.out.tfevents.*"))) == 1  # replaced, not doubled


def test_exported_mlflow_run_is_read_by_mlflow_itself(demo_job, track_home, tmp_path):
    from easytune.plan.schema import TrainingPlan

    _, job = demo_job
    recorded = cli_json("jobs", "metrics", job["id"], home=track_home)
    store = tmp_path / "mlruns"
    out = cli_json("jobs", "export-metrics", job["id"], "--mlflow", str(store), home=track_home)
    assert "tensorboard" not in out and out["mlflow"]["path"] == str(store.resolve())
    assert out["mlflow"]["command"].endswith(f"mlflow ui --backend-store-uri {store.resolve().as_uri()}")

    client, run = mlflow_run(store)
    assert run.info.run_name == job["name"] and run.info.status == "FINISHED"
    assert run.info.run_id == out["mlflow"]["run_id"] and run.info.end_time > run.info.start_time
    plan = TrainingPlan.load(Path(job["job_dir"]) / "plan.yaml").to_dict()
    assert run.data.params == {key: str(value) for key, value in plan.items()}
    tags = run.data.tags
    assert (tags["easytune.job_id"], tags["easytune.model"], tags["easytune.dataset"], tags["easytune.state"]) == (
        job["id"], "easytune-tiny", "demo:shop_faq_zh", "COMPLETED")
    for name, key in (("loss", "train/loss"), ("val_loss", "eval/val_loss"), ("cf_pct", "eval/cf_pct")):
        history = client.get_metric_history(run.info.run_id, key)
        assert [[m.step, m.value] for m in history] == recorded[name], name
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["plan.yaml"]

    cli_json("jobs", "export-metrics", job["id"], "--mlflow", str(store), home=track_home)
    assert mlflow_run(store)[1].info.run_id == run.info.run_id  # the same job again replaces its run


def test_a_plan_with_tracking_on_writes_tensorboard_while_it_trains_and_mlflow_when_it_ends(tracked, track_home):
    job = tracked["job"]
    during = tracked["during"]
    assert during is not None, "the run was never seen running"
    read = during["read"]["train/loss"]
    assert len(read) >= 3 and close_to(read, during["loss"][:len(read)])  # as the follower read the events
    assert tracked["refused"] is not None and tracked["refused"].key == "tracking.error.not_ended"

    recorded = tracked["metrics"]
    assert len(recorded["loss"]) == TRACKED["max_steps"]
    final = tensorboard_scalars(Path(job["job_dir"]) / "tensorboard")
    assert close_to(final["train/loss"], recorded["loss"]) and close_to(final["eval/val_loss"], recorded["val_loss"])

    client, run = mlflow_run(track_home / "tracking" / "mlruns")
    assert run.data.tags["easytune.job_id"] == job["id"] and run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.002" and run.data.params["tensorboard"] == "True"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [[m.step, m.value] for m in history] == recorded["loss"]


def test_compare_names_the_settings_that_differ_and_each_jobs_outcome(demo_job, tracked, track_home):
    _, demo = demo_job
    job = tracked["job"]
    result = cli_json("jobs", "compare", demo["id"], job["id"], home=track_home)
    assert [j["id"] for j in result["jobs"]] == [demo["id"], job["id"]]
    differences = result["differences"]
    assert differences["learning_rate"] == [0.005, 0.002] and differences["tensorboard"] == [False, True]
    assert "model" not in differences and "dataset" not in differences  # only what differs
    first, second = result["jobs"]
    recorded = tracked["metrics"]
    assert second["final_val_loss"] == recorded["val_loss"][-1][1] and second["steps"] == TRACKED["max_steps"]
    assert second["best_val_loss"] == min(value for _, value in recorded["val_loss"])
    assert second["cf_pct"] == recorded["cf_pct"][-1][1] and second["train_s"] > 0
    assert first["final_loss"] == cli_json("jobs", "metrics", demo["id"], home=track_home)["loss"][-1][1]
    assert first["verdict"] is None and second["facts_seen"] is None  # neither was evaluated here
    assert [step for step, _ in result["series"][job["id"]]["loss"]] == list(range(1, TRACKED["max_steps"] + 1))

    table = cli("jobs", "compare", demo["id"], job["id"], home=track_home).stdout
    assert "learning_rate" in table and "0.005" in table and "0.002" in table
    best = next(line for line in table.splitlines() if line.startswith("best validation loss"))
    assert f"{second['best_val_loss']:.4f} (step {second['best_val_step']})" in best
    zh = cli("jobs", "compare", demo["id"], job["id"], home=track_home, lang="zh").stdout
    assert "最佳验证损失" in zh and "评估结论" in zh and "best validation loss" not in zh


def test_the_jobs_page_compares_and_exports_through_the_same_service(demo_job, tracked, track_home):
    from easytune.settings import load_settings
    from easytune.ui.tracking_view import compare_view, export_text

    settings = load_settings(home=track_home)
    _, demo = demo_job
    job = tracked["job"]
    assert compare_view(settings, [demo["id"]], "en") is None  # one job is nothing to compare
    view = compare_view(settings, [demo["id"], job["id"]], "zh")
    assert [row[0] for row in view["rows"]][:1] == ["learning_rate"] and len(view["headers"]) == 3
    assert len(view["figure"].data) == 4  # training and validation loss of each job, overlaid
    said = export_text(settings, job["id"], ["tensorboard", "mlflow"], "en")
    assert f"tensorboard --logdir {Path(job['job_dir']) / 'tensorboard'}" in said and "mlflow ui" in said


def test_bad_requests_are_refused_in_both_languages(demo_job, track_home, tmp_path):
    _, demo = demo_job
    for args in (("export-metrics", "no-such-job"), ("compare", demo["id"], "no-such-job")):
        en = cli("jobs", *args, "--json", home=track_home, check=False)
        assert en.returncode == 2 and json.loads(en.stdout)["error"] == "jobs.error.unknown"
        assert "no-such-job" in json.loads(en.stdout)["message"]
        zh = cli("jobs", *args, home=track_home, check=False, lang="zh")
        assert zh.returncode == 2 and "no-such-job" in zh.stderr and "任务" in zh.stderr
    one = cli("jobs", "compare", demo["id"], "--json", home=track_home, check=False)
    assert json.loads(one.stdout)["error"] == "tracking.error.compare_two"
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    foreign = cli("jobs", "export-metrics", demo["id"], "--mlflow", str(tmp_path / "notes"), "--json",
                  home=track_home, check=False)
    assert json.loads(foreign.stdout)["error"] == "tracking.error.not_a_store"
    assert os.listdir(tmp_path / "notes") == ["todo.txt"]  # someone else's folder is left as it was


def test_without_tensorboard_the_user_is_told_to_install_it(demo_job, track_home, tmp_path):
    """With the package unimportable: a plan asking for it is refused before a job exists, an export says
    what to install, and MLflow alone still works."""
    _, demo = demo_job
    hidden = tmp_path / "hidden" / "tensorboard"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('tensorboard is not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hidden.parent), os.environ.get("PYTHONPATH")]))}
    for lang, words in (("en", "pip install tensorboard"), ("zh", "pip install tensorboard")):
        said = cli("jobs", "export-metrics", demo["id"], "--json", home=track_home, env=env, check=False, lang=lang)
        error = json.loads(said.stdout)
        assert said.returncode == 2 and error["error"] == "tracking.error.no_tensorboard" and words in error["message"]
    assert "安装" in error["message"]
    mlflow_only = cli_json("jobs", "export-metrics", demo["id"], "--mlflow", str(tmp_path / "mlruns"),
                           home=track_home, env=env)
    assert mlflow_only["mlflow"]["metrics"] > 0
    count = "select count(*) from jobs"
    with sqlite3.connect(track_home / "easytune.db") as db:
        before = db.execute(count).fetchone()
    plan = write_plan(tmp_path / "plan.yaml", tensorboard=True)
    refused = cli("train", "--config", str(plan), "--json", home=track_home, env=env, check=False)
    assert json.loads(refused.stdout)["error"] == "tracking.error.no_tensorboard"
    with sqlite3.connect(track_home / "easytune.db") as db:
        assert db.execute(count).fetchone() == before  # no job was made


def test_a_resumed_runs_redone_steps_replace_the_old_ones_in_tensorboard(tmp_path):
    """A run continued from its checkpoint at step 4 measures steps 5… again: TensorBoard keeps the new points."""
    from easytune.tracking.tensorboard_files import EventFile

    with EventFile(tmp_path) as events:
        for step in range(1, 9):
            events.scalar("train/loss", 10.0 - step, step, 1000.0 + step)
    with EventFile(tmp_path) as events:  # the follower of the resumed worker appends to the same file
        assert not events.new
        events.restart(5, 2000.0)
        for step in range(5, 7):
            events.scalar("train/loss", 1.0 / step, step, 2000.0 + step)
    read = tensorboard_scalars(tmp_path)["train/loss"]
    assert [step for step, _ in read] == [1, 2, 3, 4, 5, 6]
    assert read[4][1] == pytest.approx(0.2) and read[3][1] == pytest.approx(6.0)


def test_deleting_a_job_removes_its_mlflow_run(tracked, track_home):
    """(Last: it deletes the tracked job.) The home's store keeps no run of a job that is gone."""
    store = track_home / "tracking" / "mlruns"
    run_id = mlflow_run(store)[1].info.run_id
    cli_json("jobs", "delete", tracked["job"]["id"], home=track_home)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    assert run_id and client.search_runs([client.get_experiment_by_name("easytune").experiment_id]) == []
