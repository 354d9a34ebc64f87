"""The questions an evaluation found answered wrong, taught to the next version of the model.

A small model recalls a fact mostly for the words it was taught with (presets/intents.yaml, the domain task):
asked in the words of the user's test questions it gets part of them wrong, about half of those with another of
the taught answers (service.mixed_up). The remedy the verdict's next step names is to ask those facts in the
data the way the users do. Here that is one action: the new questions (the user's test questions, or the rows
held out) whose answers the job's last evaluation judged wrong by their facts join every row the job trained on,
as a dataset of their own, and version N+1 trains on it from the job's adapter (jobs.next_version). Its own
evaluation leaves those questions out of the test questions, since they are trained on now, and says so
(buckets.job_buckets): new test questions show how far the facts carry over.

Measured on SmolLM2-135M-Instruct with `python -m easytune.evaluation.bench_facts`' two sets (the default domain
plan, seed 42, 2 cores of an AMD EPYC), each fact's first rewording as the test questions: version 1 answered 8
(bike rental) and 11 (shop) of those 20 right. Taught the ones it missed (12 and 9 by the benchmark's keys; 47
rows, 247 and 352 s), version 2 answered every one of them, 17 and 16 of the 20 in all (a few it had right turned
wrong). The second rewording, which neither version saw, moved by what a seed moves it: 10 → 14 and 16 → 14 of 20.
Taught questions 40 → 37 and 38 → 40 of 40, general questions 27 → 24 and 24 → 29 of 50 (the base 26). So it
teaches the users' words it was given, not new words in general: hence the verdict's advice to check it on new test
questions.

A question is taught as it was last asked, with its reference answer (an earlier turn of a conversation is not
kept by the evaluation). Answers without facts to check are not judged wrong, so they are not taught.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from easytune.i18n import UserError, t
from easytune.settings import Settings


def missed_rows(settings: Settings, job_id: str) -> tuple[list[dict], dict]:
    """(a training row for each new question the job's latest evaluation judged answered wrong, that evaluation)."""
    from easytune.evaluation.service import list_evaluations

    latest = next(iter(list_evaluations(settings, job_id=job_id, kind="quality")), None)
    if latest is None:
        raise UserError("missed.error.not_evaluated", job=job_id)
    bucket = latest["result"]["buckets"].get("unseen") or {}
    rows = [{"messages": [{"role": "user", "content": sample["question"]},
                          {"role": "assistant", "content": sample["reference"]}]}
            for sample in bucket.get("samples") or []
            if sample.get("tuned_right") is False and sample.get("question") and sample.get("reference")]
    if not rows:
        raise UserError("missed.error.none_wrong", job=job_id)
    return rows, latest


def missed_dataset(settings: Settings, job_id: str) -> dict:
    """Every row the job trained on (as written: not the copies of its questions) and the missed questions, imported
    as the dataset `missed-JOB` with nothing held out. add_dataset's result plus `rows`, `missed` and `evaluation`
    (the evaluation they come from)."""
    from easytune.datasets import add_dataset
    from easytune.evaluation.buckets import asked_as, read_jsonl, trained_questions
    from easytune.jobs import get_job
    from easytune.jobs.folder import JobFolder
    from easytune.jobs.question_variants import users_rows

    missed, evaluation = missed_rows(settings, job_id)
    resolved = JobFolder(get_job(settings, job_id)["job_dir"]).resolved()
    trained = [{k: v for k, v in row.items() if k != "line"}
               for row in users_rows(read_jsonl(Path(resolved["train_file"])), resolved)]
    known = trained_questions(trained)
    missed = [row for row in missed if asked_as(row["messages"][0]["content"]) not in known]
    rows = trained + missed
    with tempfile.TemporaryDirectory(prefix="easytune-missed-") as folder:
        path = Path(folder) / f"missed-{job_id}.jsonl"
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        # every row is trained on: the user's test questions, not a split of these rows, tell what carries over
        made = add_dataset(settings, path, name=f"missed-{job_id}", val_ratio=0)
    return {**made, "rows": len(rows), "missed": len(missed), "evaluation": evaluation["id"]}


def improve_from_missed(settings: Settings, job_id: str, changes: dict | None = None) -> dict:
    """Version N+1 of the job's model trained on its data and the questions it missed, from its adapter.
    {"dataset": missed_dataset's result, "job": the new version's job}."""
    from easytune.jobs import next_version

    made = missed_dataset(settings, job_id)
    return {"dataset": made, "job": next_version(settings, job_id, made["dataset"]["id"], changes)}


def made_text(made: dict, lang: str) -> str:
    """What the dataset of missed questions holds, in the user's language (the CLI's and step ④'s words)."""
    return t("missed.dataset", lang, missed=made["missed"], trained=made["rows"] - made["missed"],
             name=made["dataset"]["name"])
