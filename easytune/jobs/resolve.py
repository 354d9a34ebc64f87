"""What a job will run with, decided once when it is created and kept in job.json: the device and the dtype,
the objective and how many sequences a row trains, the estimated peak memory, the learning rate's floor, the
hash of each data file, and what the machines of one run compare at start (the split, the model). The worker
reads the record and checks that it still holds on the machine and for the files; it decides none of these
again, so a resumed run computes as it began and the fit check, the plan and the run agree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from easytune.datasets import file_sha256
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings

LR_FLOOR = 0.1  # the schedule decays to this share of the peak learning rate, never to zero
SEQUENCES_PER_ROW = {"dpo": 2, "kto": 2}  # a chosen and a rejected answer; an answer and a mismatched one


def device_and_precision(settings: Settings, plan: TrainingPlan, params: int) -> tuple[str, str, bool]:
    """(device, precision, cpu_bf16): the plan's device or this machine's accelerator, and the precision "auto"
    means there (models.calibrate.auto_precision, the one rule the planner and the fit check use too)."""
    from easytune.models.calibrate import auto_precision, cpu_trains_bf16
    from easytune.models.hardware import probe

    hardware = probe()
    device = hardware.accelerator if plan.device == "auto" else plan.device
    cpu_bf16 = plan.precision == "auto" and device == "cpu" and cpu_trains_bf16(settings, params)
    if plan.precision != "auto":
        return device, plan.precision, cpu_bf16
    gpu_bf16 = bool(hardware.cuda) and all(gpu.bf16 for gpu in hardware.cuda)
    adapter = plan.method in ("lora", "qlora")  # a full fine-tune on a CPU stays fp32: its weights are trained
    return device, auto_precision(device, gpu_bf16, cpu_bf16 and adapter), cpu_bf16


def estimated_peak(plan: TrainingPlan, model_path: Path, device: str, precision: str, sequences: int) -> int | None:
    """The estimator's peak bytes for one process of this run; None for a model whose shape it cannot read."""
    from easytune.models.estimate import as_shape, estimate_memory

    try:
        config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
        return estimate_memory(as_shape(config), plan.method, plan.max_seq_len, plan.batch_size * sequences,
                               plan.grad_checkpointing, precision, plan.lora_r, plan.target_modules, device=device,
                               grad_accum=plan.grad_accum, lora_dropout=plan.lora_dropout,
                               padded=not plan.packing,
                               shards=plan.shards).total
    except (OSError, ValueError, TypeError, KeyError):
        return None


def resolve(settings: Settings, plan: TrainingPlan, model_path: Path, objective: str, files: dict) -> dict:
    """The run's part of job.json. `files`: {"train_file": path, "val_file": path or None}."""
    from easytune.models.inspect import stored_counts

    params = sum(stored_counts(model_path).values())  # from the weight files' headers: no training stack
    device, precision, cpu_bf16 = device_and_precision(settings, plan, params)
    sequences = SEQUENCES_PER_ROW.get(objective, 1)
    hashes = {name: file_sha256(path) for name, path in files.items() if path}
    return {"device": device, "precision": precision, "cpu_bf16": cpu_bf16, "sequences_per_row": sequences,
            "estimated_peak_bytes": estimated_peak(plan, model_path, device, precision, sequences),
            "lr_floor": LR_FLOOR, "file_sha256": hashes, "split_sha256": split_sha256(hashes),
            "model_sha256": model_sha256(model_path, params)}


def split_sha256(hashes: dict) -> str:
    """One hash of the rows trained on and the rows held out, which is the split itself: machines that share a
    run compare it, since each split its own copy of the data (the same bytes and seed give the same split)."""
    parts = [hashes.get("train_file", ""), hashes.get("val_file", "")]
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def model_sha256(model_path: Path, params: int) -> str:
    """The model as machines of one run compare it: its configuration and size (each may keep the folder
    elsewhere, and hashing every weight would take minutes; the weights themselves are shared from the main
    machine when the processes join)."""
    try:
        config = (model_path / "config.json").read_bytes()
    except OSError:
        config = b""
    return hashlib.sha256(config + f":{params}".encode()).hexdigest()
