"""Checkpoints of a run: JOB_DIR/checkpoints/step-<N>/, and index.json naming the latest and the best.

A checkpoint holds what resuming needs and nothing else:
    weights.safetensors  the trainable weights (the LoRA matrices, or every weight of a full fine-tune)
    state.pt             optimizer, schedule position, RNG states and data position: tensors and plain
                         numbers only, read back with torch.load(weights_only=True)
It is written to a hidden folder and renamed into place, and index.json is replaced atomically, so a
crash mid-save leaves the previous checkpoints and index intact. The latest `keep` checkpoints survive
pruning, and so does the best by validation loss:
    index.json  {"latest": "step-N", "best": "step-M" | null, "best_val_loss": x | null,
                 "steps": [kept step numbers], "val_loss": {"<step>": x | null}}
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from easytune.i18n import UserError
from easytune.jobs.partial import partial_path, sweep

WEIGHTS = "weights.safetensors"
STATE = "state.pt"
INDEX = "index.json"


def trainable_weights(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_weights(model, folder: Path) -> None:
    saved = load_file(str(Path(folder) / WEIGHTS))
    params = dict(model.named_parameters())
    missing = [name for name in saved if name not in params]
    if missing:
        raise UserError("train.error.checkpoint_mismatch", path=str(folder), name=missing[0])
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value.to(params[name].device, params[name].dtype))


def check_space(folder: Path, need_bytes: int) -> None:
    """Refuse before writing when the disk cannot take it: a half-written save helps nobody."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need_bytes * 1.1 + (16 << 20):
        raise UserError("train.error.disk_full", folder=str(folder), need_mb=round(need_bytes / 2**20 + 16),
                        free_mb=round(free / 2**20))


def raise_if_disk_full(folder: Path, need_bytes: int, exc: OSError) -> None:
    """A write that failed for want of space says how much it needs; other OS errors pass through."""
    if exc.errno == errno.ENOSPC:
        raise UserError("train.error.disk_full", folder=str(folder), need_mb=round(need_bytes / 2**20 + 16),
                        free_mb=round(shutil.disk_usage(folder).free / 2**20)) from exc


class Checkpoints:
    def __init__(self, folder: Path, keep: int):
        self.folder, self.keep = Path(folder), keep
        try:
            self.index = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.index = {"latest": None, "best": None, "best_val_loss": None, "steps": [], "val_loss": {}}
        sweep(self.folder)  # left by a worker killed mid-save

    @property
    def best_step(self) -> int | None:
        return int(self.index["best"].split("-")[1]) if self.index["best"] else None

    def save(self, step: int, model, optimizer, state: dict, val_loss: float | None,
             gathered: tuple[dict, dict] | None = None) -> dict:
        """Write step-<step>, update the index, prune; returns the checkpoint event's fields. gathered: the
        weights and optimizer state of a model split over the processes, gathered whole (train/sharding.py)."""
        name = f"step-{step}"
        final = self.folder / name
        partial = partial_path(final)
        weights, optimizer_state = gathered or (trainable_weights(model), optimizer.state_dict())
        need = sum(t.numel() * t.element_size() for t in weights.values()) * 3  # weights + Adam's two moments
        check_space(self.folder, need)
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            save_file(weights, str(partial / WEIGHTS))
            torch.save({**state, "optimizer": optimizer_state}, partial / STATE)
            shutil.rmtree(final, ignore_errors=True)  # a resumed run passes this step again
            os.replace(partial, final)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise_if_disk_full(self.folder, need, exc)
            raise
        best = val_loss is not None and (self.index["best_val_loss"] is None or val_loss < self.index["best_val_loss"])
        if best:
            self.index.update(best=name, best_val_loss=val_loss)
        self.index["latest"] = name
        self.index["steps"] = sorted(set(self.index["steps"]) | {step})
        self.index["val_loss"][str(step)] = val_loss
        self._prune()
        self._write_index()
        return {"step": step, "path": f"checkpoints/{name}", "val_loss": val_loss, "best": best}

    def load(self, ref: str, model, optimizer) -> dict:
        """Restore weights and optimizer from `checkpoints/step-N`; returns the saved training state."""
        load_weights(model, self.found(ref))
        state = self.state(ref)
        optimizer.load_state_dict(state.pop("optimizer"))
        return state

    def found(self, ref: str) -> Path:
        """The folder of `checkpoints/step-N`, refused when it is not whole."""
        folder = self.folder / Path(ref).name
        if not (folder / WEIGHTS).is_file() or not (folder / STATE).is_file():
            raise UserError("train.error.no_checkpoint", path=ref)
        return folder

    def state(self, ref: str) -> dict:
        """The saved training state, the optimizer's included."""
        return torch.load(self.found(ref) / STATE, weights_only=True, map_location="cpu")

    def forget_after(self, step: int) -> None:
        """Drop the checkpoints after `step`: a run resumed from there replaces them."""
        for later in [s for s in self.index["steps"] if s > step]:
            shutil.rmtree(self.folder / f"step-{later}", ignore_errors=True)
            self.index["val_loss"].pop(str(later), None)
        self.index["steps"] = [s for s in self.index["steps"] if s <= step]
        self.index["latest"] = f"step-{step}"
        scored = {int(s): v for s, v in self.index["val_loss"].items() if v is not None and int(s) <= step}
        best = min(scored, key=scored.get) if scored else None
        self.index.update(best=f"step-{best}" if best is not None else None,
                          best_val_loss=scored[best] if best is not None else None)
        self._write_index()

    def _prune(self) -> None:
        keep = set(self.index["steps"][-self.keep:])
        if self.index["best"]:
            keep.add(self.best_step)
        for step in set(self.index["steps"]) - keep:
            shutil.rmtree(self.folder / f"step-{step}", ignore_errors=True)
            self.index["val_loss"].pop(str(step), None)
        self.index["steps"] = sorted(keep)

    def _write_index(self) -> None:
        partial = partial_path(self.folder / INDEX)
        partial.write_text(json.dumps(self.index, indent=2), encoding="utf-8")
        os.replace(partial, self.folder / INDEX)
