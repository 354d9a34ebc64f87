"""The next-token loss, with the vocabulary projection computed only where a token is scored, a slice of
positions at a time.

A supervised row scores its answer, not the question or the chat template around it, yet a plain forward
projects every position onto the whole vocabulary (49k to 150k columns) and takes a softmax there: on a
CPU that projection and its softmax were a quarter of a LoRA step of a 135M model. Here the model is asked
for the logits of the scored positions only (transformers' `logits_to_keep`, the positions shared by the
batch: in a packed batch exactly the scored ones) and the loss is the mean over the scored tokens, as
transformers computes it. Other models (remote code, whose `logits_to_keep` may take a count only) get
the plain forward.

Even those logits are large: 333 scored positions of a 49k vocabulary are 64 MB in fp32, made again for
their softmax and its gradient. Memory that large is fresh from the operating system at every step (above
the allocator's reuse threshold, easytune.models.hardware), and on a CPU its page faults cost more than the
arithmetic: a profile of a LoRA step of SmolLM2-135M spent about a third of it filling, copying and
soft-maxing such tensors. So where the logits are the projection and nothing more (PLAIN_HEADS: no
scaling or soft-capping after it), the model hands back its last hidden states instead, and the projection
and its cross-entropy run SLICE positions at a time, each slice recomputed in the backward pass
(activation checkpointing): the same loss and gradients, with at most one slice's logits alive.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from easytune.train.packing import IGNORE

PLAIN_HEADS = {"llama", "mistral", "qwen2", "qwen3"}  # logits = lm_head(hidden): nothing scales them after
SLICE = 128  # positions per projection: 128 × 49k fp32 logits = 25 MB, under the 32 MB reuse threshold


def inner_model(model):
    """The transformers model inside DDP and the adapter."""
    inner = model
    while hasattr(inner, "module") or hasattr(inner, "get_base_model"):  # DDP, then the adapter
        inner = inner.module if hasattr(inner, "module") else inner.get_base_model()
    return inner


def keeps_logits(model) -> bool:
    """Whether this model's forward can return the logits of chosen positions only: a transformers model
    whose forward takes `logits_to_keep` (positions as a tensor, in every model transformers ships)."""
    inner = inner_model(model)
    return (type(inner).__module__.startswith("transformers.")
            and "logits_to_keep" in inspect.signature(inner.forward).parameters)


def sliced_head(model) -> nn.Module | None:
    """The vocabulary projection, where the loss may apply it a slice at a time: a model that keeps logits,
    of a family whose logits are that projection alone, whose weights are not split over processes (FSDP
    gathers a layer's weights only inside its own forward)."""
    from torch.distributed.fsdp import FSDPModule

    inner = inner_model(model)
    if not keeps_logits(model) or getattr(inner.config, "model_type", None) not in PLAIN_HEADS \
            or any(isinstance(m, FSDPModule) for m in (model, inner)):
        return None
    head = inner.get_output_embeddings()
    return head if isinstance(head, nn.Linear) else None


@contextlib.contextmanager
def hidden_states_out(model, head: nn.Module):
    """The model's forward returns its last hidden states where it would return logits."""
    inner = inner_model(model)
    inner.set_output_embeddings(nn.Identity())
    try:
        yield
    finally:
        inner.set_output_embeddings(head)


def _slice_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), targets, ignore_index=IGNORE, reduction="sum")


def scored_positions(targets: torch.Tensor) -> torch.Tensor:
    """The positions whose next token is scored in any row of the batch (`targets`: the labels shifted by one)."""
    return (targets != IGNORE).any(0).nonzero().squeeze(1)


def scored_loss(model, batch: dict, keep: bool = True, head: nn.Module | None = None) -> torch.Tensor:
    """Mean cross-entropy of the batch's labelled next tokens (`batch` is not changed). `head`: the model's
    vocabulary projection (sliced_head), applied a slice of positions at a time."""
    if not keep:
        return model(**batch, use_cache=False).loss
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = batch["labels"][:, 1:]  # position p predicts the token at p + 1
    positions = scored_positions(targets)
    if not len(positions):
        return model(**batch, use_cache=False).loss
    if head is None:
        logits = model(**inputs, use_cache=False, logits_to_keep=positions).logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets[:, positions].flatten(), ignore_index=IGNORE)
    with hidden_states_out(model, head):
        hidden = model(**inputs, use_cache=False, logits_to_keep=positions).logits.flatten(0, 1)
    wanted = targets[:, positions].flatten()
    total = sum(checkpoint(_slice_loss, head, hidden[i:i + SLICE], wanted[i:i + SLICE], use_reentrant=False)
                if torch.is_grad_enabled() else _slice_loss(head, hidden[i:i + SLICE], wanted[i:i + SLICE])
                for i in range(0, len(wanted), SLICE))
    return total / (wanted != IGNORE).sum()
