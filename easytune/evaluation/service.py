"""Blind evaluation of a finished job: three buckets, base vs tuned, a verdict in plain words.

    result = evaluate_job(settings, "20250101-120000-abc123")
    print(verdict_text(result, "en"))

Every result is stored in the `evaluations` table (kind "quality"; passed = 1 when the verdict is
"improved", i.e. better on the task without severe forgetting), so jobs on the same dataset can be
compared later. Safety checks (easytune.evaluation.safety) are stored beside them (kind "safety").
Torch is imported only when a model runs.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

from easytune.evaluation import facts, metrics
from easytune.evaluation.config import evaluation_config
from easytune.evaluation.verdict import judge, verdict_text
from easytune.i18n import UserError
from easytune.jobs.folder import JobFolder
from easytune.settings import Settings
from easytune.store import dumps, open_db

__all__ = ["evaluate_job", "list_evaluations", "compare_jobs", "verdict_text", "job_files"]


def job_files(settings: Settings, job_id: str) -> tuple[dict, dict, object]:
    """(job row, job.json, TrainingPlan) of a job that has a trained result."""
    from easytune.chat import job_model
    from easytune.jobs import get_job, sync_job

    job = get_job(settings, job_id)
    if job["state"] in ("PENDING", "PREPARING", "RUNNING"):
        job = sync_job(settings, job_id)
    if job["state"] not in ("COMPLETED", "STOPPED"):
        raise UserError("evaluation.error.not_finished", job=job_id, state=job["state"])
    job_model(settings, job_id)  # raises when there is no adapter or model folder
    job_dir = Path(job["job_dir"])
    folder = JobFolder(job_dir)
    return job, folder.resolved(), folder.plan()


def pair_of(settings: Settings, job_id: str, resolved: dict):
    from easytune.chat import job_model
    from easytune.evaluation.pair import Pair

    path, adapter = job_model(settings, job_id)
    return Pair(resolved["model_path"], adapter=adapter) if adapter else Pair(resolved["model_path"], tuned=path)


def _judged(bucket, answers: list[str]) -> list[bool | None]:
    """Each answer right or wrong by its facts (None where the reference has none to check)."""
    return [facts.judge_answer(answer, item.reference, item.key, item.question)
            for item, answer in zip(bucket.asked, answers)]


def _side_metrics(bucket, answers: list[str] | None, right: list[bool | None], loss: float | None, labels: bool,
                  probe: float | None = None) -> dict:
    """One side's scores; `right`: its answers judged by their facts (_judged)."""
    asked = bucket.asked
    refs = [item.reference for item in asked]
    scores = {"loss": loss, "ppl": metrics.perplexity(loss) if loss is not None else None,
              "rouge_l": None, "bleu": None, "exact_match": None, "facts": None, "facts_judged": 0, "probe": probe}
    if asked:
        scores["facts"], scores["facts_judged"] = facts.accuracy(right)
        scores["rouge_l"] = sum(map(metrics.rouge_l, answers, refs)) / len(asked)
        scores["bleu"] = metrics.bleu(answers, refs)
        if labels:
            scores["exact_match"] = sum(map(metrics.exact_match, answers, refs)) / len(asked)
    return scores


def _given_instead(bucket, answers: list[str], right: list[bool | None], taught: list) -> list:
    """Per asked item, the taught answer (evaluation.facts.Taught) a wrong answer is instead of its own; None where
    the answer is right, unjudged, or no taught answer."""
    return [facts.given_instead(answer, item.reference, taught, item.question) if taught and judged is False else None
            for item, answer, judged in zip(bucket.asked, answers, right)]


def mixed_up(bucket, instead: list, right: list[bool | None]) -> dict | None:
    """{"count": wrong answers that are another taught answer, "wrong": wrong answers, "question" and "answer": the
    taught row given instead most often, "times": how often, "example": a question that got it}; None when none."""
    given = [(item, other) for item, other in zip(bucket.asked, instead) if other is not None]
    if not given:
        return None
    answer, times = Counter(other.answer for _, other in given).most_common(1)[0]
    item, other = next((item, other) for item, other in given if other.answer == answer)
    return {"count": len(given), "wrong": sum(judged is False for judged in right), "question": other.question,
            "answer": answer, "times": times, "example": item.question}


