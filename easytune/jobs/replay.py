"""Replay for a new version of a model: a sample of what earlier versions trained on, mixed into the new data.

The rows are written with the new data into one file in the job's folder when the job is created, so the
worker, the file hashes in the record and the memory estimate all see the run as it will be. Only rows of the
new data's kind are replayed (a chat row cannot train a preference objective); a row that several versions
trained on is counted once.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

REPLAY_FILE = "train_with_replay.jsonl"
WORD = re.compile(r"[^\W\d_]{3,}|[\u3400-\u9fff]", re.UNICODE)  # words of 3+ letters; each Chinese character


def with_replay(train_file: Path, earlier: list[str], ratio: float, seed: int, folder: Path) -> tuple[Path, int]:
    """(the training file to use, rows replayed): the new rows plus `ratio` of the result drawn from the
    earlier files' rows; the new file unchanged when there is nothing to replay."""
    new = _lines(Path(train_file))
    seen = set(new)
    pool = [line for path in earlier if Path(path).is_file() for line in _lines(Path(path))]
    pool = [line for line in dict.fromkeys(pool) if line not in seen]
    wanted = min(len(pool), round(len(new) * ratio / (1 - ratio)))
    if ratio <= 0 or wanted == 0:
        return Path(train_file), 0
    replayed = random.Random(seed).sample(pool, wanted)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / REPLAY_FILE
    out.write_text("".join(line + "\n" for line in new + replayed), encoding="utf-8")
    return out, wanted


def shared_words(new_file: Path, earlier: list[str]) -> float | None:
    """The share of the new data's distinct words that the earlier versions' data already used (None without
    earlier data): low when the new version is taught something different, which is when continual learning
    and replay matter."""
    new = _words(Path(new_file))
    old = set().union(*(_words(Path(path)) for path in earlier if Path(path).is_file()))
    if not new or not old:
        return None
    return len(new & old) / len(new)


def _lines(path: Path) -> list[str]:
    """Each row as one canonical JSON line, without the line number a reader may have added."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row.pop("line", None)
            rows.append(json.dumps(row, ensure_ascii=False, sort_keys=True))
    return rows


def _words(path: Path) -> set[str]:
    """The words of a data file's texts (not its field names or roles)."""
    words: set[str] = set()

    def collect(value, key=None):
        if isinstance(value, str) and key != "role":
            words.update(w.lower() for w in WORD.findall(value))
        elif isinstance(value, dict):
            for k, v in value.items():
                collect(v, k)
        elif isinstance(value, list):
            for v in value:
                collect(v)

    for line in _lines(path):
        collect(json.loads(line))
    return words
