"""A model improved version after version: `jobs next` trains a finished job's adapter on new data as version
2 of the same lineage, starting where version 1 ended, not from the base; `jobs versions` and the versions view
(Jobs page, step ④) list them."""

import json
from pathlib import Path

import pytest

from support import cli, cli_json, write_plan

pytestmark = pytest.mark.slow


def evals(job: dict) -> list[dict]:
    lines = (Path(job["job_dir"]) / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["type"] == "eval" and "val_loss" in e]


def test_version_two_starts_where_version_one_ended(home, tmp_path):
    plan = write_plan(tmp_path / "v1.yaml", dataset="demo:shop_faq_en", max_steps=20, eval_every=10,
                      keep_best=False, retention_ratio=0.0)
    first = cli_json("train", "--config", str(plan), home=home)
    assert first["state"] == "COMPLETED", first

    second = cli_json("jobs", "next", first["id"], "--data", "demo:shop_faq_en", "--follow", home=home)
    assert second["state"] == "COMPLETED", second
    before, after = evals(first), evals(second)
    # the same held-out rows, scored before version 2's first step: version 1's last score, not the base's
    assert after[0]["val_loss"] == pytest.approx(before[-1]["val_loss"], rel=1e-3)
    assert after[0]["val_loss"] < before[0]["val_loss"] - 0.1
    logged = [json.loads(line) for line in (Path(second["job_dir"]) / "events.jsonl").read_text().splitlines()]
    assert "train.log.continued" in [e.get("key") for e in logged if e["type"] == "log"]
    record = json.loads((Path(second["job_dir"]) / "job.json").read_text(encoding="utf-8"))
    assert (record["version"], record["lineage"], record["previous"]) == (2, first["id"], first["id"])

    listed = cli_json("jobs", "versions", second["id"], home=home)
    assert [(v["version"], v["id"]) for v in listed] == [(1, first["id"]), (2, second["id"])]
    assert "v2" in cli("jobs", "versions", first["id"], home=home).stdout

    # the versions view (Jobs page, step ④) shows the same lineage in order, with each version's state
    from easytune.settings import load_settings
    from easytune.ui.versions import versions_view

    settings = load_settings(home=home)
    rows = versions_view(settings, first["id"], "en")["rows"]
    assert [row[:3] for row in rows] == [["v1 · this job", first["name"], "Completed"],
                                         ["v2", second["name"], "Completed"]]

    # the flywheel in one step: version 1's feedback, labelled, trains version 3 (after the newest) with KTO
    from easytune import jobs
    from easytune.feedback import improve_from_feedback, record_feedback
    from easytune.jobs.folder import JobFolder

    for prompt, answer, rating in (("Do you ship abroad?", "Yes, to 20 countries.", "up"),
                                   ("Where is my order?", "No idea.", "down"),
                                   ("How do I return an item?", "Open My orders and choose Return.", "up")):
        record_feedback(settings, first["id"], prompt, answer, rating)
    improved = improve_from_feedback(settings, first["id"], labelled=True)
    assert improved["dataset"]["dataset"]["name"] == f"feedback-{first['id']}-labelled"
    third = JobFolder(improved["job"]["job_dir"]).resolved()
    assert (third["version"], third["previous"], third["objective"]) == (3, first["id"], "kto")
    jobs.stop_job(settings, improved["job"]["id"])

    changed = cli("jobs", "next", first["id"], "--data", "demo:shop_faq_en", "--set", "lora_r=4", home=home,
                  check=False)
    assert changed.returncode == 2 and "lora_r" in changed.stderr
