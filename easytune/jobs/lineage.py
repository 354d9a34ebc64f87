"""Versions of a model: a finished job's adapter trained on new data as version N+1 of its lineage."""

from __future__ import annotations

from easytune.i18n import UserError
from easytune.jobs.create import create_job
from easytune.jobs.folder import JobFolder
from easytune.jobs.rows import get_job, list_jobs
from easytune.jobs.spawn import start_job
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings

ADAPTER_SHAPE = ("model", "method", "lora_r", "target_modules")  # what a new version must keep to train on


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
    # the new data decides what is learned (labelled feedback after answers trains with KTO), unless set
    plan = TrainingPlan.from_dict({**folder.plan().to_dict(), "objective": "auto", **changes, "dataset": dataset})
    lineage = folder.resolved().get("lineage", job_id)
    version = max(_record(j).get("version", 1) for j in _lineage(settings, lineage)) + 1  # after the newest
    job = create_job(settings, plan, f"{source['name'].split(' · v')[0]} · v{version}")
    JobFolder(job["job_dir"]).update_resolved(start_adapter=str(folder.adapter), version=version, lineage=lineage,
                                              previous=job_id)
    return start_job(settings, job["id"])


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
    return sorted(out, key=lambda v: v["version"])


def _lineage(settings: Settings, lineage: str) -> list[dict]:
    """The jobs of one lineage: its first job and every version made from it."""
    return [job for job in list_jobs(settings) if job["id"] == lineage or _record(job).get("lineage") == lineage]


def _record(job: dict) -> dict:
    folder = JobFolder(job["job_dir"])
    return folder.resolved() if folder.resolved_file.is_file() else {}
