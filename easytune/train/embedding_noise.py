"""Noise on the input embeddings while training (NEFTune: Jain et al., 2023, "NEFTune: Noisy Embeddings
Improve Instruction Finetuning").

Each training forward pass adds uniform noise to the token embeddings, of scale alpha / √(tokens × width) for
a sequence of that many tokens, so a longer sequence gets less noise per token (packed rows are one sequence:
each gets less than it would alone; the strengths measured here were measured so). A model taught a few
questions then cannot tie an answer to their exact words: it has to answer from what the words mean, which
is what a user asking in their own words needs. Scoring (validation, the forgetting score, evaluation,
chat) runs in eval mode and sees the embeddings as they are.
"""

from __future__ import annotations

import torch
from torch import nn


def add_embedding_noise(model: nn.Module, alpha: float):
    """Noise of strength `alpha` on `model`'s input embeddings in training mode; returns the hook's handle."""
    def noisy(module: nn.Module, _inputs, embeddings: torch.Tensor) -> torch.Tensor:
        if not module.training:
            return embeddings
        scale = alpha / (embeddings.shape[-2] * embeddings.shape[-1]) ** 0.5
        return embeddings + torch.empty_like(embeddings).uniform_(-scale, scale)

    return model.get_input_embeddings().register_forward_hook(noisy)
