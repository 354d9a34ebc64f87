"""Preference training (DPO): the model learns to prefer the chosen answer over the rejected one.

loss = -log σ(β · [(log π(chosen) - log π_ref(chosen)) - (log π(rejected) - log π_ref(rejected))])
— the "sigmoid" loss of TRL's DPOTrainer, with TRL's memory-light log-softmax. The reference π_ref is
the model before training; its log-probabilities are computed once, before the first step (for LoRA
with the adapter switched off, for a full fine-tune before any weight moves), so no second copy of the
model is ever held. The worker's own loop, checkpoints and events drive the training, as for SFT.

β · (log π - log π_ref) is an answer's "reward"; the chosen answer's reward minus the rejected one's is
the margin, which rises from 0 as the model learns the preferences.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from easytune.train.loss import keeps_logits, scored_positions
from easytune.train.packing import IGNORE, collate


def encode_preference(tokenizer, row: dict, max_len: int) -> dict | None:
    """Token ids of prompt + chosen and prompt + rejected, labels on the answers only; None when no
    answer token fits. A prompt too long for both answers loses its beginning, never the answers."""
    messages = row["messages"]
    prompt_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    answers = []
    for answer in (row["chosen"], row["rejected"]):
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(prompt_text):
            raise ValueError("chat template is not incremental")
        answers.append(tokenizer(full[len(prompt_text):], add_special_tokens=False)["input_ids"])
    longest = max(len(a) for a in answers)
    if len(prompt) + longest > max_len:
        prompt = prompt[-max(max_len // 2, max_len - longest):]
    example = {}
    for name, answer in zip(("chosen", "rejected"), answers):
        ids = (prompt + answer)[:max_len]
        labels = ([IGNORE] * len(prompt) + answer)[:max_len]
        if all(label == IGNORE for label in labels[1:]):
            return None
        example[f"{name}_ids"], example[f"{name}_labels"] = ids, labels
    return example


def target_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The log-probability of each target token, one sequence at a time: a log-softmax of the whole batch at
    once would hold a second copy of its logits."""
    return torch.stack([row.log_softmax(-1).gather(-1, wanted.unsqueeze(-1)).squeeze(-1)
                        for row, wanted in zip(logits, targets)])


def sequence_logps(model, sequences, pad_id: int, device, pack: bool) -> torch.Tensor:
    """Summed log-probability of each sequence's labelled tokens, one forward pass for all of them; the
    vocabulary projection only where a labelled token is predicted (easytune.train.loss)."""
    batch, segments = collate(sequences, pad_id, device, pack)
    targets = batch.pop("labels")[:, 1:]  # position p predicts the token at p + 1
    positions = scored_positions(targets)
    if keeps_logits(model):
        logits = model(**batch, use_cache=False, logits_to_keep=positions).logits
    else:
        logits = model(**batch, use_cache=False).logits[:, positions]
    targets, segments = targets[:, positions], segments[:, 1:][:, positions]
    token_logps = target_logps(logits, targets.clamp(min=0))
    scored = targets != IGNORE
    sums = torch.zeros(len(sequences), device=device, dtype=token_logps.dtype)
    return sums.index_add(0, segments[scored], token_logps[scored])


def pair_logps(model, pairs: list[dict], pad_id: int, device, pack: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) log-probabilities of a batch of pairs: chosen first, rejected after, one batch."""
    sequences = [(p["chosen_ids"], p["chosen_labels"]) for p in pairs]
    sequences += [(p["rejected_ids"], p["rejected_labels"]) for p in pairs]
    logps = sequence_logps(model, sequences, pad_id, device, pack)
    return logps[:len(pairs)], logps[len(pairs):]


def dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta: float) -> tuple[torch.Tensor, dict]:
    """Mean DPO loss of a batch, and its reward margin and accuracy (share of pairs ranked right)."""
    chosen_rewards = beta * (chosen - ref_chosen)
    rejected_rewards = beta * (rejected - ref_rejected)
    margin = chosen_rewards - rejected_rewards
    loss = -F.logsigmoid(margin).mean()
    return loss, {"reward_margin": margin.mean().item(), "reward_accuracy": (margin > 0).float().mean().item()}


def references(pairs: list[dict], device) -> tuple[torch.Tensor, torch.Tensor]:
    ref = torch.tensor([p["ref"] for p in pairs], device=device, dtype=torch.float32)
    return ref[:, 0], ref[:, 1]


def reference_scores(model, items: list[dict], batch_size: int, score, adapter: bool, ranks=None) -> list[tuple]:
    """Two summed log-probabilities per item (`score(chunk)` gives two tensors) from the model as it is before
    training: the adapter switched off, nothing differentiated, each process scoring its share."""
    scores = torch.zeros(len(items), 2, dtype=torch.float64)
    mine = range(len(items))[ranks.rank::ranks.world] if ranks else range(len(items))
    was_training = model.training
    model.eval()
    off = model.disable_adapter() if adapter else contextlib.nullcontext()
    with torch.no_grad(), off:
        for start in range(0, len(mine), batch_size):
            index = list(mine[start:start + batch_size])
            first, second = score([items[i] for i in index])
            scores[index, 0], scores[index, 1] = first.double().cpu(), second.double().cpu()
    model.train(was_training)
    if ranks is not None:
        scores = ranks.sum_tensor(scores)
    return [tuple(pair) for pair in scores.tolist()]


def add_reference_logps(model, pairs: list[dict], batch_size: int, pad_id: int, device, pack: bool,
                        adapter: bool, ranks=None) -> None:
    """Score every pair once with the reference model and keep the result in the pair (`ref`)."""
    scored = reference_scores(model, pairs, batch_size, lambda chunk: pair_logps(model, chunk, pad_id, device, pack),
                              adapter, ranks)
    for pair, ref in zip(pairs, scored):
        pair["ref"] = ref


def evaluate_pairs(model, pairs: list[dict], batch_size: int, pad_id: int, device, pack: bool, beta: float,
                   ranks=None) -> dict:
    """Mean DPO loss, reward margin and accuracy on held-out pairs."""
    mine = pairs[ranks.rank::ranks.world] if ranks else pairs
    was_training = model.training
    model.eval()
    loss = margin = right = 0.0
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            chosen, rejected = pair_logps(model, chunk, pad_id, device, pack)
            ref_chosen, ref_rejected = references(chunk, device)
            batch_loss, stats = dpo_loss(chosen.float(), rejected.float(), ref_chosen, ref_rejected, beta)
            loss += batch_loss.item() * len(chunk)
            margin += stats["reward_margin"] * len(chunk)
            right += stats["reward_accuracy"] * len(chunk)
    model.train(was_training)
    count = len(mine)
    if ranks is not None:
        loss, margin, right, count = ranks.sum(loss, margin, right, count)
    count = max(count, 1)
    return {"val_loss": loss / count, "reward_margin": margin / count, "reward_accuracy": right / count}
