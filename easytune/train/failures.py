"""Failures a user can act on, told plainly: out of memory says which setting to change and to what."""

from __future__ import annotations

import torch

from easytune.i18n import UserError

# What the allocators of each backend say when memory runs out (CUDA raises torch.OutOfMemoryError).
OOM_MESSAGES = ("out of memory", "can't allocate memory", "not enough memory", "failed to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in OOM_MESSAGES)


def out_of_memory(plan, device: str) -> UserError:
    """The error for an out-of-memory failure, with the next setting to try: halve the batch and double
    the accumulation (the same effective batch), or shorten the examples, or recompute activations."""
    shorter = max(16, plan.max_seq_len // 2)
    if plan.batch_size > 1:
        smaller = plan.batch_size // 2
        return UserError("train.error.oom_batch", device=device, batch_size=plan.batch_size,
                         max_seq_len=plan.max_seq_len, smaller_batch=smaller,
                         more_accum=plan.grad_accum * plan.batch_size // smaller, shorter_len=shorter)
    key = "train.error.oom_checkpointed" if plan.grad_checkpointing else "train.error.oom_single"
    return UserError(key, device=device, max_seq_len=plan.max_seq_len, shorter_len=shorter)
