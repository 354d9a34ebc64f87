"""Half-written files: a save writes under `.NAME.partial` beside NAME and renames it into place when complete,
so a process killed mid-save leaves only a `.partial` behind, which nothing reads and nobody will finish.
Torch-free, so the jobs service can sweep a dead worker's leftovers without loading the training stack."""

from __future__ import annotations

import shutil
from pathlib import Path


def partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def sweep(folder: Path) -> None:
    """Remove the `.partial` files and folders in `folder`. Only when no process can still be writing them:
    at a worker's start, or once its worker is known to be gone."""
    for partial in Path(folder).glob(".*.partial"):
        shutil.rmtree(partial, ignore_errors=True) if partial.is_dir() else partial.unlink(missing_ok=True)
