"""Attention over a packed row that computes each sequence's causal attention on its own.

A packed row (easytune.train.packing) holds several sequences end to end. The stock SDPA path keeps
them apart with a block-diagonal mask over the whole row, which still computes every cross-sequence
score and throws it away: attention then costs (Σ len)² instead of Σ len², and a row of eight
sequences spends most of its attention compute on blocks that are masked out. Here each sequence is
one causal SDPA call on its own slice, bounded by the `cu_seq_lens_q` the packed batch carries (the
same boundaries FlashAttention's varlen kernels read), and no mask is built at all. A row that holds its
sequences' common beginning once (easytune.train.packing, `shared_prefix`) has it as its first segment,
and each later sequence attends to it and then to itself causally.

Batches that are not packed (padded, or one sequence) go through the stock SDPA path.

On a CPU in bf16, short sequences take SDPA's plain (math) kernel: its backward is about twice as fast
as the flash kernel's below ~160 tokens here (one sequence, 9 heads of 64: 80 tokens 0.69 against
1.36 ms forward and backward, 128 tokens 1.19 against 1.99; at 256 flash wins, 3.6 against 4.7).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "easytune_segments"
SHORT = 128  # tokens: at or below, the math kernel (see above)


def kernel_for(query: torch.Tensor, tokens: int):
    """The SDPA kernel choice for sequences of `tokens`: the math kernel for short bf16 ones on a CPU."""
    short = query.device.type == "cpu" and query.dtype == torch.bfloat16 and tokens <= SHORT
    return sdpa_kernel([SDPBackend.MATH]) if short else nullcontext()


def segment_mask(*args, attention_mask=None, **kwargs):
    """No padding (a packed row, or whole sequences): causality is applied per sequence below, so no
    mask is built; padded batches get SDPA's usual mask."""
    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def segment_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """query/key/value: [batch, heads, tokens, head_dim] → ([batch, tokens, heads, head_dim], None)."""
    bounds = kwargs.get("cu_seq_lens_q")
    if bounds is None or query.shape[0] != 1 or attention_mask is not None:
        with kernel_for(query, query.shape[2]):
            return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    edges = bounds.tolist()
    prefix = kwargs.get("shared_prefix") or 0  # the first segment, which every later one reads too
    parts = []
    for start, end in zip(edges, edges[1:]):
        if end <= start:
            continue
        with kernel_for(query, end - start + (prefix if start else 0)):
            if prefix and start:  # the prefix, then this sequence causally
                keys, values = (torch.cat([t[:, :, :prefix], t[:, :, start:end]], dim=2) for t in (key, value))
                mask = torch.ones(end - start, prefix + end - start, dtype=torch.bool,
                                  device=query.device).tril(prefix)
                parts.append(sdpa_attention_forward(module, query[:, :, start:end], keys, values, mask[None, None],
                                                    dropout, scaling, is_causal=False)[0])
            else:
                parts.append(sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end],
                                                    value[:, :, start:end], None, dropout, scaling, is_causal=True)[0])
    return torch.cat(parts, dim=1), None


def reads_shared_prefix(model) -> bool:
    """Whether `model` (inside its adapter and DDP) attends this way, so a packed batch may share a prefix."""
    from easytune.train.loss import inner_model

    return getattr(inner_model(model).config, "_attn_implementation", None) == NAME


def use_segment_attention(model) -> str:
    """Switch a loaded model to segment attention; returns the implementation it had, to restore."""
    AttentionInterface.register(NAME, segment_attention)
    AttentionMaskInterface.register(NAME, segment_mask)
    before = model.config._attn_implementation
    model.set_attn_implementation(NAME)
    return before
