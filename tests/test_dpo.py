"""Preference training (DPO) on a real preference sample: the loss starts at log 2 and falls, and the
reward margin of the chosen answers over the rejected ones rises. Mismatched data and objective are
refused before anything starts."""

import json
import math
from pathlib import Path

import pytest

from support import SHARED, cli, cli_json, write_plan

pytestmark = pytest.mark.slow
PAIRS = SHARED / "datasets" / "dpo_en_demo.json"


@pytest.fixture(scope="module")
def preference_data(tmp_path_factory):
    if not PAIRS.is_file():
        pytest.skip(f"sample preference data not found at {PAIRS}")
    tmp = tmp_path_factory.mktemp("dpo")
    sample = tmp / "pairs.json"
    sample.write_text(json.dumps(json.loads(PAIRS.read_text(encoding="utf-8"))[:48], ensure_ascii=False))
    home = tmp / "home"
    imported = cli_json("data", "add", str(sample), home=home)
    assert imported["dataset"]["kind"] == "preference"
    return home, tmp, imported["dataset"]["name"]


@pytest.fixture(scope="module")
def dpo_job(preference_data):
    home, tmp, name = preference_data
    plan = write_plan(tmp / "dpo.yaml", dataset=name, max_steps=16, eval_every=8, retention_ratio=0.0,
                      max_seq_len=128, batch_size=4, learning_rate=0.002)  # objective auto: dpo for pairs
    return home, cli_json("train", "--config", str(plan), home=home)


def test_dpo_lowers_the_loss_and_widens_the_reward_margin(dpo_job):
    home, job = dpo_job
    assert job["state"] == "COMPLETED", job
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    assert "train.log.objective_dpo" in [e["key"] for e in events if e["type"] == "log"]
    steps = [e for e in events if e["type"] == "step"]
    assert steps[0]["loss"] == pytest.approx(math.log(2), abs=1e-3), "policy = reference at the start"
    last = steps[-4:]
    assert sum(e["loss"] for e in last) / len(last) < 0.4
    assert sum(e["reward_margin"] for e in last) / len(last) > 1.0 > abs(steps[0]["reward_margin"])
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-3) and "reward_margin" in evals[-1]
    assert (Path(job["job_dir"]) / "adapter" / "adapter_model.safetensors").is_file()


def test_data_and_objective_that_do_not_match_are_refused(preference_data):
    home, tmp, name = preference_data
    sft_on_pairs = write_plan(tmp / "sft.yaml", dataset=name, objective="sft")
    result = cli("train", "--config", str(sft_on_pairs), home=home, check=False)
    assert result.returncode == 2 and "objective: dpo" in result.stderr
    dpo_on_answers = write_plan(tmp / "wrong.yaml", dataset="demo:shop_faq_en", objective="dpo")
    result = cli("train", "--config", str(dpo_on_answers), home=home, check=False, lang="zh")
    assert result.returncode == 2 and "偏好对" in result.stderr
    assert all(job["dataset"] == name for job in cli_json("jobs", "list", home=home))


def test_the_monitor_charts_the_reward_margin(dpo_job):
    from easytune.settings import load_settings
    from easytune.ui import charts
    from easytune.ui.wizard import status_markdown

    home, job = dpo_job
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    evals = [e for e in events if e["type"] == "eval"]
    series = cli_json("jobs", "metrics", job["id"], home=home)
    assert series["reward_margin"] == [[e["step"], e["reward_margin"]] for e in steps]
    assert series["reward_accuracy"] == [[e["step"], e["reward_accuracy"]] for e in steps]
    assert series["val_reward_margin"] == [[e["step"], e["reward_margin"]] for e in evals]
    assert [step for step, _ in series["val_reward_accuracy"]] == [0, 8, 16]
    assert cli_json("jobs", "show", job["id"], home=home)["series"] == series

    for lang, title in (("en", "reward margin"), ("zh", "奖励差")):
        figure = charts.reward_figure(series, lang)
        curves = {trace.name: trace for trace in figure.data}
        smoothed = curves["reward margin (smoothed)" if lang == "en" else "奖励差（平滑）"]
        assert list(smoothed.x) == list(range(1, 17)) and figure.layout.yaxis.title.text == title
        held_out = [trace for trace in figure.data if trace.yaxis == "y2"][0]  # share ranked right, in %
        assert list(held_out.y) == [value * 100 for _, value in series["val_reward_accuracy"]]
    status = status_markdown(load_settings(home=home), job["id"], "en")
    assert f"{series['reward_margin'][-1][1]:+.3f} on the last batch" in status
    assert charts.reward_figure({"loss": series["loss"]}, "en") is None, "no reward chart for other objectives"


def test_the_objective_is_decided_once_and_the_memory_plan_counts_both_answers(dpo_job):
    """objective auto on preference pairs is dpo, recorded with the job with its two sequences per row; the
    estimated peak the worker sizes its allocator by counts both answers, as the fit estimate does."""
    from easytune.jobs.folder import JobFolder
    from easytune.models.estimate import as_shape, estimate_memory

    _, job = dpo_job
    folder = JobFolder(job["job_dir"])
    record, plan = folder.resolved(), folder.plan()
    assert plan.objective == "auto"
    assert (record["objective"], record["sequences_per_row"]) == ("dpo", 2)
    config = json.loads((Path(record["model_path"]) / "config.json").read_text(encoding="utf-8"))
    both = estimate_memory(as_shape(config), plan.method, plan.max_seq_len, 2 * plan.batch_size,
                           plan.grad_checkpointing, record["precision"], plan.lora_r, plan.target_modules,
                           device=record["device"], grad_accum=plan.grad_accum, lora_dropout=plan.lora_dropout,
                           padded=not plan.packing).total
    assert record["estimated_peak_bytes"] == both
