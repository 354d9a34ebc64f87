"""The event protocol between a training worker and the orchestrator (version 1).

The worker appends one JSON object per line to `<job_dir>/events.jsonl`; the orchestrator tails the
file (no pipe that dies with the UI), so a restarted app re-attaches to a running job. Every event has
    v      protocol version (1)
    t      unix time, seconds
    type   one of the kinds below
and the fields of its kind:
    state     state: PREPARING | RUNNING | COMPLETED | FAILED | STOPPED | PAUSED (by the forgetting guard);
              reason (optional message key) and params (its parameters)
    step      step, total_steps, epoch, loss, lr, tokens (computed this step, all processes), tokens_per_s;
              DPO adds reward_margin (chosen minus rejected reward) and reward_accuracy (share ranked right)
    eval      step, val_loss (when there is a validation split), cf_score (nats/token), cf_pct (% of
              the base model's general cross-entropy), general_loss, base_general_loss, cf_s and val_s
              (seconds each part took); DPO adds reward_margin and reward_accuracy on the held-out pairs
    checkpoint  step, path (`checkpoints/step-N`, relative to the job folder), val_loss (or null when
              not evaluated at that step), best (true when it is the lowest validation loss so far)
    log       level (info | warning | error), key (message key), params (dict) — shown translated
    error     code (message key), params, detail (the exception text, for the log)
    artifact  kind (adapter | model), path (relative to the job folder)
The worker resumes when job.json has "resume_from": "checkpoints/step-N": it continues from that
checkpoint to the same total steps and emits no step or eval event for steps up to N again.
A line is complete only when it ends in a newline; readers skip a partial last line and re-read it.
Control flows the other way through files: `<job_dir>/STOP` asks the worker to stop at the next step.
`<job_dir>/PAUSE`, written beside STOP, is for the orchestrator only: the stop is a pause, so it records
the worker's STOPPED as PAUSED. A resumed job's worker appends to the same events.jsonl.

Beside the worker's states the orchestrator records PENDING (waiting for the device), PAUSED, and
INTERRUPTED (the worker ended without a final state, and it left a checkpoint or nobody saw how it ended;
or it failed for a cause outside the training, such as a full disk, after a checkpoint).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from easytune.jobs.folder import EVENTS

PROTOCOL_VERSION = 1
EVENTS_FILE = EVENTS  # the one channel from the worker to the app (jobs/folder.py)
STOP_FILE = "STOP"
PAUSE_FILE = "PAUSE"
# A run has ended in one of these (no worker runs); the resumable ones can continue from a checkpoint.
TERMINAL_STATES = ("COMPLETED", "FAILED", "STOPPED", "INTERRUPTED", "PAUSED")
RESUMABLE_STATES = ("PAUSED", "STOPPED", "INTERRUPTED")
ACTIVE_STATES = ("PENDING", "PREPARING", "RUNNING")


class EventWriter:
    def __init__(self, job_dir: Path):
        self.path = Path(job_dir) / EVENTS_FILE

    def emit(self, type: str, **fields) -> None:
        line = json.dumps({"v": PROTOCOL_VERSION, "t": time.time(), "type": type, **fields},
                          ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as f:  # one write per line: readers never see half
            f.write(line + "\n")

    def state(self, state: str, reason: str | None = None, **params) -> None:
        self.emit("state", state=state, reason=reason, params=params)

    def log(self, key: str, level: str = "info", **params) -> None:
        self.emit("log", level=level, key=key, params=params)


def read_events(job_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Complete events after byte `offset`, and the offset to continue from."""
    path = Path(job_dir) / EVENTS_FILE
    if not path.exists():
        return [], offset
    with path.open("rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1  # a partial last line waits for the next read
    events = [json.loads(line) for line in chunk[:end].splitlines() if line.strip()]
    return events, offset + end