def bucket_results(buckets: list, measured: dict, cfg: dict) -> dict:
    out = {}
    # the answers trained on, which a wrong answer may be instead: one list, shared by the seen and unseen buckets
    taught = facts.taught_answers(next((bucket.taught for bucket in buckets if bucket.taught), []))
    for bucket in buckets:
        sides = measured[bucket.name]
        asked = bucket.asked
        refs = [item.reference for item in asked]
        labels = metrics.looks_like_labels(refs, cfg["exact_match"]["max_chars"], cfg["exact_match"]["label_share"])
        entry = {"rows": len(bucket.items), "source": bucket.source, "missing": bucket.missing, "labels": labels,
                 **({"dataset": bucket.dataset} if bucket.dataset else {}),
                 **({"left_out": bucket.left_out} if bucket.left_out else {})}
        right = {name: _judged(bucket, side["answers"] or []) for name, side in sides.items()}  # judged once each
        for name in ("base", "tuned"):
            if name in sides:
                entry[name] = _side_metrics(bucket, sides[name]["answers"], right[name], sides[name]["loss"], labels,
                                            sides[name].get("probe"))
        if sides:
            base_right, tuned_right = right["base"], right["tuned"]
            entry["languages"] = by_language([item.question for item in asked], base_right, tuned_right)
            entry["facts_change"] = facts.changes(base_right, tuned_right)
            instead = _given_instead(bucket, sides["tuned"]["answers"], tuned_right, taught if bucket.taught else [])
            if summary := mixed_up(bucket, instead, tuned_right):
                entry["mixed_up"] = summary
            entry["samples"] = [
                {"question": item.messages[-1]["content"] if item.messages else "", "reference": item.reference,
                 "base": base, "tuned": tuned, "base_right": b_right, "tuned_right": t_right,
                 "facts": item.key or facts.facts_of(item.reference, item.question),
                 "tuned_instead": other.question if other else None}
                for item, base, tuned, b_right, t_right, other in zip(
                    asked, sides["base"]["answers"], sides["tuned"]["answers"], base_right, tuned_right, instead)
            ][:cfg["samples_kept"] if bucket.name == "gatekeeper" else None]  # the user's own questions: all
        out[bucket.name] = entry
    return out


def by_language(questions: list[str], base_right: list, tuned_right: list) -> dict:
    """{language of the questions: {"rows", "base", "tuned", "judged"}}: each side's share right among the answers
    judged, per language ('zh', 'en', 'other'), so a model that does not read one of them shows it."""
    from easytune.data.quality import language

    judged: dict[str, tuple[list, list]] = {}
    for question, base, tuned in zip(questions, base_right, tuned_right):
        sides = judged.setdefault(language(question), ([], []))
        sides[0].append(base)
        sides[1].append(tuned)
    out = {}
    for lang, (base, tuned) in judged.items():
        base_share, count = facts.accuracy(base)
        out[lang] = {"rows": len(base), "base": base_share, "tuned": facts.accuracy(tuned)[0], "judged": count}
    return out


def forgetting_of(settings: Settings, job_id: str) -> dict:
    """The training's final forgetting score, as the worker measured it on the general reference text."""
    from easytune.health import forgetting_level
    from easytune.jobs import metrics as job_metrics

    series = job_metrics(settings, job_id)
    if not series.get("cf_score") or not series.get("cf_pct"):
        return {"cf_score": None, "cf_pct": None, "cf_level": None}
    nats, share = series["cf_score"][-1][1], series["cf_pct"][-1][1]
    return {"cf_score": nats, "cf_pct": share, "cf_level": forgetting_level(share, nats)}


