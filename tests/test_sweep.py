"""Sweeps ("try several settings"): short trials of one plan, each an ordinary job in the queue, varied only where
asked and within each setting's allowed range; a hopeless trial stopped early by the normal stop; trials that
forget too much ruled out; the best by the metric, trained in full as a job of its own.

The runs train the built-in tiny model for a few steps each; what the sweep reports is checked against what the
jobs themselves recorded (their plan files, their curves)."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from support import ROOT, cli, cli_json, write_plan

PLAN = {"epochs": 2, "learning_rate": 0.002}  # 20 steps in full: a trial at --fraction 0.5 trains 10


def settings_for(home: Path):
    from easytune.settings import load_settings

    return load_settings(home=home, language="en")


def bounds(name: str) -> tuple:
    from easytune.plan.schema import TrainingPlan

    meta = next(f for f in fields(TrainingPlan) if f.name == name).metadata
    return meta["lo"], meta["hi"]


def forgets_too_much(pct: float, nats: float) -> bool:
    """The monitor's forgetting warning, read from presets/health.yaml itself."""
    limits = yaml.safe_load((ROOT / "presets" / "health.yaml").read_text(encoding="utf-8"))["forgetting"]
    return pct > limits["warn_pct"] and nats > limits["warn_nats"]


@pytest.mark.slow
def test_a_sweep_runs_its_trials_as_jobs_stops_the_hopeless_one_and_trains_the_best(home, tmp_path):
    from easytune.plan.schema import TrainingPlan

    plan_file = write_plan(tmp_path / "plan.yaml", **PLAN)
    base = TrainingPlan.load(plan_file).to_dict()
    # the plan's own values first, then a learning rate far too small to get anywhere in 10 steps: with pruning
    # from the first finished trial on, it trails the plan's own trial at every evaluation and is stopped
    shown = cli_json("sweep", "--config", str(plan_file), "--trials", "3", "--vary", "learning_rate,lora_r",
                     "--metric", "val_loss", "--fraction", "0.5", "--try", "learning_rate=0.0001",
                     "--prune-after", "1", home=home)
    assert shown["state"] == "COMPLETED" and shown["done"] == 3 and len(shown["rows"]) == 3
    assert shown == cli_json("sweep", "show", shown["id"], home=home)
    assert [s["id"] for s in cli_json("sweep", "list", home=home)] == [shown["id"]]

    listed = {job["id"]: job for job in cli_json("jobs", "list", home=home)}
    assert {row["job_id"] for row in shown["rows"]} == set(listed)  # every trial an ordinary job, and only they
    for row in shown["rows"]:
        job = listed[row["job_id"]]
        trial = TrainingPlan.load(Path(job["job_dir"]) / "plan.yaml").to_dict()
        assert {key for key in base if trial[key] != base[key]} <= {"learning_rate", "lora_r", "epochs"}, trial
        assert trial["epochs"] == 1.0 and "short trial: 50 % of the steps" in job["name"]
        for name, value in row["params"].items():
            lo, hi = bounds(name)
            assert trial[name] == value and lo <= value <= hi

    first, tried, third = shown["rows"]
    assert first["params"] == {"learning_rate": 0.002, "lora_r": 8}  # the plan itself, the one to beat
    assert tried["params"]["learning_rate"] == 0.0001
    assert tried["state"] == "PRUNED" and 30 <= tried["pruned_at"] < 100
    stopped = cli_json("jobs", "show", tried["job_id"], home=home)
    assert stopped["state"] == "STOPPED" and len(stopped["series"]["loss"]) < stopped["total_steps"]

    # each trial's figures are its job's own: the last validation loss (the plan keeps the last weights) and
    # forgetting; the best is the feasible trial with the lowest validation loss
    own = {}
    for row in (first, third):
        series = cli_json("jobs", "metrics", row["job_id"], home=home)
        val, pct, nats = series["val_loss"][-1][1], series["cf_pct"][-1][1], series["cf_score"][-1][1]
        assert row["metric"] == pytest.approx(val) and row["cf_pct"] == pytest.approx(pct)
        assert row["state"] == ("INFEASIBLE" if forgets_too_much(pct, nats) else "COMPLETE")
        own[row["number"]] = (val, forgets_too_much(pct, nats))
    feasible = {number: val for number, (val, too_much) in own.items() if not too_much}
    assert feasible, own  # the plan's own trial (a small learning rate, 10 steps) forgets little
    assert shown["best"]["number"] == min(feasible, key=feasible.get)
    assert [row["best"] for row in shown["rows"]].count(True) == 1

    # the best's plan in full: the plan with the best values, at its own length, as a file `train` reads
    best_file = TrainingPlan.load(Path(shown["best_plan_file"])).to_dict()
    assert best_file == shown["best_plan"] == {**base, **shown["best"]["params"]}
    job = cli_json("sweep", "best", shown["id"], "--train", "--detach", home=home)
    assert TrainingPlan.load(Path(job["job_dir"]) / "plan.yaml").to_dict() == best_file
    assert job["state"] in ("PENDING", "PREPARING", "RUNNING") and job["id"] not in listed
    cli("jobs", "stop", job["id"], home=home)

    from easytune.ui.charts import sweep_figure  # the app's chart: one point per trial with a figure, the best line

    figure = sweep_figure(shown, "en")
    assert sum(len(trace.x) for trace in figure.data if trace.mode == "markers") == 3


