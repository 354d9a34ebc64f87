"""What a comparison runs: a base model and its tuned version (an adapter on it, or a full model)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from easytune.i18n import UserError


@dataclass(frozen=True)
class Pair:
    base: str  # base model folder
    adapter: str | None = None  # LoRA adapter folder on top of base
    tuned: str | None = None  # full fine-tuned model folder (when there is no adapter)


def check_adapter_folder(folder: str) -> dict:
    """The adapter's config, after checking the folder is a peft adapter with safetensors weights."""
    path = Path(folder).expanduser()
    if not (path / "adapter_config.json").is_file():
        raise UserError("evaluation.error.not_adapter", path=str(path))
    if not (path / "adapter_model.safetensors").is_file():  # never a pickled .bin from someone else
        raise UserError("evaluation.error.adapter_not_safetensors", path=str(path))
    return json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
