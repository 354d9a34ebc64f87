"""The three question sets of a blind evaluation, built from a job's own files.

- seen: a fixed-seed sample of rows the job trained on;
- unseen: the job's validation rows (the import's, or the job's own split: easytune.datasets.job_split); or,
  where the user brings them, their own test questions: the taught facts asked in their words, which a job's
  few held-out rows cannot stand in for (40 FAQ rows hold out 3). A test question the model trained on (this
  version or an earlier one, e.g. after its missed answers were taught: evaluation.missed) is not new to it: it
  is left out of the bucket, and the count is said;
- gatekeeper: general-knowledge questions unrelated to any task (presets/gatekeeper), zh + en.

An item is one conversation whose last assistant turn is the reference answer; the model is asked
everything before it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from itertools import chain, islice, zip_longest
from pathlib import Path

from easytune.evaluation.metrics import tokenize
from easytune.i18n import UserError
from easytune.jobs.question_variants import users_rows
from easytune.settings import PRESETS_DIR

GATEKEEPER_DIR = PRESETS_DIR / "gatekeeper"
TAUGHT_MAX = 20_000  # training rows whose answers a wrong answer is compared with (evaluation.facts.given_instead)


@dataclass
class Item:
    messages: list[dict]  # the prompt: every turn before the reference answer
    reference: str | None  # the last assistant answer; None for a raw-text row (scored by loss only)
    text: str | None = None  # the raw text of such a row
    key: list[str] | None = None  # the answer key of a gatekeeper question: a right answer holds one of these

    @property
    def question(self) -> str:
        """The last thing asked: its facts are not what the answer must supply."""
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")

    def row(self) -> dict:
        """The canonical row that scores only the reference answer (earlier answers are context)."""
        if self.reference is None:
            return {"kind": "text", "text": self.text}
        context = [dict(m, train=False) if m["role"] == "assistant" else m for m in self.messages]
        return {"messages": [*context, {"role": "assistant", "content": self.reference}]}


@dataclass
class Bucket:
    name: str  # seen | unseen | gatekeeper
    items: list[Item] = field(default_factory=list)
    source: str | None = None  # where the rows came from: train_file, val_file, holdout, questions, gatekeeper
    dataset: str | None = None  # the test questions' dataset, for source "questions"
    missing: str | None = None  # why there is nothing to ask (a message key), when empty
    taught: list[tuple[str, str]] = field(default_factory=list)  # (question, answer) of the rows trained on
    left_out: int = 0  # test questions not asked because the model trained on them

    @property
    def asked(self) -> list[Item]:
        """The items with a reference answer: the ones the models answer and the answers are judged against."""
        return [item for item in self.items if item.reference is not None]


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    """The file's rows; with `limit`, its first `limit` rows only."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in islice((line for line in f if line.strip()), limit)]


def item_of(row: dict) -> Item | None:
    """The question and reference of a canonical row; None when it has neither answer nor text."""
    messages = row.get("messages")
    if row.get("chosen"):  # a preference pair: the chosen answer is the reference
        return Item([{"role": m["role"], "content": m["content"]} for m in messages or []], row["chosen"])
    if not messages:
        return Item([], None, row["text"]) if row.get("text") else None
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
    if last is None or not messages[last]["content"].strip():
        return None
    return Item([{"role": m["role"], "content": m["content"]} for m in messages[:last]], messages[last]["content"],
                key=row.get("key"))


def items_of(rows: list[dict]) -> list[Item]:
    return [item for item in map(item_of, rows) if item is not None]


def sample(rows: list, k: int, seed: int) -> list:
    """A fixed sample, in file order, so the same job is always asked the same questions."""
    if len(rows) <= k:
        return list(rows)
    chosen = sorted(random.Random(seed).sample(range(len(rows)), k))
    return [rows[i] for i in chosen]


def asked_as(question: str) -> str:
    """A question as compared with the trained ones: its words, whatever the case, spacing and marks."""
    return " ".join(tokenize(question))


def trained_questions(rows: list[dict]) -> set[str]:
    """The questions of training rows, as asked_as compares them."""
    return {asked_as(item.question) for item in items_of(rows)}


def job_buckets(job: dict, *, rows: dict, seed: int, questions: tuple[str, list[dict]] | None = None,
                earlier: list[str] = ()) -> list[Bucket]:
    """seen, unseen and gatekeeper for one job. `rows` holds the most items per bucket. `questions`: (dataset name,
    rows) of the user's own test questions, asked as the unseen bucket instead of the held-out rows, less those
    trained on by this job or by the earlier versions whose training files `earlier` lists."""
    for path in (job["train_file"], job.get("val_file")):
        if path and not Path(path).is_file():  # the dataset was removed after training
            raise UserError("evaluation.error.data_missing", path=path)
    train_rows = read_jsonl(Path(job["train_file"]))
    train_rows = users_rows(train_rows, job)  # not the copies of their questions
    seen = Bucket("seen", source="train_file")
    unseen = Bucket("unseen")
    held = read_jsonl(Path(job["val_file"])) if job.get("val_file") else []  # (split once: datasets.job_split)
    unseen.source = job.get("val_source", "val_file")  # the import's validation file, or the job's own hold-out
    seen.items = items_of(sample(train_rows, rows["seen"], seed))
    # what a wrong answer may be instead: the answers trained on (a dataset's first rows where it is very large)
    seen.taught = unseen.taught = [(item.question, item.reference) for item in items_of(train_rows[:TAUGHT_MAX])
                                   if item.reference is not None]
    unseen.items = items_of(sample(held, rows["unseen"], seed))
    if questions is not None:
        unseen.source, unseen.dataset = "questions", questions[0]
        given = [item for item in items_of(questions[1]) if item.reference is not None]
        if not given:
            raise UserError("evaluation.error.no_questions", name=questions[0])
        trained = trained_questions(
            train_rows + [row for path in earlier if Path(path).is_file() for row in read_jsonl(Path(path))])
        new = [item for item in given if asked_as(item.question) not in trained]
        if not new:
            raise UserError("evaluation.error.questions_trained", name=questions[0], rows=len(given))
        unseen.items, unseen.left_out = sample(new, rows["questions"], seed), len(given) - len(new)
    if not seen.items:
        seen.missing = "evaluation.missing.seen"
    if not unseen.items:
        unseen.source, unseen.missing = None, "evaluation.missing.unseen"
    return [seen, unseen, gatekeeper_bucket(rows["gatekeeper"])]


def gatekeeper_bucket(limit: int) -> Bucket:
    """General questions, the languages interleaved so a small limit still asks both."""
    per_language = [items_of(read_jsonl(path)) for path in sorted(GATEKEEPER_DIR.glob("*.jsonl"))]
    mixed = [item for item in chain.from_iterable(zip_longest(*per_language)) if item is not None]
    return Bucket("gatekeeper", mixed[:limit], source="gatekeeper")
