"""The next-token loss, with the vocabulary projection computed only where a token is scored.

A supervised row scores its answer, not the question or the chat template around it, yet a plain forward
projects every position onto the whole vocabulary (49k to 150k columns) and takes a softmax there: on a
CPU that projection and its softmax were a quarter of a LoRA step of a 135M model. Here the model is asked
for the logits of the scored positions only (transformers' `logits_to_keep`, the positions shared by the
batch: in a packed batch exactly the scored ones) and the loss is the mean over the scored tokens, as
transformers computes it. Other models (remote code, whose `logits_to_keep` may take a count only) get
the plain forward.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from easytune.train.packing import IGNORE


def keeps_logits(model) -> bool:
    """Whether this model's forward can return the logits of chosen positions only: a transformers model
    whose forward takes `logits_to_keep` (positions as a tensor, in every model transformers ships)."""
    inner = model
    while hasattr(inner, "module") or hasattr(inner, "get_base_model"):  # DDP, then the adapter
        inner = inner.module if hasattr(inner, "module") else inner.get_base_model()
    return (type(inner).__module__.startswith("transformers.")
            and "logits_to_keep" in inspect.signature(inner.forward).parameters)


def scored_loss(model, batch: dict, keep: bool = True) -> torch.Tensor:
    """Mean cross-entropy of the batch's labelled next tokens (`batch` is not changed)."""
    if not keep:
        return model(**batch, use_cache=False).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = batch["labels"][:, 1:]  # position p predicts the token at p + 1
    positions = (targets != IGNORE).any(0).nonzero().squeeze(1)
    if not len(positions):
        return model(**batch, use_cache=False).loss
    logits = model(**inputs, use_cache=False, logits_to_keep=positions).logits
    return F.cross_entropy(logits.float().flatten(0, 1), targets[:, positions].flatten(), ignore_index=IGNORE)