def evaluate_job(settings: Settings, job_id: str, *, lang: str = "zh", limit: int | None = None,
                 progress=None, questions: str | None = None) -> dict:
    """Ask the base and the tuned model the seen, unseen and gatekeeper questions; judge; store.

    `limit` caps every bucket (fewer questions: faster, noisier). `progress(done, total)` is called
    after each bucket on each side. `questions`: the user's own test questions (a dataset's name or id, a
    demo or a data file, imported first), asked instead of the held-out rows, so whether the facts carry over
    to questions in other words is judged on theirs. The returned result carries "text", the verdict in `lang`.
    """
    if limit is not None and limit < 1:
        raise UserError("evaluation.error.bad_limit", limit=limit)
    cfg = evaluation_config()
    job, resolved, plan = job_files(settings, job_id)
    pair = pair_of(settings, job_id, resolved)
    from easytune.evaluation.buckets import job_buckets
    from easytune.evaluation.runner import measure  # torch: only once the request is known to be good
    from easytune.jobs import earlier_training_files

    rows = {name: min(count, limit) if limit else count for name, count in cfg["rows"].items()}
    buckets = job_buckets(resolved, rows=rows, seed=cfg["seed"],
                          questions=test_questions(settings, questions) if questions else None,
                          earlier=earlier_training_files(settings, job_id) if questions else [])
    started = time.perf_counter()
    measured = measure(pair, buckets, cfg, progress)
    results = bucket_results(buckets, measured, cfg)
    forgetting = forgetting_of(settings, job_id)
    judged = judge(results, forgetting, cfg["verdict"], retention=plan.retention_ratio)
    forgetting["gatekeeper_loss_pct"] = judged["signals"]["general_loss_pct"]
    result = {"job_id": job_id, "job_name": job["name"], "dataset": resolved["dataset"],
              "dataset_sha256": resolved["dataset_sha256"], "model": job["model"], "method": plan.method,
              "learning_rate": plan.learning_rate, "epochs": plan.epochs, "limit": limit,
              "buckets": results, "forgetting": forgetting, **judged,
              "seconds": round(time.perf_counter() - started, 1)}
    stored = store(settings, job_id, "quality", judged["verdict"] == "improved", result)
    from easytune.tracking.live import evaluated

    evaluated(settings, job_id)  # into its TensorBoard file and MLflow run, where its plan keeps them
    return {**stored["result"], "id": stored["id"], "passed": stored["passed"], "created_at": stored["created_at"],
            "text": verdict_text(result, lang)}


def test_questions(settings: Settings, ref: str) -> tuple[str, list[dict]]:
    """(dataset name, every row) of the user's test questions: all of an imported dataset, both its splits."""
    from easytune.datasets import resolve_dataset
    from easytune.evaluation.buckets import read_jsonl

    data = resolve_dataset(settings, ref)
    return data.name, [row for path in (data.train_file, data.val_file) if path for row in read_jsonl(path)]


def store(settings: Settings, job_id: str | None, kind: str, passed: bool, result: dict) -> dict:
    row = {"id": "ev-" + uuid.uuid4().hex[:10], "job_id": job_id, "kind": kind, "passed": int(passed),
           "result": dumps(result), "created_at": time.time()}
    open_db(settings.db_path)["evaluations"].insert(row)
    return {**row, "result": result}


def list_evaluations(settings: Settings, job_id: str | None = None, dataset: str | None = None,
                     kind: str | None = None) -> list[dict]:
    """Stored evaluations, newest first; `dataset` matches the dataset name or the job's dataset setting."""
    where, args = [], []
    if job_id:
        where.append("e.job_id = ?")
        args.append(job_id)
    if kind:
        where.append("e.kind = ?")
        args.append(kind)
    if dataset:
        where.append("(json_extract(e.result, '$.dataset') = ? or j.dataset = ?)")
        args += [dataset, dataset]
    sql = ("select e.*, j.name as job_name from evaluations e left join jobs j on j.id = e.job_id"
           + (" where " + " and ".join(where) if where else "") + " order by e.created_at desc")
    rows = open_db(settings.db_path).execute(sql, args)
    names = [c[0] for c in rows.description]
    return [{**row, "result": json.loads(row["result"])} for row in (dict(zip(names, r)) for r in rows.fetchall())]


def compare_jobs(settings: Settings, dataset: str) -> list[dict]:
    """The latest quality evaluation of each job trained on `dataset`: one row per job, oldest job first,
    with the settings that differ between runs and the numbers a table or chart shows."""
    latest: dict[str, dict] = {}
    for row in list_evaluations(settings, dataset=dataset, kind="quality"):
        latest.setdefault(row["job_id"], row)
    out = []
    for job_id, row in latest.items():
        result, buckets = row["result"], row["result"]["buckets"]

        def match(name, side, buckets=buckets):
            return (buckets[name].get(side) or {}).get("rouge_l")

        out.append({"job_id": job_id, "job_name": row["job_name"] or result.get("job_name"),
                    "evaluation_id": row["id"], "evaluated_at": row["created_at"], "verdict": result["verdict"],
                    "passed": row["passed"], "method": result["method"], "learning_rate": result["learning_rate"],
                    "epochs": result["epochs"],
                    "seen_match": match("seen", "tuned"), "seen_match_base": match("seen", "base"),
                    "unseen_match": match("unseen", "tuned"), "unseen_match_base": match("unseen", "base"),
                    "general_match": match("gatekeeper", "tuned"),
                    "general_loss_pct": result["forgetting"].get("gatekeeper_loss_pct"),
                    "cf_pct": result["forgetting"].get("cf_pct")})
    return sorted(out, key=lambda r: r["job_id"])
