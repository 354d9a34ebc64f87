"""Versions of a model: a finished job's adapter trained on new data as version N+1 of its lineage."""

from __future__ import annotations

from easytune.datasets import resolve_dataset
from easytune.i18n import UserError, t
from easytune.jobs.create import create_job
from easytune.jobs.folder import JobFolder
from easytune.jobs.rows import get_job, list_jobs
from easytune.jobs.spawn import start_job
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings

# what a new version must keep to train on
ADAPTER_SHAPE = ("model", "method", "lora_r", "target_modules", "lora_layers")
# Under this share of its words already in the earlier versions' data, new data teaches something different:
# the second half of the facts benchmark's shop shares 27 % of its words with the first half, while more rows
# on the same topics, or feedback on a version's own answers, share most of theirs.
DIFFERENT_DATA = 0.6
# What a new version trains with when its data teaches something different and the user chose neither
# setting: what kept the earlier version's facts on the real model (python -m easytune.evaluation.bench_continual).
NEW_TASK_DEFAULTS = {"continual": True, "replay_ratio": 0.2}


def next_version(settings: Settings, job_id: str, dataset: str, changes: dict | None = None) -> dict:
    """Version N+1 of a finished job's model: its plan on new data (its feedback, or a new file), training on
    from its adapter instead of from the base, put in line for the device. The lineage (first job, version
    number, previous job) is kept in the new job's record."""
    source = get_job(settings, job_id)
    if source["state"] != "COMPLETED":
        raise UserError("jobs.error.next_needs_finished", job=job_id, state=source["state"])
    folder = JobFolder(source["job_dir"])
    if not folder.adapter.is_dir():
        raise UserError("jobs.error.next_needs_adapter", job=job_id)
    changes = dict(changes or {})
    kept = [key for key in ADAPTER_SHAPE if key in changes]
    if kept:
        raise UserError("jobs.error.next_keeps_shape", key=kept[0], keys=", ".join(ADAPTER_SHAPE))
    new_task = {}  # data that teaches something else gets what keeps the earlier lessons, unless chosen
    if not any(key in changes for key in NEW_TASK_DEFAULTS):
        advice = continual_advice(settings, job_id, dataset)
        new_task = {**NEW_TASK_DEFAULTS, "shared_words": advice["shared_words"]} if advice["differs"] else {}
    # the new data decides what is learned (labelled feedback after answers trains with KTO), unless set
    plan = TrainingPlan.from_dict({**folder.plan().to_dict(), "objective": "auto",
                                   **{k: v for k, v in new_task.items() if k in NEW_TASK_DEFAULTS}, **changes,
                                   "dataset": dataset})
    lineage = folder.resolved().get("lineage", job_id)
    earlier = _lineage(settings, lineage)
    version = max(_record(j).get("version", 1) for j in earlier) + 1  # after the newest
    job = create_job(settings, plan, f"{source['name'].split(' · v')[0]} · v{version}",
                     replay=_trained_files(earlier, resolve_dataset(settings, dataset).kind))
    JobFolder(job["job_dir"]).update_resolved(start_adapter=str(folder.adapter), version=version, lineage=lineage,
                                              previous=job_id, new_task=new_task or None)
    return start_job(settings, job["id"])


def continual_advice(settings: Settings, job_id: str, dataset: str) -> dict:
    """Whether new data for a version of this job's model teaches something different from what the earlier
    versions trained on — then continual learning and replay are worth offering. {"shared_words": the share of
    the new data's words the earlier data used, or None, "differs": bool}."""
    from easytune.jobs.replay import shared_words

    source = get_job(settings, job_id)
    earlier = _lineage(settings, _record(source).get("lineage", job_id))
    shared = shared_words(resolve_dataset(settings, dataset).train_file, _trained_files(earlier, None))
    return {"shared_words": None if shared is None else round(shared, 3),
            "differs": shared is not None and shared < DIFFERENT_DATA}


def earlier_training_files(settings: Settings, job_id: str) -> list[str]:
    """The training files of the finished versions this job's model was trained on from (versions before it)."""
    record = _record(get_job(settings, job_id))
    if record.get("version", 1) <= 1:
        return []
    earlier = [job for job in _lineage(settings, record.get("lineage", job_id))
               if _record(job).get("version", 1) < record["version"]]
    return _trained_files(earlier, None)


def versions(settings: Settings, job_id: str) -> list[dict]:
    """Every version of the model this job belongs to, first to last: id, version, state, and its latest
    verdict and forgetting score where it was evaluated (the same evaluation, version beside version)."""
    from easytune.evaluation.service import list_evaluations

    lineage = _record(get_job(settings, job_id)).get("lineage", job_id)
    out = []
    for job in _lineage(settings, lineage):
        record = _record(job)
        quality = next(iter(list_evaluations(settings, job_id=job["id"], kind="quality")), None)
        result = quality["result"] if quality else {}
        out.append({"id": job["id"], "name": job["name"], "version": record.get("version", 1),
                    "previous": record.get("previous"), "state": job["state"], "dataset": job["dataset"],
                    "verdict": result.get("verdict"), "cf_pct": (result.get("forgetting") or {}).get("cf_pct"),
                    "buckets": {name: {k: v for k, v in bucket.items() if k != "samples"}
                                for name, bucket in (result.get("buckets") or {}).items()}})
    out.sort(key=lambda v: v["version"])
    best, _ = best_versions(out)
    return [{**v, "best": v["version"] in best} for v in out]


def best_versions(listed: list[dict]) -> tuple[list[int], str | None]:
    """(the versions with the best verdict, that verdict), ranked as the verdict ranks (improved, mixed, no gain,
    harmful): no figure is weighed against another here, and ties are all named. ([], None) while none is
    evaluated; ([], verdict) when the best is no gain or harmful, which is no recommendation."""
    from easytune.evaluation.verdict import VERDICTS

    judged = [v for v in listed if v["verdict"] in VERDICTS]
    if not judged:
        return [], None
    top = VERDICTS[min(VERDICTS.index(v["verdict"]) for v in judged)]
    if top not in ("improved", "mixed"):
        return [], top
    return [v["version"] for v in judged if v["verdict"] == top], top


def version_label(number: int, lang: str) -> str:
    return t("ui.versions.version", lang, n=number)


def best_line(listed: list[dict], lang: str) -> str:
    """Which versions have the best verdict, said in the user's language (the versions view, `jobs versions`)."""
    best, verdict = best_versions(listed)
    if verdict is None:
        return t("ui.versions.none_evaluated", lang)
    if not best:  # "the best is harmful" would read as a recommendation
        return t("ui.versions.none_better", lang)
    return t("ui.versions.best", lang, versions=("、" if lang == "zh" else ", ").join(
        version_label(number, lang) for number in best), verdict=t(f"ui.eval.verdict.{verdict}", lang))


def _lineage(settings: Settings, lineage: str) -> list[dict]:
    """The jobs of one lineage: its first job and every version made from it."""
    return [job for job in list_jobs(settings) if job["id"] == lineage or _record(job).get("lineage") == lineage]


def _trained_files(jobs: list[dict], kind: str | None) -> list[str]:
    """The training files of the finished versions among `jobs` (of data of `kind`, when given)."""
    records = [_record(job) for job in jobs if job["state"] == "COMPLETED"]
    return [r["train_file"] for r in records if r.get("train_file") and kind in (None, r.get("dataset_kind"))]


def _record(job: dict) -> dict:
    folder = JobFolder(job["job_dir"])
    return folder.resolved() if folder.resolved_file.is_file() else {}
