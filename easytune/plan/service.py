"""The planner with its inputs gathered: the model's structure, the data's report, this machine."""

from __future__ import annotations

import json
from pathlib import Path

from easytune.plan.planner import Proposal, propose
from easytune.plan.schema import TrainingPlan
from easytune.plan.task_choice import AUTO, suggested_task
from easytune.settings import Settings


def dataset_stats(settings: Settings, dataset: str) -> dict:
    """The import report of a dataset, a demo's included."""
    from easytune.datasets import DEMO_PREFIX, demo_report, resolve_dataset
    from easytune.store import open_db

    if dataset.startswith(DEMO_PREFIX):
        return demo_report(settings, dataset)
    resolved = resolve_dataset(settings, dataset)
    row = next(open_db(settings.db_path)["datasets"].rows_where("name = ?", [resolved.name]))  # (or a file's import)
    return json.loads((Path(row["path"]) / "report.json").read_text(encoding="utf-8"))


def measured_speed(settings: Settings, model: str) -> float | None:
    """Training speed (tokens/s) of the last finished job on this model, from its first step to its end: the
    evaluations, forgetting scores and saving between its steps are part of the wait a plan tells the user."""
    from easytune import jobs

    for job in jobs.list_jobs(settings, "COMPLETED"):
        if job["model"] == model:
            # from its last start: a run paused and continued is timed from where it continued
            steps = [(tokens, t) for _, tokens, t in jobs.timed_metrics(settings, job["id"]).get("tokens", [])
                     if t >= (job["started_at"] or 0)]
            if len(steps) < 2 or not job["finished_at"]:
                return None  # a run too short to time, or recorded before steps kept their tokens
            return sum(tokens for tokens, _ in steps[1:]) / max(job["finished_at"] - steps[0][1], 1e-6)
    return None


def make_plan(settings: Settings, *, model: str, dataset: str, task: str, level: str,
              overrides: dict | None = None) -> Proposal:
    from easytune.models.calibrate import matmul_rate
    from easytune.models.hardware import probe
    from easytune.models.registry import model_info, require_trainable

    require_trainable(settings, model)
    seed = (overrides or {}).get("seed", TrainingPlan.seed)
    chosen = suggested_task(settings, dataset, seed) if task == AUTO else None
    hardware = probe(settings.home)
    speed = measured_speed(settings, model)
    device = (overrides or {}).get("device", "auto")
    device = hardware.accelerator if device == "auto" else device
    cpu = device == "cpu" and (overrides or {}).get("precision", "auto") == "auto"  # bf16 or not: measured
    proposal = propose(model=model, dataset=dataset, task=chosen["task"] if chosen else task, level=level,
                       model_info=model_info(settings, model), data_stats=dataset_stats(settings, dataset),
                       hardware=hardware, overrides=overrides, tokens_per_s=speed,
                       matmul_flops=matmul_rate(settings, device),
                       cpu_bf16_flops=matmul_rate(settings, "cpu", "bf16") if cpu else None)
    if chosen:  # the goal picked from the data, and why: shown above the plan
        proposal.intent.update(task_auto=True, task_reason={"key": chosen["key"], "params": chosen["params"]})
    return proposal
