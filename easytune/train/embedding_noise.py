"""Noise on the input embeddings while training (NEFTune: Jain et al., 2023, "NEFTune: Noisy Embeddings
Improve Instruction Finetuning").

Each training forward pass adds uniform noise to the token embeddings, of scale alpha / √(tokens × width) for
a sequence of that many tokens, so a longer sequence gets less noise per token (packed rows are one sequence:
each gets less than it would alone; the strengths measured here were measured so). A model taught a few
questions then cannot tie an answer to their exact words: it has to answer from what the words mean, which
is what a user asking in their own words needs. Scoring (validation, the forgetting score, evaluation,
chat) runs in eval mode and sees the embeddings as they are. A packed row that holds its sequences' common
beginning once (easytune.train.packing, `shared_prefix`) counts as long as its sequences written out: the
same noise as without the sharing.
"""

from __future__ import annotations

import torch
from torch import nn


class Hooks:
    """Hooks removed together."""

    def __init__(self, *handles):
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def add_embedding_noise(model: nn.Module, alpha: float) -> Hooks:
    """Noise of strength `alpha` on `model`'s input embeddings in training mode; returns the hooks' handle."""
    shared = {"tokens": 0}  # tokens the current forward's shared prefix stands for beyond its own

    def count(_module: nn.Module, _args, kwargs: dict) -> None:
        prefix, bounds = kwargs.get("shared_prefix") or 0, kwargs.get("cu_seq_lens_q")
        # bounds: the prefix, then each sequence: the prefix is read by len(bounds) - 2 sequences
        shared["tokens"] = prefix * (len(bounds) - 3) if prefix else 0

    def noisy(module: nn.Module, _inputs, embeddings: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return embeddings
        scale = alpha / ((embeddings.shape[-2] + shared["tokens"]) * embeddings.shape[-1]) ** 0.5
        return embeddings + torch.empty_like(embeddings).uniform_(-scale, scale)

    return Hooks(model.register_forward_pre_hook(count, with_kwargs=True),
                 model.get_input_embeddings().register_forward_hook(noisy))
