"""A full fine-tune split over two CPU processes (FSDP, gloo): each process holds half of the weights, the run
learns step for step what the same run with the model held whole in each process (DDP) learns, a pause and a
resume continue it from its checkpoint, and the result is an ordinary model folder that transformers loads."""

import json
import time
from pathlib import Path

import pytest

from support import cli_json, write_plan

pytestmark = pytest.mark.slow

STEPS = 16
PLAN = {"method": "full", "learning_rate": 2e-4, "num_processes": 2, "max_steps": STEPS, "eval_every": 4,
        "retention_ratio": 0.0, "dataset": "demo:shop_faq_en", "keep_best": True}


def events_of(job: dict) -> list[dict]:
    path = Path(job["job_dir"]) / "events.jsonl"  # (written once the worker starts)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def figures(job: dict, kind: str, name: str) -> list[float]:
    return [e[name] for e in events_of(job) if e["type"] == kind and name in e]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> dict:
    """The run with the model held whole in each process."""
    folder = tmp_path_factory.mktemp("ddp")
    return cli_json("train", "--config", str(write_plan(folder / "plan.yaml", **PLAN)), home=folder / "home")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[dict, int]:
    """The same run split over the processes, paused once it has saved a checkpoint past a quarter of its steps
    and resumed; (the finished job, the step it resumed from)."""
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan
    from easytune.settings import load_settings

    folder = tmp_path_factory.mktemp("fsdp")
    settings = load_settings(home=folder / "home", language="en")
    job = jobs.launch(settings, TrainingPlan.load(write_plan(folder / "plan.yaml", fsdp=True, **PLAN)))
    deadline = time.time() + 600
    while time.time() < deadline:
        job = jobs.sync_job(settings, job["id"])
        saved = [e["step"] for e in events_of(job) if e["type"] == "checkpoint"]
        if job["state"] not in ("PENDING", "PREPARING", "RUNNING") or any(step >= STEPS // 4 for step in saved):
            break
        time.sleep(0.2)
    assert job["state"] == "RUNNING", job
    jobs.pause_job(settings, job["id"])
    paused_at = max(e["step"] for e in events_of(job) if e["type"] == "checkpoint")
    assert paused_at < STEPS
    jobs.resume_job(settings, job["id"])
    while time.time() < deadline:
        job = jobs.sync_job(settings, job["id"])
        if job["state"] not in ("PENDING", "PREPARING", "RUNNING", "PAUSED"):
            break
        time.sleep(0.5)
    assert job["state"] == "COMPLETED", job
    return job, paused_at


def test_each_process_holds_half_of_the_model_and_the_run_learns_as_the_whole_one(whole, split):
    job, paused_at = split
    logs = {e["key"]: e["params"] for e in events_of(job) if e["type"] == "log"}
    assert logs["train.log.fsdp"]["processes"] == 2 and logs["train.log.fsdp"]["share"] == 50
    assert "train.log.fsdp" not in {e.get("key") for e in events_of(whole)}

    # up to the pause the two runs are the same computation: the same losses, to float precision
    same = paused_at
    assert figures(job, "step", "loss")[:same] == pytest.approx(figures(whole, "step", "loss")[:same], rel=1e-4)
    first_evals = [e for e in events_of(job) if e["type"] == "eval" and e["step"] <= paused_at]
    for mine, theirs in zip(first_evals, [e for e in events_of(whole) if e["type"] == "eval"]):
        assert mine["val_loss"] == pytest.approx(theirs["val_loss"], rel=1e-4)
        assert mine["cf_pct"] == pytest.approx(theirs["cf_pct"], rel=1e-3, abs=1e-3)
    # after it, the resumed run goes on from its checkpoint (its share of it sent to each process) to where
    # the unbroken one ends
    assert [e["params"]["step"] for e in events_of(job) if e.get("key") == "train.log.resumed"] == [paused_at]
    assert [e["step"] for e in events_of(job) if e["type"] == "step"] == list(range(1, STEPS + 1))
    assert figures(job, "step", "loss")[-1] == pytest.approx(figures(whole, "step", "loss")[-1], rel=0.03)
    assert figures(job, "eval", "val_loss")[-1] == pytest.approx(figures(whole, "eval", "val_loss")[-1], rel=0.03)
    assert figures(job, "eval", "val_loss")[-1] < figures(job, "eval", "val_loss")[0] * 0.95


def test_the_result_is_a_whole_model_that_transformers_loads(whole, split):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    job, _ = split
    folder = Path(job["job_dir"]) / "model"
    model = AutoModelForCausalLM.from_pretrained(folder)
    saved, theirs = load_file(str(folder / "model.safetensors")), load_file(
        str(Path(whole["job_dir"]) / "model" / "model.safetensors"))
    assert saved.keys() == theirs.keys()
    assert all(torch.allclose(saved[name], theirs[name], atol=2e-3) for name in saved)
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in saved.values())  # whole, not a share


def test_a_split_adapter_is_refused_before_any_job_exists(tmp_path):
    from support import cli

    plan = tmp_path / "plan.yaml"
    plan.write_text("model: easytune-tiny\ndataset: demo:shop_faq_en\nmethod: lora\nfsdp: true\n", encoding="utf-8")
    for lang, words in (("en", "method: full"), ("zh", "全量微调")):
        done = cli("train", "--config", str(plan), home=tmp_path / "home", check=False, lang=lang)
        assert done.returncode != 0 and words in done.stdout + done.stderr
    assert not (tmp_path / "home" / "jobs").exists() or not any((tmp_path / "home" / "jobs").iterdir())
