"""A job's validation split is decided once, when the job is created, and the plan's share is the one used:
the import's split where the plan keeps its share, the rows split again at any other share (none lost, none
twice), every row trained on at 0; evaluation and the base line read the same rows."""

import json
from pathlib import Path

import pytest

from support import ROOT

FAQ = ROOT / "assets" / "demo" / "shop_faq_en.jsonl"


@pytest.fixture
def imported(settings):
    from easytune import datasets

    return datasets.add_dataset(settings, FAQ, name="faq", val_ratio=0.1)["dataset"]


def lines(path) -> list[str]:
    return [line for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()] if path else []


def job_with(settings, dataset: str, **changes) -> dict:
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    plan.dataset = dataset
    for key, value in changes.items():
        setattr(plan, key, value)
    job = jobs.create_job(settings, plan)
    return json.loads((Path(job["job_dir"]) / "job.json").read_text(encoding="utf-8"))


def test_the_imports_split_stands_where_the_plan_keeps_its_share(settings, imported):
    from easytune.datasets import import_share, resolve_dataset

    data = resolve_dataset(settings, "faq")
    share = import_share(len(lines(data.val_file)), len(lines(data.train_file)) + len(lines(data.val_file)))
    resolved = job_with(settings, "faq", val_ratio=share)
    assert resolved["train_file"] == str(data.train_file) and resolved["val_file"] == str(data.val_file)
    assert resolved["val_source"] == "val_file"


@pytest.mark.parametrize("ratio", [0.25, 0.0])
def test_another_share_splits_every_row_again_in_the_jobs_own_folder(settings, imported, ratio):
    from easytune.datasets import resolve_dataset

    data = resolve_dataset(settings, "faq")
    every = sorted(lines(data.train_file) + lines(data.val_file))
    resolved = job_with(settings, "faq", val_ratio=ratio)
    train, val = lines(resolved["train_file"]), lines(resolved["val_file"])
    assert sorted(train + val) == every, "no row lost, none twice"
    assert len(val) == int(len(every) * ratio)
    assert (resolved["val_file"] is None) == (ratio == 0)
    assert Path(resolved["train_file"]).parent.parent.name == resolved["job_id"]


def test_evaluation_and_the_base_line_hold_out_the_rows_the_job_validated_on(settings):
    from easytune.datasets import held_out
    from easytune.evaluation.buckets import job_buckets, read_jsonl

    resolved = job_with(settings, "demo:shop_faq_en", val_ratio=0.2, seed=7)
    rows = read_jsonl(FAQ)
    assert [json.loads(line) for line in lines(resolved["val_file"])] == [
        rows[i] for i in sorted(held_out(len(rows), 0.2, 7))]
    seen, unseen, _ = job_buckets(resolved, rows={"seen": 1000, "unseen": 1000, "gatekeeper": 1}, seed=0)
    assert unseen.source == "holdout" and len(unseen.items) == int(len(rows) * 0.2)
    assert not {item.question for item in seen.items} & {item.question for item in unseen.items}


def test_a_data_file_named_as_the_dataset_is_imported_once_and_planned(settings, tmp_path):
    from easytune import datasets
    from easytune.plan.service import make_plan

    mine = tmp_path / "my-faq.jsonl"
    mine.write_bytes(FAQ.read_bytes())
    proposal = make_plan(settings, model="easytune-tiny", dataset=str(mine), task="domain", level="L2")
    resolved = job_with(settings, str(mine), val_ratio=proposal.plan.val_ratio)
    assert [row["name"] for row in datasets.list_datasets(settings)] == ["my-faq"], "imported once, by content"
    assert resolved["dataset"] == "my-faq" and resolved["val_source"] == "val_file"
