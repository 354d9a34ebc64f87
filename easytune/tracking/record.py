"""What one job recorded, gathered once from SQLite and its folder: the curves with when each point was
measured, the plan, job.json, the latest quality evaluation, and the outcome figures a comparison shows.
The TensorBoard and MLflow writers and `jobs compare` all read a job through here, under the same names."""

from __future__ import annotations

from dataclasses import dataclass

from easytune.jobs.folder import JobFolder
from easytune.jobs.follow import STEP_METRICS
from easytune.jobs.rows import get_job, logged_events, timed_metrics
from easytune.jobs.status import job_plan
from easytune.settings import Settings

EVALUATION_FIGURES = ("loss", "rouge_l", "bleu", "facts", "exact_match")  # per bucket and side, where measured


def tracked_name(name: str) -> str:
    """A stored curve's name in TensorBoard and MLflow: grouped by what measured it (each step, or the
    held-out evaluation during training), as both tools group names by the part before a slash."""
    return f"train/{name}" if name in STEP_METRICS else f"eval/{name}"


@dataclass(frozen=True)
class JobRecord:
    job: dict  # the jobs row
    plan: dict  # the plan's settings ({} while the job folder is being written)
    resolved: dict  # job.json ({} likewise)
    series: dict[str, list[tuple[int, float, float]]]  # stored name -> [(step, value, unix time)]
    evaluation: dict | None  # the latest quality evaluation's result
    train_s: float | None  # seconds the worker ran, over every start of the job (a resume adds a run)

    @property
    def last_step(self) -> int:
        return max((points[-1][0] for points in self.series.values() if points), default=0)

    def evaluation_figures(self) -> dict[str, float]:
        """The stored evaluation as named figures: each bucket's base and tuned loss, ROUGE-L, BLEU, facts
        right and exact match, where measured."""
        if not self.evaluation:
            return {}
        out = {}
        for bucket, entry in self.evaluation.get("buckets", {}).items():
            for side in ("base", "tuned"):
                for figure in EVALUATION_FIGURES:
                    value = (entry.get(side) or {}).get(figure)
                    if value is not None and (figure != "facts" or entry[side].get("facts_judged")):
                        out[f"evaluation/{bucket}/{side}_{figure}"] = float(value)
        return out

    def outcome(self) -> dict:
        """What the run came to: the last training and validation loss, the best validation loss and its
        step, the last forgetting score, the verdict and facts right if evaluated, and the training time."""
        last = lambda name: self.series[name][-1][1] if self.series.get(name) else None  # noqa: E731
        val = self.series.get("val_loss") or []
        best = min(val, key=lambda point: point[1]) if val else None
        buckets = (self.evaluation or {}).get("buckets", {})

        def facts(bucket: str) -> float | None:
            tuned = (buckets.get(bucket) or {}).get("tuned") or {}
            return tuned.get("facts") if tuned.get("facts_judged") else None

        return {"steps": self.last_step, "final_loss": last("loss"), "final_val_loss": last("val_loss"),
                "best_val_loss": best[1] if best else None, "best_val_step": best[0] if best else None,
                "cf_pct": last("cf_pct"), "verdict": (self.evaluation or {}).get("verdict"),
                "facts_seen": facts("seen"), "facts_unseen": facts("unseen"), "train_s": self.train_s}


def collect(settings: Settings, job_id: str) -> JobRecord:
    """One job's record; an unknown id is the usual bilingual error (jobs.error.unknown)."""
    from easytune.evaluation.service import list_evaluations

    job = get_job(settings, job_id)
    plan = job_plan(job)
    folder = JobFolder(job["job_dir"])
    quality = next(iter(list_evaluations(settings, job_id=job["id"], kind="quality")), None)
    return JobRecord(job=job, plan=plan.to_dict() if plan else {},
                     resolved=folder.resolved() if folder.resolved_file.is_file() else {},
                     series=timed_metrics(settings, job["id"]), evaluation=quality["result"] if quality else None,
                     train_s=_train_seconds(settings, job))


def _train_seconds(settings: Settings, job: dict) -> float | None:
    """From each PREPARING the worker reported to the state that ended that run (or, for a worker that died
    without a word, to when the job was settled); None if it never ran."""
    total, began = 0.0, None
    for event in logged_events(settings, job["id"], types=("state",)):
        data = event["data"]
        if data["state"] == "PREPARING":
            began = data["t"]
        elif began is not None and data["state"] != "RUNNING":
            total, began = total + data["t"] - began, None
    if began is not None and job["finished_at"]:
        total += job["finished_at"] - began
    return round(total, 1) if total else None
