"""Evaluation inside the worker: mean loss on a set of examples, and the forgetting (CF) score.

CF score = KL(base ‖ tuned) per token on a fixed general reference text (presets/general_reference,
zh + en): how far the tuned model's predictions moved from the base model's (ForgettingScore). For a
LoRA adapter the base side is the same model with the adapter switched off, computed once and cached
per (base model, reference set, length).

Scoring runs many forwards of small, mostly short sequences, so how they are batched decides its cost:
each forward takes as many tokens as one training micro-batch holds (never more memory than training
needs, and large matmuls), packed end to end or, padded, sorted by length so that little is padding.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from pathlib import Path

import torch

from easytune.settings import PRESETS_DIR
from easytune.train.attention import reads_shared_prefix
from easytune.train.loss import keeps_logits, scored_loss, sliced_head
from easytune.train.packing import collate

REFERENCE_DIR = PRESETS_DIR / "general_reference"


def token_batches(examples: list[dict], tokens: int, pack: bool) -> list[list[dict]]:
    """Longest first, each batch at most `tokens` long: summed lengths when packed, rows × the longest
    row when padded (a sequence longer than that goes alone)."""
    batches, batch, width = [], [], 0
    for e in sorted(examples, key=lambda e: len(e["input_ids"]), reverse=True):
        length = len(e["input_ids"])
        size = width + length if pack else max(width, length) * (len(batch) + 1)
        if batch and size > tokens:
            batches.append(batch)
            batch, width = [], 0
        batch.append(e)
        width = width + length if pack else max(width, length)
    return batches + [batch] if batch else batches


def scoring(model):
    """No gradients while scoring. inference_mode is the faster, but a model split over the processes (FSDP)
    gathers its weights into tensors that training uses again, and inference_mode would lock them."""
    from torch.distributed.fsdp import FSDPModule

    return torch.no_grad() if isinstance(model, FSDPModule) else torch.inference_mode()


def mean_loss(model, examples, batch_size: int, pad_id: int, device, pack: bool = False, ranks=None,
              tokens: int | None = None) -> float:
    """Token-weighted mean cross-entropy. Each forward holds up to `tokens` tokens (default: `batch_size`
    of the longest examples). use_cache off: cached keys must never leak between rows. With several
    processes (`ranks`), each scores its share of the examples and the sums are added."""
    if ranks is not None:
        examples = examples[ranks.rank::ranks.world]
    if tokens is None:
        tokens = batch_size * max((len(e["input_ids"]) for e in examples), default=1)
    was_training = model.training
    model.eval()
    total, count, keep, head = 0.0, 0, keeps_logits(model), sliced_head(model)
    share = reads_shared_prefix(model)  # packed rows may hold their common beginning once
    with scoring(model):
        for chunk in token_batches(examples, tokens, pack):
            batch, _ = collate([(e["input_ids"], e["labels"]) for e in chunk], pad_id, device, pack, share)
            n = int((batch["labels"][:, 1:] != -100).sum())
            if n:
                total += scored_loss(model, batch, keep, head).item() * n
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


def _predictions(model, examples: list[dict], tokens: int, pad_id: int, device, pack: bool):
    """(log-probabilities [positions, vocab], next tokens [positions]) of every position that predicts a
    token, batch by batch, always in the same order for the same examples."""
    was_training = model.training
    model.eval()
    try:
        with scoring(model):
            for chunk in token_batches(examples, tokens, pack):
                batch, _ = collate([(e["input_ids"], e["labels"]) for e in chunk], pad_id, device, pack)
                labels = batch.pop("labels")[:, 1:]
                scored = labels != -100
                logits = model(**batch, use_cache=False).logits[:, :-1][scored]
                yield torch.log_softmax(logits.float(), dim=-1), labels[scored]
    finally:
        model.train(was_training)


class ForgettingScore:
    """How far the tuned model's predictions on general text have moved from the base model's.

    cf_score = KL(base ‖ tuned) per token, in nats: what the base model expected, and how much less the
    tuned one does. It cannot go negative, and it does not improve because the retention text resembles
    the reference text: any change of what the model predicts counts, in either direction. cf_pct puts it
    against the base model's own uncertainty (its entropy per token). The general-text loss (general_loss,
    base_general_loss, general_loss_pct) stays as a second figure.

    The base side is computed once, with the adapter switched off, and cached per (base model, reference
    set, length) as the top TOP_K log-probabilities per token: the KL is taken over those tokens plus one
    bucket for all the rest (a coarse-grained KL, never more than the full one and exact where the base's
    mass sits in its top tokens).
    """

    TOP_K = 32

    def __init__(self, model, tokenizer, *, model_path: str, max_len: int, per_language: int,
                 batch_size: int, pad_id: int, device, cache_dir: Path | None, adapter: bool,
                 pack: bool = False, ranks=None):
        self.model, self.batch_size, self.pad_id, self.device = model, batch_size, pad_id, device
        self.pack, self.ranks = pack, ranks
        self.tokens = batch_size * max_len  # a training micro-batch's worth: it fits where training does
        examples = reference_examples(tokenizer, max_len, per_language)
        self.examples = examples[ranks.rank::ranks.world] if ranks is not None else examples
        shard = f"{ranks.rank}-{ranks.world}" if ranks is not None else "0-1"
        weights = str(model.get_input_embeddings().weight.dtype)  # a bf16 base predicts a little differently
        key = hashlib.sha256(json.dumps([model_path, max_len, reference_lines(per_language), shard, self.TOP_K,
                                         weights, "kl-v1"]).encode()).hexdigest()
        cache = Path(cache_dir) / f"cf-base-{key[:24]}.safetensors" if cache_dir else None
        self.pass_s: float | None = None  # the last pass's time: what the next one will cost
        self.tuned_passes = 0
        started = time.perf_counter()
        if cache is not None and cache.is_file():
            self._load(cache)
        else:
            off = model.disable_adapter() if adapter else contextlib.nullcontext()
            with off:  # the base model is this one with the adapter switched off: no second copy
                self._base_pass()
            self.pass_s = time.perf_counter() - started
            if cache is not None:
                self._save(cache)
        self.unreported_s = time.perf_counter() - started  # the base pass counts toward the first score's time
        self.spent_s = self.unreported_s  # all scoring so far

    def _base_pass(self) -> None:
        values, indices, loss, entropy = [], [], 0.0, 0.0
        for logp, targets in _predictions(self.model, self.examples, self.tokens, self.pad_id, self.device, self.pack):
            top = logp.topk(min(self.TOP_K, logp.shape[-1]), dim=-1)
            values.append(top.values.cpu())
            indices.append(top.indices.to(torch.int32).cpu())
            loss -= float(logp.gather(1, targets.unsqueeze(1)).sum())
            entropy -= float((logp.exp() * logp).sum())
        self.top_values, self.top_indices = torch.cat(values), torch.cat(indices)
        self.base_sums = torch.tensor([loss, entropy, float(len(self.top_values))], dtype=torch.float64)
        self._totals()

    def _totals(self) -> None:
        loss, entropy, count = self.base_sums.tolist()
        if self.ranks is not None:  # each process holds its share of the reference text
            loss, entropy, count = self.ranks.sum(loss, entropy, count)
        self.base, self.base_entropy = loss / max(count, 1), entropy / max(count, 1)

    def _save(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file({"values": self.top_values, "indices": self.top_indices, "sums": self.base_sums}, str(partial))
        partial.replace(path)

    def _load(self, path: Path) -> None:
        from safetensors.torch import load_file

        cached = load_file(str(path))
        self.top_values, self.top_indices, self.base_sums = cached["values"], cached["indices"], cached["sums"]
        self._totals()

    def divergence(self) -> tuple[float, float]:
        """(KL(base ‖ tuned) per token, the tuned model's cross-entropy) on the reference text."""
        kl_sum, loss_sum, count, at = 0.0, 0.0, 0, 0
        for logq, targets in _predictions(self.model, self.examples, self.tokens, self.pad_id, self.device, self.pack):
            n = logq.shape[0]
            logp = self.top_values[at:at + n].to(logq.device)
            q_top = logq.gather(1, self.top_indices[at:at + n].to(logq.device).long())
            at += n
            p_rest = (1 - logp.exp().sum(-1)).clamp_min(1e-12)
            q_rest = (1 - q_top.exp().sum(-1)).clamp_min(1e-12)
            kl = (logp.exp() * (logp - q_top)).sum(-1) + p_rest * (p_rest.log() - q_rest.log())
            kl_sum += float(kl.clamp_min(0).sum())
            loss_sum -= float(logq.gather(1, targets.unsqueeze(1)).sum())
            count += n
        if self.ranks is not None:
            kl_sum, loss_sum, count = self.ranks.sum(kl_sum, loss_sum, float(count))
        return kl_sum / max(count, 1), loss_sum / max(count, 1)

    def due(self, training_s: float, share: float) -> bool:
        """Whether to score the trained model now: always the first time (a run at too high a rate forgets
        fastest early, and the forgetting guard must see it), then while all the time spent scoring stays
        within `share` of the time spent training, the last pass's time standing for this one's."""
        return self.tuned_passes == 0 or self.spent_s + self.pass_s <= share * training_s

    def score(self, untrained: bool = False) -> dict:
        """`untrained`: no weight has moved since the start (a fresh adapter adds exactly zero), so the tuned
        model is the base model: no divergence, no second pass. cf_s: the seconds spent."""
        started = time.perf_counter()
        kl, tuned = (0.0, self.base) if untrained else self.divergence()
        spent = time.perf_counter() - started
        if not untrained:
            self.pass_s, self.tuned_passes = spent, self.tuned_passes + 1
        self.spent_s += spent
        seconds, self.unreported_s = spent + self.unreported_s, 0.0
        return {"cf_score": kl, "cf_pct": 100 * kl / max(self.base_entropy, 1e-6), "general_loss": tuned,
                "base_general_loss": self.base, "general_loss_pct": 100 * (tuned - self.base) / self.base,
                "cf_s": round(seconds, 3)}
