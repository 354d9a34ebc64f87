"""Creating a job: what the plan names is checked and resolved once, into a self-contained job folder."""

from __future__ import annotations

import sys
import time
import uuid
from importlib import metadata
from pathlib import Path

from easytune.datasets import job_split, resolve_dataset
from easytune.jobs.folder import JobFolder
from easytune.jobs.objective import resolve_objective
from easytune.jobs.question_variants import with_question_variants
from easytune.jobs.replay import with_replay
from easytune.jobs.resolve import resolve
from easytune.jobs.rows import get_job
from easytune.jobs.spawn import start_job
from easytune.models.registry import require_trainable, resolve_path
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.store import open_db
from easytune.tracking.tensorboard_files import require_tensorboard

STACK = ("torch", "transformers", "peft", "accelerate")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("easytune", *STACK):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def create_job(settings: Settings, plan: TrainingPlan, name: str | None = None,
               replay: list[str] | None = None) -> dict:
    """Validate what the plan names, write a self-contained job folder, record it as PENDING. `replay`: earlier
    versions' training files, sampled into the training rows at the plan's replay_ratio (jobs/replay.py). Copies
    of the questions with words left out join them where the plan asks (jobs/question_variants.py)."""
    require_trainable(settings, plan.model)
    if plan.tensorboard:  # said now, not found missing once it trains
        require_tensorboard()
    model_path = resolve_path(settings, plan.model)
    data = resolve_dataset(settings, plan.dataset)
    objective = resolve_objective(plan.objective, data.kind, data.name)  # preference pairs need dpo (or auto)
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    job_dir = settings.jobs_dir / job_id
    job_dir.mkdir(parents=True)
    folder = JobFolder(job_dir)
    plan.save(folder.plan_file)
    train_file, val_file = job_split(data, plan.val_ratio, plan.seed, folder.data)
    replayed = varied = one_way = 0
    if replay and plan.replay_ratio > 0:
        train_file, replayed = with_replay(train_file, replay, plan.replay_ratio, plan.seed, folder.data)
    if plan.question_variants > 0 and objective == "sft":
        train_file, varied, one_way = with_question_variants(train_file, plan.question_variants, plan.seed,
                                                             folder.data, held_out=val_file)
    run = resolve(settings, plan, Path(model_path), objective, {"train_file": train_file, "val_file": val_file})
    resolved = {"job_id": job_id, "model_path": str(model_path), "train_file": str(train_file),
                "val_file": str(val_file) if val_file else None,
                "val_source": "val_file" if val_file == data.val_file else "holdout", "dataset": data.name,
                "dataset_sha256": data.sha256, "dataset_rows": data.rows, "dataset_kind": data.kind,
                **({"replayed_rows": replayed} if replayed else {}),
                **({"question_variant_rows": varied} if varied else {}),
                **({"one_way_rows": one_way} if one_way else {}),
                "objective": objective,
                "versions": _versions(),
                "cache_dir": str(settings.folder("cache")), **run}
    folder.write_resolved(resolved)
    row = {"id": job_id, "name": name or f"{Path(plan.model).name} · {data.name}", "state": "PENDING",
           "model": plan.model, "dataset": plan.dataset, "job_dir": str(job_dir), "created_at": time.time()}
    open_db(settings.db_path)["jobs"].insert(row)
    return get_job(settings, job_id)


def launch(settings: Settings, plan: TrainingPlan, name: str | None = None) -> dict:
    return start_job(settings, create_job(settings, plan, name)["id"])
