"""A checkpoint made a job's result after its run ended: "keep the best checkpoint and finish" for a
paused job.

The run already delivered `adapter/` (or `model/`) when it ended; only the weights in it change, to the
checkpoint's values, tensor by tensor. So no base model is loaded (a paused 70B QLoRA run finishes in
seconds), and the config and tokenizer files stay those the worker wrote. Checkpoints name LoRA weights as
the training model does (`lora_A.default.weight`); the delivered adapter as peft saves it, without the
adapter's name (`lora_A.weight`). Every delivered tensor must have its checkpoint counterpart of the same
shape, or nothing is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from easytune.i18n import UserError
from easytune.jobs.folder import JobFolder

ADAPTER_NAME = "default"  # peft's name for the one adapter a run trains


def deliverable_step(job_dir: Path) -> tuple[int, bool] | None:
    """(step, whether it is the best by validation loss) of the checkpoint to deliver: the best, or the
    latest when no evaluation scored one; None without checkpoints."""
    try:
        index = json.loads((JobFolder(job_dir).checkpoints / "index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for name, best in ((index.get("best"), True), (index.get("latest"), False)):
        if name and (JobFolder(job_dir).checkpoints / name).is_dir():
            return int(name.rsplit("-", 1)[1]), best
    return None


def delivered_folder(job_dir: Path) -> Path | None:
    for kind in ("adapter", "model"):
        if (Path(job_dir) / kind).is_dir() and any((Path(job_dir) / kind).glob("*.safetensors")):
            return Path(job_dir) / kind
    return None


def deliver_checkpoint(job_dir: Path, job_id: str) -> dict:
    """Rewrite the delivered weights with those of the best checkpoint; returns step, best and kind."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    chosen, out = deliverable_step(job_dir), delivered_folder(job_dir)
    if chosen is None or out is None:
        raise UserError("jobs.error.nothing_to_finish", job=job_id)
    step, best = chosen
    source = JobFolder(job_dir).checkpoints / f"step-{step}" / "weights.safetensors"
    files = sorted(out.glob("*.safetensors"))
    with safe_open(str(source), framework="pt") as saved:
        names = {_delivered_name(name): name for name in saved.keys()}
        for path in files:  # every file checked before any is written
            with safe_open(str(path), framework="pt") as delivered:
                for name in delivered.keys():
                    shape = delivered.get_slice(name).get_shape()
                    if name not in names or saved.get_slice(names[name]).get_shape() != shape:
                        raise UserError("jobs.error.checkpoint_mismatch", job=job_id, step=step, name=name)
        for path in files:  # one file in memory at a time; each replaced whole
            tensors = {name: saved.get_tensor(names[name]).to(tensor.dtype).contiguous()
                       for name, tensor in load_file(str(path)).items()}
            partial = path.with_name(f".{path.name}.partial")
            save_file(tensors, str(partial), metadata={"format": "pt"})
            os.replace(partial, path)
    return {"step": step, "best": best, "kind": out.name}


def _delivered_name(name: str) -> str:
    return name.replace(f".{ADAPTER_NAME}.", ".")