@pytest.mark.slow
def test_auto_compares_by_held_out_fact_accuracy_where_the_answers_carry_facts(home, tmp_path):
    plan_file = write_plan(tmp_path / "plan.yaml", epochs=1, learning_rate=0.002, val_ratio=0.2)
    shown = cli_json("sweep", "--config", str(plan_file), "--trials", "1", "--vary", "learning_rate",
                     "--fraction", "0.3", home=home)
    assert shown["metric"] == "fact_accuracy" and shown["higher_is_better"]
    (row,) = shown["rows"]
    held_out = Path(cli_json("jobs", "show", row["job_id"], home=home)["job_dir"]) / "data" / "val.jsonl"
    asked = [json.loads(line) for line in held_out.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert 1 <= row["facts_judged"] <= len(asked)  # the job's own held-out questions were asked
    assert 0 <= row["metric"] <= 1


NO_FACTS = [{"messages": [{"role": "user", "content": f"how do i say thanks, friend {i}?"},
                          {"role": "assistant", "content": "just say thank you, with a smile."}]} for i in "abcdefghij"]


def test_auto_falls_back_to_validation_loss_where_answers_hold_no_facts(settings, tmp_path):
    from easytune import sweep
    from easytune.i18n import UserError
    from easytune.plan.schema import TrainingPlan

    data = tmp_path / "polite.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in NO_FACTS) + "\n", encoding="utf-8")
    plan = TrainingPlan(dataset=str(data), val_ratio=0.2)
    assert sweep.create_sweep(settings, plan, trials=2)["metric"] == "val_loss"
    with pytest.raises(UserError) as refused:
        sweep.create_sweep(settings, plan, metric="fact_accuracy")
    assert refused.value.key == "sweep.error.no_facts"
    assert sweep.create_sweep(settings, TrainingPlan(), trials=2)["metric"] == "fact_accuracy"  # the shop FAQ


def test_settings_that_are_not_or_cannot_be_varied_are_refused_in_both_languages(home, tmp_path):
    from easytune.i18n import t
    from easytune.sweep.space import variable_settings

    plan_file = write_plan(tmp_path / "plan.yaml", **PLAN)
    for lang in ("en", "zh"):
        unknown = cli("sweep", "--config", str(plan_file), "--vary", "learning_rat,lora_r", home=home, check=False,
                      lang=lang)
        assert unknown.returncode == 2
        assert t("plan.unknown_key", lang, key="learning_rat", hint="learning_rate") in unknown.stderr
        fixed = cli("sweep", "--config", str(plan_file), "--vary", "val_ratio", home=home, check=False, lang=lang)
        assert fixed.returncode == 2  # the held-out questions must stay the same for every trial
        assert t("sweep.error.not_variable", lang, key="val_ratio",
                 settings=", ".join(variable_settings())) in fixed.stderr
        outside = cli("sweep", "--config", str(plan_file), "--vary", "learning_rate", "--try", "lora_r=16",
                      home=home, check=False, lang=lang)
        assert outside.returncode == 2
        assert t("sweep.error.try_not_varied", lang, key="lora_r", vary="learning_rate") in outside.stderr
    assert cli_json("sweep", "list", home=home) == [] and cli_json("jobs", "list", home=home) == []


def test_each_setting_is_tried_around_the_plans_value_within_its_range():
    from easytune.plan.schema import TrainingPlan
    from easytune.sweep.space import full_plan, search_space, trial_plan, variable_settings

    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")  # learning rate 0.005, rank 8, 16 epochs
    space = search_space(plan, variable_settings())
    assert space["learning_rate"] == {"kind": "log", "low": 0.005 / 4, "high": 0.005 * 4}
    assert space["lora_r"] == {"kind": "choice", "choices": [4, 8, 16]}
    assert space["epochs"] == {"kind": "int", "low": 8, "high": 32}
    for name, entry in space.items():
        lo, hi = bounds(name)
        values = entry["choices"] if entry["kind"] == "choice" else [entry["low"], entry["high"]]
        assert all(lo is None or lo <= v <= hi for v in values), name
        assert getattr(plan, name) in entry["choices"] if entry["kind"] == "choice" else (
            entry["low"] <= getattr(plan, name) <= entry["high"]), name
    widened = search_space(plan, ["learning_rate", "lora_r"], [{"learning_rate": 1e-5, "lora_r": 64}])
    assert widened["learning_rate"]["low"] == 1e-5 and widened["lora_r"]["choices"] == [4, 8, 16, 64]
    short = trial_plan(plan, {"learning_rate": 0.01, "epochs": 10}, 0.3)
    assert short.epochs == 3.0 and short.learning_rate == 0.01
    assert full_plan(plan, {"learning_rate": 0.01, "epochs": 10}).epochs == 10


def test_one_sweep_has_one_driver(settings):
    from easytune import sweep
    from easytune.i18n import UserError
    from easytune.plan.schema import TrainingPlan
    from easytune.sweep import record

    created = sweep.create_sweep(settings, TrainingPlan(), trials=2, metric="val_loss")
    record.claim(settings, created["id"])
    with pytest.raises(UserError) as second:
        record.claim(settings, created["id"])
    assert second.value.key == "sweep.error.driven"
    record.release(settings, created["id"])
    assert sweep.get_sweep(settings, created["id"])["shown_state"] == "INTERRUPTED"  # nobody drives it now
    record.claim(settings, created["id"])
    record.release(settings, created["id"])
