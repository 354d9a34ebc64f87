"""Datasets the user can train on: the built-in demos, and what they imported (SQLite + files)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from easytune.i18n import UserError
from easytune.settings import ASSETS_DIR, Settings

DEMO_DIR = ASSETS_DIR / "demo"
DEMO_PREFIX = "demo:"


@dataclass(frozen=True)
class ResolvedDataset:
    name: str
    train_file: Path
    val_file: Path | None
    sha256: str
    rows: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def demo_names() -> list[str]:
    return [DEMO_PREFIX + p.stem for p in sorted(DEMO_DIR.glob("*.jsonl"))]


def count_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def resolve_dataset(settings: Settings, name: str) -> ResolvedDataset:
    """The files a job trains on, for a demo name or a dataset id in the registry."""
    if name.startswith(DEMO_PREFIX):
        path = DEMO_DIR / f"{name[len(DEMO_PREFIX):]}.jsonl"
        if not path.is_file():
            raise UserError("datasets.unknown", name=name, known=", ".join(demo_names()))
        return ResolvedDataset(name, path, None, file_sha256(path), count_rows(path))
    from easytune.store import open_db

    row = next(open_db(settings.db_path)["datasets"].rows_where("id = ? or name = ?", [name, name]), None)
    if row is None:
        raise UserError("datasets.unknown", name=name, known=", ".join(demo_names()))
    folder = Path(row["path"])
    val = folder / "val.jsonl"
    return ResolvedDataset(row["name"], folder / "train.jsonl", val if val.is_file() and val.stat().st_size else None,
                           row["sha256"], row["rows"])


def preview_rows(settings: Settings, name: str, limit: int = 20) -> list[dict]:
    """The first rows as (question, answer) pairs for a quick look."""
    resolved = resolve_dataset(settings, name)
    out = []
    with open(resolved.train_file, encoding="utf-8") as f:
        for line in f:
            if len(out) >= limit:
                break
            messages = json.loads(line).get("messages", [])
            user = next((m["content"] for m in messages if m["role"] == "user"), "")
            answer = next((m["content"] for m in messages if m["role"] == "assistant"), "")
            out.append({"user": user, "assistant": answer})
    return out
