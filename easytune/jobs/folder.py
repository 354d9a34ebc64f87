"""A job's folder, laid out in one place. The app writes it when it creates the job; the worker, evaluation,
chat and export read it back through here, so a file's name and what it holds are decided once.

    plan.yaml       the plan the user approved (changed only by a resume with new settings, recorded)
    job.json        what the app resolved once at creation: model path, data files, objective, versions…;
                    the worker reads it and decides nothing the app already decided
    events.jsonl    the worker's events (jobs/events.py), the one channel from the worker to the app
    worker.log      the worker's own stdout and stderr
    data/           the job's own split, when the plan's validation share differs from the import's
    checkpoints/    resumable steps, with index.json naming the latest and the best
    adapter/        the delivered LoRA adapter (or model/ for a full fine-tune, see jobs/deliver.py)
    tensorboard/    TensorBoard event files, where the plan asks for them or they were exported (easytune/tracking/)

Light on purpose: the app process imports it at start-up, the training stack never.
"""

from __future__ import annotations

import json
from pathlib import Path

PLAN = "plan.yaml"
RESOLVED = "job.json"
EVENTS = "events.jsonl"
WORKER_LOG = "worker.log"
DATA = "data"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"
TENSORBOARD = "tensorboard"


class JobFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def plan_file(self) -> Path:
        return self.path / PLAN

    @property
    def resolved_file(self) -> Path:
        return self.path / RESOLVED

    @property
    def events_file(self) -> Path:
        return self.path / EVENTS

    @property
    def worker_log(self) -> Path:
        return self.path / WORKER_LOG

    @property
    def data(self) -> Path:
        return self.path / DATA

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def adapter(self) -> Path:
        return self.path / ADAPTER

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    def latest_checkpoint(self) -> str | None:
        """The worker's latest checkpoint as `checkpoints/step-N` (relative to the folder), or None."""
        try:
            latest = json.loads((self.checkpoints / "index.json").read_text(encoding="utf-8"))["latest"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return f"{CHECKPOINTS}/{latest}" if latest and (self.checkpoints / latest).is_dir() else None

    def plan(self):
        from easytune.plan.schema import TrainingPlan

        return TrainingPlan.load(self.plan_file)

    def resolved(self) -> dict:
        return json.loads(self.resolved_file.read_text(encoding="utf-8"))

    def write_resolved(self, record: dict) -> None:
        self.resolved_file.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")

    def update_resolved(self, **changes) -> None:
        """Set (or, with None, remove) keys of job.json: what a resume or a clone adds to the record."""
        record = self.resolved()
        for key, value in changes.items():
            if value is None:
                record.pop(key, None)
            else:
                record[key] = value
        self.write_resolved(record)
