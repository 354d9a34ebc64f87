"""Batches of token sequences: padded, or packed end to end with no padding at all.

A packed batch is one row holding every sequence of the batch, with position ids that restart at 0 for
each sequence, the boundaries as cumulative lengths, and no attention mask (the DataCollatorWithFlattening
layout). transformers reads the restarts as sequence boundaries and masks attention block-diagonally;
easytune.train.attention goes further and attends within each sequence only. Either way no sequence
sees another and no compute is spent on padding. The first label of each sequence is -100: the last
token of one sequence must not be scored on predicting the first token of the next.

Either layout comes with `segments`: the number of the sequence each position belongs to (-1 for
padding), so per-sequence sums (DPO's log-probabilities) read the same from both.

A packed batch whose sequences all begin with the same unscored tokens (a chat template's default system
prompt: 24 of SmolLM2's 44 tokens for a short question and answer) can hold that prefix once, every
sequence after it attending to it (`shared_prefix`, read by easytune.train.attention). A prefix reads only
itself, so its hidden states are the same for every sequence, and the gradients that flow back into it
from each sequence add up as they would over its copies: the same loss and gradients, for a fraction of
the compute where rows are short.
"""

from __future__ import annotations

import itertools

import torch

IGNORE = -100


def padded(sequences: list[tuple[list[int], list[int]]], pad_id: int, device) -> tuple[dict, torch.Tensor]:
    """Right-padded to the longest sequence: input_ids, labels, attention_mask of [batch, width]."""
    width = max(len(ids) for ids, _ in sequences)
    ids, labels, mask, segments = [], [], [], []
    for i, (seq_ids, seq_labels) in enumerate(sequences):
        pad = width - len(seq_ids)
        ids.append(seq_ids + [pad_id] * pad)
        labels.append(seq_labels + [IGNORE] * pad)
        mask.append([1] * len(seq_ids) + [0] * pad)
        segments.append([i] * len(seq_ids) + [-1] * pad)
    batch = {"input_ids": torch.tensor(ids, device=device), "labels": torch.tensor(labels, device=device),
             "attention_mask": torch.tensor(mask, device=device)}
    return batch, torch.tensor(segments, device=device)


def shared_prefix(sequences: list[tuple[list[int], list[int]]]) -> int:
    """How many leading tokens every sequence has in common, none of them scored, nor the token after them
    (it would be predicted from the prefix's last position, which only one sequence can follow): 0 for a
    single sequence, or where a sequence is the prefix and nothing more."""
    if len(sequences) < 2:
        return 0
    first_scored = min(next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))
                       for _, labels in sequences)
    limit = min(first_scored - 1, min(len(ids) for ids, _ in sequences) - 1)
    first = sequences[0][0]
    length = 0
    while length < limit and all(ids[length] == first[length] for ids, _ in sequences):
        length += 1
    return length


def packed(sequences: list[tuple[list[int], list[int]]], device,
           share_prefix: bool = False) -> tuple[dict, torch.Tensor]:
    """All sequences in one row of [1, total tokens], positions restarting per sequence; with `share_prefix`,
    their common unscored beginning held once, in front (shared_prefix)."""
    prefix = shared_prefix(sequences) if share_prefix else 0
    # the prefix (nobody's sequence, nothing scored), then each sequence's own tokens
    ids, labels, positions, segments = sequences[0][0][:prefix], [IGNORE] * prefix, list(range(prefix)), [-1] * prefix
    for i, (seq_ids, seq_labels) in enumerate(sequences):
        ids += seq_ids[prefix:]
        labels += [IGNORE] + seq_labels[prefix + 1:]  # never learned unpacked either: nothing precedes it
        positions += range(prefix, len(seq_ids))
        segments += [i] * (len(seq_ids) - prefix)
    # kept on the host: easytune.train.attention reads them in every layer, and reading a GPU tensor
    # would wait for the GPU each time
    lengths = ([prefix] if prefix else []) + [len(seq_ids) - prefix for seq_ids, _ in sequences]
    bounds = torch.tensor([0] + list(itertools.accumulate(lengths)), dtype=torch.int32)
    longest = max(lengths)
    batch = {"input_ids": torch.tensor([ids], device=device), "labels": torch.tensor([labels], device=device),
             "position_ids": torch.tensor([positions], device=device),
             # sequence boundaries, as FlashAttention's varlen kernels and easytune.train.attention read them
             "cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": longest, "max_length_k": longest}
    if prefix:
        batch["shared_prefix"] = prefix  # the first segment: every later one attends to it as well
    return batch, torch.tensor([segments], device=device)


def collate(sequences, pad_id: int, device, pack: bool, share_prefix: bool = False) -> tuple[dict, torch.Tensor]:
    """`share_prefix`: a packed batch holds the sequences' common unscored beginning once (the model must
    attend with easytune.train.attention, which reads it)."""
    return packed(sequences, device, share_prefix) if pack else padded(sequences, pad_id, device)


def padding_share(examples: list[dict], batch_size: int) -> float:
    """Share of a padded run's tokens that would be padding, for batches taken in this order."""
    real = padded_total = 0
    for start in range(0, len(examples), batch_size):
        lengths = [len(ids) for e in examples[start:start + batch_size] for k, ids in e.items() if k.endswith("_ids")]
        real += sum(lengths)
        padded_total += max(lengths) * len(lengths)
    return 1 - real / max(padded_total, 1)


def packing_is_exact(model, device) -> bool:
    """Whether this model honours restarting position ids: two short sequences give the same logits packed
    as alone. A model whose attention ignores them would let packed examples read each other."""
    vocab = model.get_input_embeddings().num_embeddings
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randint(0, vocab, (n,), generator=generator).tolist() for n in (5, 7))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batch, _ = packed([(first, first), (second, second)], device)
            batch.pop("labels")
            together = model(**batch, use_cache=False).logits
            alone = model(input_ids=torch.tensor([second], device=device), use_cache=False).logits
    finally:
        model.train(was_training)
    return bool(torch.allclose(together[0, len(first):].float(), alone[0].float(), atol=1e-3, rtol=1e-3))
