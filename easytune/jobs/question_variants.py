"""Training rows that ask each question again with some of its words left out.

A small model taught a fact by the user's questions alone recalls it for those words: asked in other words,
it tends to answer with another fact of the same data. Copies of each question with about a third of its
words left out, the answer unchanged, teach it to answer from what the question is about rather than from
its exact wording. Measured on SmolLM2-135M-Instruct with the facts benchmark (20 facts, each taught by two
questions and asked two other ways; LoRA r16, lr 9.6e-4, retention 0.5): facts asked in other words 12–13 of
40 without copies (8 epochs, 177 s); with two copies per question 17–21 of 40 at 5 epochs, where the general
text mixed in grew with the copies (315–333 s, general questions 20–24 of 50, base 26); 25 and 26 of 40 at 6
epochs with the general text in proportion to the rows before copying (237–243 s, general 22 of 50), 20 with
another seed (general 25): the domain plan's default for a few rows (presets/intents.yaml). The taught
questions: 95–98 % throughout.

Like replay, the rows are written into the job's folder when the job is created, so the worker, the file
hashes in the record and the memory estimate all see the run as it will be. Only single questions of at least
MIN_WORDS words are varied. A question written without spaces (Chinese) is read in pieces of two characters,
about a word's length, cut afresh after each mark; digits and Latin letters stay whole. The planner asks for
copies of spaced questions only: the real model here does not read Chinese, and on a Chinese set of the
benchmark (facts_zh_bookshop.jsonl) its forgetting guard paused the run with copies, so they are made for
Chinese questions only where a plan sets them by hand.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from easytune.evaluation.metrics import CJK

VARIANTS_FILE = "train_with_variants.jsonl"
LEFT_OUT = 0.3  # each word's chance of being left out of a copy
MIN_WORDS = 4  # shorter questions lose their meaning with any word gone
MIN_KEPT = 3
# An answer that one question alone asks gets this many times the copies: they stand in for the question it lacks.
# The facts benchmark with each fact taught by its first question only (20 rows; AMD EPYC without bf16), asked in new
# words / general questions (base 26 of 50), two copies → four with general text for the second questions they stand
# in for (train/worker.py): the bike rental's 9 → 17 of 40 / 24 → 21 (seed 42; 171 → 298 s) and 11 → 17 / 22 → 26
# (seed 7), the shop's 9 → 16 / 18 → 23 (seed 42) and 17 → 22 / 22 → 17 (seed 7). Four copies without that general
# text: the shop's general answers 18 (seed 42). Four copies over 4 passes instead of 6, about as long as the run
# with two: 14 and 19 of 40.
ONE_WAY_FACTOR = 2
CJK_PIECE = 2  # characters per piece of a question written without spaces: about a Chinese word
# a run of Chinese characters, one of other letters or digits, or one mark
_RUNS = re.compile(rf"[{CJK}]+|[^\s{CJK}\W]+|[^\w\s]")


def stand_in_rows(job: dict) -> int:
    """The second questions the extra copies of a job's one-way answers stand in for: general text is mixed in
    for them as for rows of the user's (train/worker.py), so that the model rehearses what it knew as often
    against copies of one question as against copies of two."""
    return job.get("one_way_rows", 0) * (ONE_WAY_FACTOR - 1)


def users_rows(rows: list, job: dict) -> list:
    """The rows the user wrote, out of a job's training rows: the copies follow them in the file (and, tokenized,
    in the training set)."""
    return rows[:max(0, len(rows) - job.get("question_variant_rows", 0))]


def with_question_variants(train_file: Path, count: int, seed: int, folder: Path,
                           held_out: Path | None = None) -> tuple[Path, int, int]:
    """(the training file to use, rows added, rows whose answer no other row of the data asks): every row, then
    `count` copies of each single-question row with some of its question's words left out (ONE_WAY_FACTOR times as
    many where no other row asks its answer); the file unchanged when no row can be varied.

    The rows held out for validation (`held_out`) count among the ways an answer is asked, as the import counts
    them and the planner sizes the run: data that asks each fact two ways keeps its two copies where the split
    held one question out (extra copies there cost the facts benchmark's shop set 7 of its 26 facts asked in new
    words, seed 42)."""
    if count <= 0:
        return Path(train_file), 0, 0
    from easytune.data.quality import fingerprint, question_and_answer, ways_per_answer
    from easytune.evaluation.buckets import read_jsonl  # (which imports this module)

    rng = random.Random(seed)
    rows = read_jsonl(train_file)
    pairs = [question_and_answer(row) for row in rows]  # None: not a single question and its answer
    others = [question_and_answer(row) for row in read_jsonl(held_out)] if held_out else []
    ways = ways_per_answer([pair for pair in pairs + others if pair])
    added, one_way_rows = [], 0
    for row, pair in zip(rows, pairs):
        if pair is None:
            continue
        one_way = ways[fingerprint(pair[1])] == 1
        copies = _variants(row, count * ONE_WAY_FACTOR if one_way else count, rng)
        added += copies
        one_way_rows += bool(one_way and copies)
    if not added:
        return Path(train_file), 0, 0
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / VARIANTS_FILE
    out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows + added), encoding="utf-8")
    return out, len(added), one_way_rows


def _variants(row: dict, count: int, rng: random.Random) -> list[dict]:
    """`count` copies of a single-question row (from with_question_variants) with words left out of its question."""
    messages = row["messages"]
    question = next(m for m in messages if m.get("role") == "user")
    asked = str(question.get("content") or "").strip()
    mark = asked[-1] if asked[-1:] in ("?", "？") else ""  # kept at the end, whichever word goes
    words, joiner = pieces(asked.rstrip("?？"))
    if len(words) < MIN_WORDS:
        return []
    out, seen = [], {joiner.join(words) + mark}
    for _ in range(count * 4):  # a few tries for copies that differ from the question and from each other
        kept = [word for word in words if rng.random() >= LEFT_OUT]
        text = joiner.join(kept) + mark
        if len(kept) >= MIN_KEPT and text not in seen:
            seen.add(text)
            out.append({**row, "messages": [dict(m, content=text) if m is question else m for m in messages]})
        if len(out) == count:
            break
    return out


def pieces(text: str) -> tuple[list[str], str]:
    """(the words of a question, what joins them again): its words where it is written with spaces, else pieces
    of CJK_PIECE Chinese characters, with the letters, digits and marks between them kept whole."""
    if " " in text.strip():
        return text.split(), " "
    out = []
    for run in _RUNS.findall(text):
        if re.match(f"[{CJK}]", run):
            out += [run[i:i + CJK_PIECE] for i in range(0, len(run), CJK_PIECE)]
        else:
            out.append(run)
    return out, ""
