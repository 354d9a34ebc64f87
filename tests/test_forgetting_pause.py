"""The forgetting guard pauses a run that forgets too much: a real run of the built-in model (which
forgets far past the stop threshold at its first evaluation) ends PAUSED with the reason and a checkpoint;
resuming it, here at a lower learning rate, continues the same job to the end; finishing one keeps its
best checkpoint as the result."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from support import cli, cli_json, mlflow_run, tensorboard_scalars, write_plan

pytestmark = pytest.mark.slow

# paused at step 10 of 20; without knowledge retention, which the guard's way on then offers; TensorBoard and
# MLflow on, whose files must follow the pause, the resume and the finish
PLAN = {"max_steps": 20, "eval_every": 10, "forgetting_guard": True, "retention_ratio": 0.0, "tensorboard": True,
        "mlflow": True}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("guard") / "home"


def paused_job(home: Path) -> dict:
    plan = write_plan(home.parent / "plan.yaml", **PLAN)
    result = cli("train", "--config", str(plan), "--json", home=home, check=False)
    assert result.returncode == 1, result.stderr  # not completed
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def to_resume(home):
    return paused_job(home)


@pytest.fixture(scope="module")
def to_finish(home, to_resume):  # (after the first: one job at a time holds the device)
    return paused_job(home)


def test_the_guard_pauses_with_its_reason_and_offers_the_ways_on(home, to_resume):
    job = to_resume
    assert job["state"] == "PAUSED" and job["checkpoint"] == "checkpoints/step-10"
    assert job["final_loss"] is not None and job["total_steps"] == 20
    error = json.loads(job["error"])
    assert error["key"] == "train.log.forgetting_pause" and error["params"]["pct"] > error["params"]["limit"] == 30.0
    pct = error["params"]["pct"]
    assert job["error_message"].startswith(f"Paused at step 10: the forgetting score is {pct}%, over the stop "
                                           f"threshold of 30.0%.")
    assert job["actions"][:4] == ["resume", "resume_retention", "resume_lower_lr", "finish_best"]
    shown = cli("jobs", "show", job["id"], home=home, lang="zh").stdout
    assert f"在第 10 步自动暂停：遗忘分数为 {pct}%，超过了停止阈值 30.0%" in shown
    for command in (f"easytune jobs resume {job['id']} --suggest retention",
                    f"easytune jobs resume {job['id']} --suggest lower_lr", f"easytune jobs finish {job['id']}"):
        assert command in shown
    assert (Path(job["job_dir"]) / "adapter" / "adapter_model.safetensors").is_file(), "the work so far is kept"


def test_resume_at_a_lower_learning_rate_continues_the_same_job(home, to_resume):
    job = to_resume
    refused = cli("jobs", "resume", job["id"], "--set", "lora_r=4", "--json", home=home, check=False)
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "jobs.error.resume_setting"
    done = cli_json("jobs", "resume", job["id"], "--suggest", "lower_lr", "--follow", home=home)
    assert done["id"] == job["id"] and done["state"] == "COMPLETED" and done["error"] is None
    series = cli_json("jobs", "metrics", job["id"], home=home)
    assert [step for step, _ in series["loss"]] == list(range(1, 21)), "steps 11-20 trained after the pause"
    assert [step for step, _ in series["cf_pct"]] == [0, 10, 20]
    job_dir = Path(job["job_dir"])
    record = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    assert record["resume_from"] == "checkpoints/step-10"
    assert record["forgetting_accepted_pct"] == json.loads(job["error"])["params"]["pct"]
    assert record["plan_changes"] == [{"from_step": 10, "changes": {"learning_rate": 0.0015},
                                       "before": {"learning_rate": 0.005}}]
    assert "learning_rate: 0.0015" in (job_dir / "plan.yaml").read_text(encoding="utf-8")
    lrs = dict(series["lr"])
    assert lrs[11] < 0.0015 < lrs[10], "the lower peak applies from the checkpoint on"
    logs = cli("jobs", "logs", job["id"], home=home).stdout
    assert "Resuming from step 10 with changed settings: learning_rate: 0.005 → 0.0015." in logs
    # one curve across the pause in TensorBoard, and the run's MLflow record rewritten when it completed
    read = tensorboard_scalars(job_dir / "tensorboard")["train/loss"]
    assert read == [(step, pytest.approx(value, rel=1e-6)) for step, value in series["loss"]]
    client, run = mlflow_run(home / "tracking" / "mlruns", job["id"])
    assert run.info.status == "FINISHED" and run.data.params["learning_rate"] == "0.0015"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, 21))


def test_finish_keeps_the_best_checkpoint_as_the_result(home, to_finish):
    from easytune.chat import job_model, load_model
    from easytune.settings import load_settings

    job, job_dir = to_finish, Path(to_finish["job_dir"])
    assert job["state"] == "PAUSED"
    done = cli_json("jobs", "finish", job["id"], home=home)
    assert done["state"] == "COMPLETED" and done["error"] is None
    assert "resume" not in done["actions"] and "finish_best" not in done["actions"]
    checkpoint = load_file(job_dir / "checkpoints" / "step-10" / "weights.safetensors")
    delivered = load_file(job_dir / "adapter" / "adapter_model.safetensors")
    assert {name.replace(".default.", "."): value for name, value in checkpoint.items()}.keys() == delivered.keys()
    for name, value in checkpoint.items():
        assert delivered[name.replace(".default.", ".")].equal(value)
    logs = cli("jobs", "logs", job["id"], home=home, lang="zh").stdout
    assert "不再继续训练，直接结束：结果采用第 10 步的检查点，它的验证损失最低。" in logs
    client, run = mlflow_run(home / "tracking" / "mlruns", job["id"])  # finishing ends its MLflow run too
    assert run.info.status == "FINISHED" and run.data.tags["easytune.state"] == "COMPLETED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == list(range(1, 11))
    again = cli("jobs", "finish", job["id"], "--json", home=home, check=False)
    assert again.returncode == 2 and json.loads(again.stdout)["error"] == "jobs.error.not_finishable"
    model, _ = load_model(*job_model(load_settings(home=home), job["id"]))  # the result still loads
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_finishing_delivers_the_best_checkpoint_not_the_last(demo_job, tmp_path):
    import shutil

    import torch
    from safetensors.torch import save_file

    from easytune.i18n import UserError
    from easytune.jobs.deliver import deliver_checkpoint

    job_dir = tmp_path / "job"
    shutil.copytree(demo_job[1]["job_dir"], job_dir)  # the demo delivers its last step (keep_best: false)
    index = json.loads((job_dir / "checkpoints" / "index.json").read_text(encoding="utf-8"))
    assert index["best"] != index["latest"], "the demo's best validation loss comes early"
    adapter = job_dir / "adapter" / "adapter_model.safetensors"
    last = load_file(adapter)
    best_weights = job_dir / "checkpoints" / index["best"] / "weights.safetensors"
    kept = best_weights.read_bytes()
    wrong = load_file(best_weights)
    wrong[next(iter(wrong))] = torch.zeros(3)  # a checkpoint of another shape is refused before any write
    save_file(wrong, str(best_weights))
    with pytest.raises(UserError, match="does not match"):
        deliver_checkpoint(job_dir, "demo")
    assert load_file(adapter).keys() == last.keys() and all(load_file(adapter)[k].equal(v) for k, v in last.items())
    best_weights.write_bytes(kept)
    assert deliver_checkpoint(job_dir, "demo") == {"step": int(index["best"].split("-")[1]), "best": True,
                                                   "kind": "adapter"}
    now, best = load_file(adapter), load_file(best_weights)
    assert all(now[name.replace(".default.", ".")].equal(value) for name, value in best.items())
    assert not all(now[name].equal(value) for name, value in last.items())
