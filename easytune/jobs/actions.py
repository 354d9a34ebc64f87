"""The actions a job offers in its state, the plan changes behind the suggested ones, and running one."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from easytune import health
from easytune.i18n import UserError
from easytune.jobs.control import (
    clone_job,
    delete_job,
    finish_job,
    pause_job,
    restart_job,
    resume_job,
    stop_job,
)
from easytune.jobs.deliver import deliverable_step, delivered_folder
from easytune.jobs.events import RESUMABLE_STATES
from easytune.jobs.folder import JobFolder
from easytune.jobs.guard import PAUSE_REASON
from easytune.jobs.rows import get_job
from easytune.jobs.spawn import SLOT_STATES
from easytune.jobs.status import job_plan, warnings
from easytune.settings import Settings

SUGGESTIONS = ("retention", "lower_lr", "less_memory")


def suggested_changes(settings: Settings, job_id: str, action: str) -> dict:
    """Plan changes for a rerun: 'retention' mixes general text back in (30 %) at half the learning
    rate, against forgetting; 'lower_lr' takes 0.3 × the learning rate, against a diverging loss;
    'less_memory' halves the batch (the same effective batch), else recomputes activations, else
    halves the length, after running out of memory."""
    plan = JobFolder(get_job(settings, job_id)["job_dir"]).plan()
    if action == "retention":
        return {"retention_ratio": max(plan.retention_ratio, health.RETENTION_SHARE),
                "learning_rate": _round(plan.learning_rate * 0.5)}
    if action == "lower_lr":
        return {"learning_rate": _round(plan.learning_rate * 0.3)}
    if action == "less_memory":  # the out-of-memory message's own advice, in its order
        if plan.batch_size > 1:
            smaller = plan.batch_size // 2
            return {"batch_size": smaller, "grad_accum": plan.grad_accum * plan.batch_size // smaller}
        if not plan.grad_checkpointing:
            return {"grad_checkpointing": True}
        return {"max_seq_len": max(64, plan.max_seq_len // 2)}
    raise UserError("jobs.error.unknown_suggestion", action=action, choices=", ".join(SUGGESTIONS))


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def available_actions(settings: Settings, job: dict) -> list[str]:
    """What a user can do with a job in its state, in the order to offer them. Besides the lifecycle
    actions: 'lower_lr' after a diverging loss, 'retention' after a forgetting warning (see suggested_changes),
    done as a resume ('resume_retention', 'resume_lower_lr') where a checkpoint allows; and 'finish_best',
    which ends a resumable job with its best checkpoint as the result."""
    state = job["state"]
    if state == "PENDING":
        return ["pause", "stop", "delete"]
    if state in SLOT_STATES:
        return ["pause", "stop"]
    job_dir = Path(job["job_dir"])
    resumable = state in RESUMABLE_STATES and JobFolder(job_dir).latest_checkpoint() is not None
    error = json.loads(job["error"]) if job.get("error") else {}
    warned = {w["key"] for w in warnings(settings, job)}
    forgetting = "health.forgetting" in warned or error.get("key") == PAUSE_REASON
    plan = job_plan(job)
    retained = plan is not None and plan.retention_ratio >= health.RETENTION_SHARE  # retention is on already
    actions = ["resume"] if resumable else []
    if resumable and forgetting:
        actions += ["resume_lower_lr"] if retained else ["resume_retention", "resume_lower_lr"]
    if resumable and deliverable_step(job_dir) and delivered_folder(job_dir):
        actions.append("finish_best")
    if state != "COMPLETED":
        actions.append("restart")
    if error.get("key") == "train.error.diverged" or warned & {"health.diverged", "health.spike"}:
        actions.append("lower_lr")
    if error.get("key", "").startswith("train.error.oom") or _killed_for_memory(error):
        actions.append("less_memory")
    if forgetting and not resumable:
        actions.append("lower_lr" if retained else "retention")
    return list(dict.fromkeys([*actions, "clone", "delete"]))  # (a diverged and forgetting run: one lower_lr)


def _killed_for_memory(error: dict) -> bool:
    """Killed by SIGKILL, which is what the system's out-of-memory killer sends."""
    killed = error.get("key", "").startswith("jobs.error.killed")
    return killed and (error.get("params") or {}).get("signal") == signal.SIGKILL


def perform(settings: Settings, job_id: str, action: str) -> dict:
    """Run one of available_actions() on a job; returns the job it leaves the user looking at (a clone for
    restart, clone, lower_lr, retention and less_memory; the same job for the others)."""
    simple = {"pause": pause_job, "stop": stop_job, "resume": resume_job, "restart": restart_job,
              "delete": delete_job}
    if action in simple:
        return simple[action](settings, job_id)
    if action == "clone":
        return clone_job(settings, job_id)
    if action in ("lower_lr", "retention", "less_memory"):
        return clone_job(settings, job_id, suggested_changes(settings, job_id, action))
    if action in ("resume_lower_lr", "resume_retention"):
        return resume_job(settings, job_id, suggested_changes(settings, job_id, action.removeprefix("resume_")))
    if action == "finish_best":
        return finish_job(settings, job_id)
    raise UserError("jobs.error.unknown_action", action=action)
