"""Two data-parallel worker processes on the CPU (accelerate launch, gloo): the run completes with a
falling loss, and only the main process reports."""

import json
from pathlib import Path

import pytest

from support import cli_json, write_plan

pytestmark = pytest.mark.slow


def test_two_processes_train_together(tmp_path):
    home = tmp_path / "home"
    plan = write_plan(tmp_path / "ddp.yaml", num_processes=2, max_steps=12, eval_every=6, retention_ratio=0.0,
                      dataset="demo:shop_faq_en")
    job = cli_json("train", "--config", str(plan), home=home)
    assert job["state"] == "COMPLETED", job
    assert job["final_loss"] < job["first_loss"] * 0.8, job
    folder = Path(job["job_dir"])
    events = [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]
    logs = {e["key"]: e["params"] for e in events if e["type"] == "log"}
    assert logs["train.log.processes"] == {"processes": 2, "backend": "gloo"}
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 13)), "one report per step: only the main process writes"
    assert [e["state"] for e in events if e["type"] == "state"] == ["PREPARING", "RUNNING", "COMPLETED"]
    # each step takes a micro-batch per process: about twice the tokens of one process's batch of 8
    assert min(e["tokens"] for e in steps) > 16 * 10
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((folder / "checkpoints" / "index.json").read_text())["latest"] == "step-12"
