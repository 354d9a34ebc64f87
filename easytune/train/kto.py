"""Preference training from answers labelled good or bad (KTO, Ethayarajh et al. 2024): what users' 👍 and 👎
give, with no second answer to pair each one with.

The loss is TRL's KTOTrainer's ("kto" loss type). With r = log π(answer) − log π_ref(answer) an answer's
log-ratio and z a reference point — the policy's KL from the reference on mismatched prompt–answer pairs,
clamped at 0 and not differentiated —
    desirable answers:    1 − σ(β · (r − z))
    undesirable answers:  1 − σ(β · (z − r))
averaged over the batch. The mismatched pairs are each prompt with the next row's answer (TRL shifts by one
within a batch; here the pairing is fixed once over the data, so the reference model scores each pair once).
The reference π_ref is the model before training, scored before the first step with the adapter switched off
(or before any weight moves for a full fine-tune), as for DPO (train/dpo.py).

β · r is an answer's "reward": it rises for good answers and falls for bad ones as the model learns; the
difference of their means is the margin the monitor shows.
"""

from __future__ import annotations

import torch

from easytune.train.dpo import reference_scores, sequence_logps
from easytune.train.packing import IGNORE
from easytune.train.sft import encode_conversation


def encode_labelled(tokenizer, row: dict, max_len: int) -> dict | None:
    """The prompt's and the last answer's token ids, and whether the answer is desirable; None when no answer
    token fits. Earlier assistant turns are context, not what is judged."""
    messages = row["messages"]
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    judged = [dict(m, train=i == last) for i, m in enumerate(messages) if i <= last]
    example = encode_conversation(tokenizer, {"messages": judged, "line": row.get("line")}, max_len)
    if example is None:
        return None
    start = next(i for i, label in enumerate(example["labels"]) if label != IGNORE)
    return {"prompt_ids": example["input_ids"][:start], "answer_ids": example["input_ids"][start:],
            "desirable": [int(bool(row["label"]))]}


def pair_with_next(examples: list[dict]) -> None:
    """Give each example the next one's answer as its mismatched answer (for the reference point z)."""
    for i, example in enumerate(examples):
        example["kl_answer_ids"] = examples[(i + 1) % len(examples)]["answer_ids"]


def _sequences(examples: list[dict], max_len: int) -> list[tuple[list[int], list[int]]]:
    """The matched sequences, then the mismatched ones: (ids, labels) with labels on the answer only."""
    out = []
    for answer in ("answer_ids", "kl_answer_ids"):
        for e in examples:
            ids = (e["prompt_ids"] + e[answer])[:max_len]
            out.append((ids, ([IGNORE] * len(e["prompt_ids"]) + e[answer])[:max_len]))
    return out


def logps(model, examples: list[dict], pad_id: int, device, pack: bool, max_len: int):
    """(answer, mismatched answer) summed log-probabilities of a batch, in one forward pass."""
    both = sequence_logps(model, _sequences(examples, max_len), pad_id, device, pack)
    return both[:len(examples)], both[len(examples):]


def kto_loss(policy, policy_kl, ref, ref_kl, desirable, beta: float) -> tuple[torch.Tensor, dict]:
    """Mean KTO loss of a batch; the mean reward of its good and its bad answers, and the reference point."""
    z = (policy_kl - ref_kl).mean().clamp(min=0).detach()
    ratio = policy - ref
    good = desirable.bool()
    losses = torch.where(good, 1 - torch.sigmoid(beta * (ratio - z)), 1 - torch.sigmoid(beta * (z - ratio)))
    rewards = beta * ratio.detach()
    stats = {"kl": z.item()}
    if good.any() and (~good).any():  # the gap the monitor charts, as DPO's margin
        stats["reward_margin"] = rewards[good].mean().item() - rewards[~good].mean().item()
    return losses.mean(), stats


def references(examples: list[dict], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ref = torch.tensor([e["ref"] for e in examples], device=device, dtype=torch.float32)
    desirable = torch.tensor([e["desirable"][0] for e in examples], device=device)
    return ref[:, 0], ref[:, 1], desirable


def add_reference_logps(model, examples: list[dict], batch_size: int, pad_id: int, device, pack: bool,
                        max_len: int, adapter: bool, ranks=None) -> None:
    """Score every example and its mismatched answer once with the reference model (kept as `ref`)."""
    scored = reference_scores(model, examples, batch_size,
                              lambda chunk: logps(model, chunk, pad_id, device, pack, max_len), adapter, ranks)
    for example, ref in zip(examples, scored):
        example["ref"] = ref


def evaluate_labelled(model, examples: list[dict], batch_size: int, pad_id: int, device, pack: bool, beta: float,
                      max_len: int, ranks=None) -> dict:
    """Mean KTO loss on held-out labelled answers, and the margin between good and bad answers' rewards."""
    mine = examples[ranks.rank::ranks.world] if ranks else examples
    was_training = model.training
    model.eval()
    loss = good_sum = bad_sum = 0.0
    good_n = bad_n = 0
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            answer, mismatched = logps(model, chunk, pad_id, device, pack, max_len)
            ref, ref_kl, desirable = references(chunk, device)
            batch_loss, _ = kto_loss(answer.float(), mismatched.float(), ref, ref_kl, desirable, beta)
            loss += batch_loss.item() * len(chunk)
            rewards = beta * (answer.float() - ref)
            good_sum += rewards[desirable.bool()].sum().item()
            bad_sum += rewards[~desirable.bool()].sum().item()
            good_n += int(desirable.sum().item())
            bad_n += len(chunk) - int(desirable.sum().item())
    model.train(was_training)
    count = len(mine)
    if ranks is not None:
        loss, good_sum, bad_sum, good_n, bad_n, count = ranks.sum(loss, good_sum, bad_sum, good_n, bad_n, count)
    result = {"val_loss": loss / max(count, 1)}
    if good_n and bad_n:
        result["reward_margin"] = good_sum / good_n - bad_sum / bad_n
    return result
