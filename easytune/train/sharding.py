"""A full fine-tune split over the processes (FSDP, the plan's `fsdp`): each process keeps its share of every
weight, of its gradient and of the optimizer's moments, and gathers one layer at a time to compute it.

torch's own FSDP (`fully_shard`) does the splitting; accelerate launches the processes as for DDP. What
changes for the rest of the worker:
- every process must run the same forward passes in the same order (each one gathers its layers from all),
  so evaluations are not shared out: every process scores every held-out row, and the scores are the same;
- checkpoints and the result are written whole, as without FSDP (the main process gathers them), so a
  sharded run resumes, delivers and exports like any other;
- a checkpoint is read by the main process and its shares sent to the others.
"""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard

GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole, on the main process's CPU only
SCATTER = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)  # from the main process's copy
SCATTER_WEIGHTS = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)  # (a tied
# head is not among the trained weights: it is the embedding)


def blocks(model) -> list[torch.nn.Module]:
    """The repeated layers: each becomes one unit gathered and freed as the forward pass goes through it."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    found = [m for m in model.modules() if type(m).__name__ in names]
    if not found:
        raise ValueError(f"{type(model).__name__} names no repeated layer to split by (_no_split_modules)")
    return found


def shard(model) -> int:
    """Split the model over the processes in place; returns this process's share of the weights (elements)."""
    for block in blocks(model):
        fully_shard(block)
    # the rest (embeddings, final norm, head) as one unit, split again after every forward pass: left whole
    # (torch's default for it) it stayed whole after some passes, and the optimizer, which holds the split
    # weights, no longer found them in the model when the state was gathered for a checkpoint
    fully_shard(model, reshard_after_forward=True)
    return sum(p.to_local().numel() for p in model.parameters())


def gathered_weights(model) -> dict[str, torch.Tensor]:
    """Every trained weight whole, on the main process (the others get {}). All processes must call it."""
    full = get_model_state_dict(model, options=GATHER)
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: value.contiguous() for name, value in full.items() if name in trained}


def gathered_optimizer(model, optimizer) -> dict:
    """The optimizer's state whole, keyed by weight name, on the main process. All processes must call it."""
    return get_optimizer_state_dict(model, optimizer, options=GATHER)


def scatter_weights(model, weights: dict[str, torch.Tensor]) -> None:
    """Give every process its share of whole weights the main process read; the others pass {}. All processes
    must call it."""
    set_model_state_dict(model, weights, options=SCATTER_WEIGHTS)


def scatter_optimizer(model, optimizer, state: dict) -> None:
    """The same for the optimizer's state."""
    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=SCATTER)


def save_whole(model, weights: dict[str, torch.Tensor], out) -> None:
    """Write the gathered weights as an ordinary model folder (transformers' own save), from a copy of the
    model's structure that holds no memory of its own: the weights are the gathered tensors themselves."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        whole = AutoModelForCausalLM.from_config(model.config)
    whole.load_state_dict(weights, assign=True, strict=False)
    whole.tie_weights()  # a tied head is one tensor, saved once
    whole.generation_config = model.generation_config
    whole.save_pretrained(out, safe_serialization=True)
