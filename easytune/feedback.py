"""Chat feedback, the data flywheel: 👍/👎 and corrected answers, turned into the next run's training data.

As answers to learn (supervised), a 👍 answer is kept as it was and a 👎 answer becomes data only once
someone wrote the right answer (its correction). As labelled answers (KTO, `labelled=True`) a 👎 teaches too:
👍 answers and corrections are the good examples, every 👎 answer a bad one. The dataset is imported like any
file a user brings, so it is checked, split and listed the same way and can be mixed into the next plan.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from easytune.i18n import UserError
from easytune.settings import Settings
from easytune.store import open_db

RATINGS = {"up": 1, "down": -1, "+1": 1, "-1": -1, "1": 1}


def _rating(value) -> int:
    rating = RATINGS.get(str(value).strip().lower()) if not isinstance(value, bool) else None
    if rating is None:
        raise UserError("feedback.error.rating", value=value)
    return rating


def _text(value: str | None) -> str | None:
    return value.strip() if value and value.strip() else None


def record_feedback(settings: Settings, target: str, prompt: str, answer: str, rating: int | str,
                    correction: str | None = None, system: str | None = None) -> dict:
    """Keep one rated answer. rating: +1 / -1 (or "up" / "down"); correction: the answer it should have been."""
    rating = _rating(rating)
    if not _text(prompt) or answer is None:
        raise UserError("feedback.error.empty")
    row = {"id": "fb-" + uuid.uuid4().hex[:10], "target": str(getattr(target, "ref", target)), "prompt": prompt.strip(),
           "answer": answer.strip(), "rating": rating, "correction": _text(correction), "system": _text(system),
           "created_at": time.time()}
    open_db(settings.db_path)["feedback"].insert(row)
    return row


def list_feedback(settings: Settings, target: str | None = None) -> list[dict]:
    """Newest first; only one target's when given."""
    where, args = ("target = ?", [target]) if target else (None, None)
    return list(open_db(settings.db_path)["feedback"].rows_where(where, args, order_by="created_at desc"))


def training_rows(rows: list[dict]) -> list[tuple[dict, bool]]:
    """(canonical conversation, whether its answer is a correction), oldest first. A correction is the answer
    whenever there is one; a 👎 without one teaches nothing and is left out. When the same question (with the
    same system message) was rated more than once, the latest usable verdict wins."""
    latest: dict[tuple, tuple[dict, bool]] = {}
    for row in sorted(rows, key=lambda r: r["created_at"]):
        reply = row["correction"] or (row["answer"] if row["rating"] > 0 else None)
        if not reply:
            continue
        key = (row["system"] or "", row["prompt"])
        latest.pop(key, None)  # re-inserted, so the order follows the latest verdict
        system = [{"role": "system", "content": row["system"]}] if row["system"] else []
        latest[key] = ({"messages": system + [{"role": "user", "content": row["prompt"]},
                                              {"role": "assistant", "content": reply}]}, bool(row["correction"]))
    return list(latest.values())


def labelled_rows(rows: list[dict]) -> list[dict]:
    """Answers labelled good or bad (KTO rows), oldest first: a 👍 answer good; a 👎 answer bad, and its
    correction, when written, good. The latest verdict on the same answer to the same question wins."""
    latest: dict[tuple, dict] = {}

    def label(row: dict, answer: str, good: bool) -> None:
        key = (row["system"] or "", row["prompt"], answer)
        system = [{"role": "system", "content": row["system"]}] if row["system"] else []
        latest.pop(key, None)
        latest[key] = {"messages": system + [{"role": "user", "content": row["prompt"]},
                                             {"role": "assistant", "content": answer}], "label": good}

    for row in sorted(rows, key=lambda r: r["created_at"]):
        if row["answer"]:
            label(row, row["answer"], row["rating"] > 0)
        if row["correction"]:
            label(row, row["correction"], True)
    return list(latest.values())


def feedback_to_dataset(settings: Settings, name: str | None = None, target: str | None = None,
                        labelled: bool = False) -> dict:
    """Import the usable feedback as a dataset: add_dataset's result plus `rows`, `corrected`, `approved` (and,
    labelled, `good` and `bad`). Unchanged feedback gives the same file, which add_dataset recognises
    (`duplicate_of`)."""
    from easytune.datasets import add_dataset

    rows = list_feedback(settings, target)
    usable = training_rows(rows)
    conversations = labelled_rows(rows) if labelled else [c for c, _ in usable]
    good = sum(c["label"] for c in conversations) if labelled else len(conversations)
    if not conversations or labelled and good in (0, len(conversations)):  # KTO needs both kinds
        raise UserError("feedback.error.nothing_labelled" if labelled else "feedback.error.nothing_usable",
                        up=sum(r["rating"] > 0 for r in rows),
                        down=sum(r["rating"] < 0 and (labelled or not r["correction"]) for r in rows))
    with tempfile.TemporaryDirectory(prefix="easytune-feedback-") as folder:
        path = Path(folder) / "feedback.jsonl"  # the name the imported original keeps
        path.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in conversations), encoding="utf-8")
        # Every rated answer is trained on: none is held out for validation.
        result = add_dataset(settings, path, name=name or time.strftime("feedback-%Y%m%d-%H%M%S"), val_ratio=0)
    corrected = sum(1 for _, is_correction in usable if is_correction)
    counts = {"good": good, "bad": len(conversations) - good} if labelled else {}
    return {**result, "rows": len(conversations), "corrected": corrected, "approved": len(usable) - corrected,
            **counts}


def job_feedback_dataset(settings: Settings, job_id: str, labelled: bool = False) -> dict:
    """One job's feedback as its own dataset (answers of different models are never mixed silently)."""
    return feedback_to_dataset(settings, name=f"feedback-{job_id}{'-labelled' if labelled else ''}", target=job_id,
                               labelled=labelled)


def improve_from_feedback(settings: Settings, job_id: str, labelled: bool = False, changes: dict | None = None) -> dict:
    """The flywheel in one step: the job's feedback as a dataset, and the next version of its model trained on
    it from the job's adapter (with the plan `changes`, e.g. continual or replay_ratio).
    {"dataset": feedback_to_dataset's result, "job": the new version's job}."""
    from easytune.jobs import next_version

    made = job_feedback_dataset(settings, job_id, labelled)
    return {"dataset": made, "job": next_version(settings, job_id, made["dataset"]["id"], changes)}
