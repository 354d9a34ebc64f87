"""Step ③'s log: checkpoints said in the user's language, search matches highlighted without ever turning
a log line into markup, the level filter, and the plain-text download."""

import json
from pathlib import Path

import pytest

from support import cli, cli_json


def test_log_lines_are_escaped_and_matches_marked():
    from easytune.ui.wizard import log_html

    lines = ['12:00:01 [info] <script>alert("x")</script> & Script', "12:00:02 [info] nothing here"]
    html = log_html(lines, "en", "script")
    assert "<script" not in html and "</script>" not in html
    marked = "&lt;<mark>script</mark>&gt;alert(&quot;x&quot;)&lt;/<mark>script</mark>&gt; &amp; <mark>Script</mark>"
    assert marked in html
    assert html.count("<mark>") == 3 and "nothing here" in html
    assert "<mark>" not in log_html(lines, "en") and "&lt;script&gt;" in log_html(lines, "en")
    amp = log_html(["a &amp; b"], "en", "amp")  # the search meets the text, not its escaped form
    assert amp.count("<mark>") == 1 and "&amp;<mark>amp</mark>;" in amp
    none = log_html([], "en", "<b>")
    assert "<b>" not in none and "No log line contains “&lt;b&gt;”." in none
    assert log_html([], "zh", "缺失").startswith("<p>日志里没有")


@pytest.mark.slow
def test_checkpoints_are_in_the_log_in_the_users_language(demo_job):
    home, job = demo_job
    saved = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    saved = [e for e in saved if e["type"] == "checkpoint"]
    assert saved and any(e["best"] for e in saved) and not all(e["best"] for e in saved)
    en = cli("jobs", "logs", job["id"], home=home).stdout
    zh = cli("jobs", "logs", job["id"], home=home, lang="zh").stdout
    for event in saved:
        loss = round(event["val_loss"], 4) if event["val_loss"] is not None else None
        if loss is None:
            assert f"Checkpoint saved at step {event['step']}." in en
        elif event["best"]:
            assert f"Checkpoint saved at step {event['step']} (best so far by validation loss: {loss})." in en
            assert f"已在第 {event['step']} 步保存检查点（按验证损失是目前最好的：{loss}）。" in zh
        else:
            assert f"Checkpoint saved at step {event['step']} (validation loss {loss})." in en
    assert len([e for e in cli_json("jobs", "logs", job["id"], home=home) if e["type"] == "checkpoint"]) == len(saved)


@pytest.mark.slow
def test_monitor_log_filters_highlights_and_downloads_plain_text(demo_job):
    from easytune.settings import load_settings
    from easytune.ui.wizard import log_file, log_html, log_lines

    home, job = demo_job
    settings = load_settings(home=home)
    lines = log_lines(settings, job["id"], "en", search="checkpoint")
    assert lines and all("checkpoint" in line.lower() for line in lines)
    html = log_html(lines, "en", "checkpoint")
    assert html.count("<mark>Checkpoint</mark>") == sum(line.count("Checkpoint") for line in lines)
    info = log_lines(settings, job["id"], "en", level="info", search="checkpoint")
    assert info == lines and not log_lines(settings, job["id"], "en", level="error", search="checkpoint")
    assert "[info]" in "".join(log_lines(settings, job["id"], "en", level="info"))
    text = log_file(settings, job["id"], "en", search="checkpoint").read_text(encoding="utf-8")
    assert text == "\n".join(lines) + "\n" and "<" not in text


def test_forgetting_card_does_not_advise_retention_to_a_run_that_uses_it(demo_job):
    """The demo run mixes 30 % general text in and still forgets (a 1M-parameter model): its card says so and
    points to a lower rate or a larger model instead."""
    from easytune import health
    from easytune.settings import load_settings
    from easytune.ui.wizard import status_markdown

    home, job = demo_job
    shown = status_markdown(load_settings(home=home), job["id"], "en")
    assert "Knowledge retention is already on" in shown and "Try knowledge-retention mode" not in shown
    series = {"cf_pct": [(10, 300.0)], "cf_score": [(10, 2.0)]}
    assert health.assess(series)[0]["action"] == "health.forgetting_action"
    assert health.assess(series, retention=0.3)[0]["action"] == "health.forgetting_with_retention_action"


