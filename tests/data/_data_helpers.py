"""Helpers shared by the data-import tests (a plain module: the tests folder has its own conftest)."""

import json
import os
from pathlib import Path

import pytest


def shared_datasets_dir() -> Path:
    """The sample datasets beside the checkout (or under $EASYTUNE_SHARED_DIR)."""
    base = os.environ.get("EASYTUNE_SHARED_DIR")
    root = Path(base) if base else Path(__file__).resolve().parents[2].parent / "shared"
    return root / "datasets"


def need_shared_datasets() -> Path:
    folder = shared_datasets_dir()
    if not folder.is_dir():
        pytest.skip(f"sample datasets not found at {folder}")
    return folder


def rows_of(path: Path) -> list[dict]:
    """A cleaned .jsonl file read back as a list of dicts."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
