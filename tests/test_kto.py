"""Preference training from answers labelled good or bad (KTO) on a real labelled sample: the loss starts at
one half and falls, and the good answers' reward pulls away from the bad ones'. Labelled answers and another
objective are refused before anything starts."""

import json
from pathlib import Path

import pytest

from support import SHARED, cli, cli_json, write_plan

pytestmark = pytest.mark.slow
LABELLED = SHARED / "datasets" / "kto_en_demo.json"


@pytest.fixture(scope="module")
def labelled_data(tmp_path_factory):
    if not LABELLED.is_file():
        pytest.skip(f"sample labelled data not found at {LABELLED}")
    rows = json.loads(LABELLED.read_text(encoding="utf-8"))
    good, bad = [r for r in rows if r["label"]][:32], [r for r in rows if not r["label"]][:32]
    tmp = tmp_path_factory.mktemp("kto")
    sample = tmp / "labelled.json"
    sample.write_text(json.dumps([row for pair in zip(good, bad) for row in pair], ensure_ascii=False))
    home = tmp / "home"
    imported = cli_json("data", "add", str(sample), home=home)
    assert imported["dataset"]["kind"] == "kto"
    return home, tmp, imported["dataset"]["name"]


@pytest.fixture(scope="module")
def kto_job(labelled_data):
    home, tmp, name = labelled_data
    plan = write_plan(tmp / "kto.yaml", dataset=name, max_steps=16, eval_every=8, retention_ratio=0.0,
                      max_seq_len=128, batch_size=4, learning_rate=0.002)  # objective auto: kto for labels
    return home, cli_json("train", "--config", str(plan), home=home)


def test_kto_lowers_the_loss_and_separates_good_answers_from_bad(kto_job):
    home, job = kto_job
    assert job["state"] == "COMPLETED", job
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    logged = [e["key"] for e in events if e["type"] == "log"]
    assert "train.log.objective_kto" in logged and "train.log.kto_reference" in logged
    steps = [e for e in events if e["type"] == "step"]
    assert steps[0]["loss"] == pytest.approx(0.5, abs=1e-3), "policy = reference at the start: 1 − σ(0)"
    last = steps[-4:]
    assert sum(e["loss"] for e in last) / len(last) < 0.45
    margins = [e["reward_margin"] for e in last if "reward_margin" in e]
    assert margins and sum(margins) / len(margins) > 0.1 > abs(steps[0].get("reward_margin", 0))
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[0]["val_loss"] == pytest.approx(0.5, abs=1e-3) and "reward_margin" in evals[-1]
    assert json.loads((Path(job["job_dir"]) / "job.json").read_text(encoding="utf-8"))["objective"] == "kto"
    assert (Path(job["job_dir"]) / "adapter" / "adapter_model.safetensors").is_file()


def test_labelled_answers_and_another_objective_are_refused(labelled_data):
    home, tmp, name = labelled_data
    sft_on_labels = write_plan(tmp / "sft.yaml", dataset=name, objective="sft")
    result = cli("train", "--config", str(sft_on_labels), home=home, check=False)
    assert result.returncode == 2 and "objective: kto" in result.stderr
    kto_on_answers = write_plan(tmp / "wrong.yaml", dataset="demo:shop_faq_en", objective="kto")
    result = cli("train", "--config", str(kto_on_answers), home=home, check=False, lang="zh")
    assert result.returncode == 2 and "标注了好坏" in result.stderr