def test_forgetting_without_the_guard_warns_as_the_plan_said_it_would(demo_job):
    """The tiny model's plan turns the guard off ("shown as a warning instead of pausing"): past the stop
    threshold the monitor shows ⚠, not ⛔; with the guard on the same curve is a stop sign."""
    from easytune import health, jobs
    from easytune.settings import load_settings
    from easytune.ui.wizard import status_markdown

    home, job = demo_job
    settings = load_settings(home=home)
    assert jobs.job_plan(job).forgetting_guard is False
    series = {"cf_pct": [(10, 300.0)], "cf_score": [(10, 2.0)]}
    assert health.assess(series)[0]["level"] == "error"
    assert health.assess(series, guard=False)[0]["level"] == "warning"
    assert all(w["level"] != "error" for w in jobs.warnings(settings, job) if w["key"] == "health.forgetting")
    assert "⛔" not in status_markdown(settings, job["id"], "en")


def test_a_handful_of_held_out_rows_is_no_ground_for_an_overfitting_or_standstill_warning(demo_job):
    """The demo run holds out a few rows whose answers it never teaches: their loss rises while the run learns
    what it was given, as the plan says when it delivers the last weights. The monitor, the CLI and the
    actions do not read that rise as overfitting, nor its standstill as a run that stopped improving."""
    from easytune import health, jobs
    from easytune.settings import load_settings

    home, job = demo_job
    settings = load_settings(home=home)
    assert not jobs.held_out_trusted(settings, job)
    rising = {"loss": [(s, 3.0 - s / 10) for s in range(1, 11)], "val_loss": [(s, 1.0 + s / 10) for s in range(1, 11)]}
    assert {w["key"] for w in health.assess(rising)} >= {"health.overfitting", "health.stalled"}
    assert not health.assess(rising, val_trusted=False)
    shown = cli_json("jobs", "show", job["id"], home=home)
    assert not {w["key"] for w in shown["warnings"]} & {"health.overfitting", "health.stalled"}


def test_the_cli_and_the_action_menu_judge_the_run_with_its_plan_as_the_monitor_does(demo_job):
    """Knowledge retention is not offered to the run that already used it: not by `jobs show`, whose
    advice reads as the monitor's, nor by its actions, which offer a lower rate instead."""
    from support import cli_json

    home, job = demo_job
    shown = cli_json("jobs", "show", job["id"], home=home)
    forgetting = [w for w in shown["warnings"] if w["key"] == "health.forgetting"]
    assert forgetting and forgetting[0]["action"] == "health.forgetting_with_retention_action"
    assert forgetting[0]["advice"].startswith("Knowledge retention is already on")
    assert "retention" not in shown["actions"] and "lower_lr" in shown["actions"]
    assert shown["actions"].count("lower_lr") == 1


def test_the_time_left_follows_the_pace_of_the_steps_not_a_slow_first_one(settings):
    """A first step that waited 60 s for the forgetting score's base pass does not make a 1-second-a-step
    run read an hour left; before the pace is known, nothing is promised."""
    from easytune import jobs
    from easytune.store import open_db

    job = {"id": "job-pace", "state": "RUNNING", "total_steps": 100}
    db = open_db(settings.db_path)
    assert jobs.time_left(settings, job) is None
    times = {1: 60.0, 2: 61.0, 3: 62.0, 4: 63.0, 5: 64.0, 6: 65.0}
    db["job_metrics"].insert_all({"job_id": "job-pace", "step": step, "name": "loss", "value": 1.0, "t": t}
                                 for step, t in times.items())
    assert jobs.time_left(settings, job) == pytest.approx(94.0)
    assert jobs.time_left(settings, dict(job, state="COMPLETED")) is None
