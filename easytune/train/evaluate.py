"""Evaluation inside the worker: mean loss on a set of examples, and the forgetting (CF) score.

CF score = cross-entropy of the tuned model minus that of the base model on a fixed general reference
text (presets/general_reference, zh + en). For a LoRA adapter the base side is the same model with the
adapter switched off, computed once and cached per (base model, reference set, length).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import torch

from easytune.settings import PRESETS_DIR
from easytune.train.packing import collate

REFERENCE_DIR = PRESETS_DIR / "general_reference"


def mean_loss(model, examples, batch_size: int, pad_id: int, device, pack: bool = False, ranks=None) -> float:
    """Token-weighted mean cross-entropy. use_cache off: cached keys must never leak between rows.
    With several processes (`ranks`), each scores its share of the examples and the sums are added."""
    if ranks is not None:
        examples = examples[ranks.rank::ranks.world]
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch, _ = collate([(e["input_ids"], e["labels"]) for e in chunk], pad_id, device, pack)
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n:
                total += model(**batch, use_cache=False).loss.item() * n
                count += n
    model.train(was_training)
    if ranks is not None:
        total, count = ranks.sum(total, count)
    return total / max(count, 1)


def reference_lines(per_language: int) -> list[str]:
    lines = []
    for path in sorted(REFERENCE_DIR.glob("*.txt")):
        text = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        step = max(1, len(text) // per_language)  # spread over the file, not just its first topic
        lines += text[::step][:per_language]
    return lines


def retention_lines(per_language: int) -> list[str]:
    """General text to mix into training (knowledge-retention mode): every reference line that the
    forgetting score does not measure, so the score stays an honest held-out check."""
    measured = set(reference_lines(per_language))
    return [line.strip() for path in sorted(REFERENCE_DIR.glob("*.txt"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and line.strip() not in measured]


def reference_examples(tokenizer, max_len: int, per_language: int) -> list[dict]:
    examples = []
    for line in reference_lines(per_language):
        ids = tokenizer(line, add_special_tokens=False)["input_ids"][:max_len]
        if len(ids) > 1:
            examples.append({"input_ids": ids, "labels": ids})
    return examples


class ForgettingScore:
    def __init__(self, model, tokenizer, *, model_path: str, max_len: int, per_language: int,
                 batch_size: int, pad_id: int, device, cache_dir: Path | None, adapter: bool,
                 pack: bool = False, ranks=None):
        self.model, self.batch_size, self.pad_id, self.device = model, batch_size, pad_id, device
        self.pack, self.ranks = pack, ranks
        self.examples = reference_examples(tokenizer, max_len, per_language)
        key = hashlib.sha256(json.dumps([model_path, max_len, reference_lines(per_language)]).encode()).hexdigest()
        cache = Path(cache_dir) / f"cf-base-{key[:24]}.json" if cache_dir else None
        if cache is not None and cache.is_file():
            self.base = json.loads(cache.read_text())["base_loss"]
        else:
            off = model.disable_adapter() if adapter else contextlib.nullcontext()
            with off:  # the base model is this one with the adapter switched off: no second copy
                self.base = self.loss()
            if cache is not None and (ranks is None or ranks.main):
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps({"base_loss": self.base, "model_path": model_path}))

    def loss(self) -> float:
        return mean_loss(self.model, self.examples, self.batch_size, self.pad_id, self.device, self.pack, self.ranks)

    def score(self) -> dict:
        tuned = self.loss()
        return {"cf_score": tuned - self.base, "cf_pct": 100 * (tuned - self.base) / self.base,
                "general_loss": tuned, "base_general_loss": self.base}
