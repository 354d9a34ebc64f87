"""What each objective brings to the one training loop: how a row becomes examples, what is prepared before the
first step, how a micro-batch becomes a loss, and what is scored on held-out rows. The loop (worker.py) names no
objective; a new one is a recipe here and its entry in RECIPES.

    sft       supervised answers: the loss on the assistant's tokens only
    pretrain  raw text (or whole conversations): the loss on every token
    dpo       preference pairs: the chosen answer made likelier than the rejected one, against the base's scores
    kto       single answers labelled good or bad, against the base's scores of each and of a mismatched answer
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from easytune.train import dpo, kto
from easytune.train.attention import reads_shared_prefix
from easytune.train.evaluate import mean_loss
from easytune.train.loss import keeps_logits, scored_loss, sliced_head
from easytune.train.packing import collate
from easytune.train.sft import encode_row


@dataclass(frozen=True)
class Batching:
    """How examples become tensors on the device, the same for every recipe."""
    pad_id: int
    device: torch.device
    pack: bool
    batch_size: int
    max_len: int
    beta: float  # how far a preference objective may move from the base (the plan's dpo_beta)
    adapter: bool  # the base's scores come from the same model with its adapter switched off
    ranks: object


class Supervised:
    """sft and pretrain: the mean cross-entropy of the tokens to be learned."""
    no_rows = "train.error.no_rows"
    retention = True  # general text can be mixed in: it has tokens to learn like the rows

    def __init__(self, objective: str):
        self.objective = objective
        self._keep_logits = None
        self._head = None  # the vocabulary projection, applied a slice of positions at a time (train/loss.py)
        self._share_prefix = False  # packed rows hold their common beginning once (train/packing.py)

    def encode(self, tokenizer, row: dict, max_len: int) -> list[dict]:
        return encode_row(tokenizer, row, max_len, self.objective)

    def prepare(self, model, splits: list[list[dict]], batching: Batching, events) -> None:
        self._keep_logits = keeps_logits(model)  # (DDP, when it wraps the model later, passes the argument on)
        self._head = sliced_head(model)
        self._share_prefix = reads_shared_prefix(model)

    def loss(self, model, chunk: list[dict], batching: Batching) -> tuple[torch.Tensor, int, dict]:
        batch, _ = collate([(e["input_ids"], e["labels"]) for e in chunk], batching.pad_id, batching.device,
                           batching.pack, self._share_prefix)
        # the tokens the rows hold, a shared prefix counted in each: what the plan and the speed figures count
        return scored_loss(model, batch, self._keep_logits, self._head), sum(len(e["input_ids"]) for e in chunk), {}

    def evaluate(self, model, val: list[dict], batching: Batching) -> dict:
        return {"val_loss": mean_loss(model, val, batching.batch_size, batching.pad_id, batching.device,
                                      batching.pack, batching.ranks)}


class Preference:
    """dpo: each pair's chosen answer made likelier than its rejected one, measured against the base's scores."""
    no_rows = "train.error.no_pairs"
    retention = False  # general text has no good or bad answer

    def encode(self, tokenizer, row: dict, max_len: int) -> list[dict]:
        encoded = dpo.encode_preference(tokenizer, row, max_len)
        return [encoded] if encoded is not None else []

    def prepare(self, model, splits: list[list[dict]], batching: Batching, events) -> None:
        started = time.perf_counter()  # the reference model's scores, before any weight moves
        for pairs in splits:
            dpo.add_reference_logps(model, pairs, batching.batch_size, batching.pad_id, batching.device,
                                    batching.pack, adapter=batching.adapter, ranks=batching.ranks)
        events.log("train.log.dpo_reference", pairs=sum(map(len, splits)), beta=batching.beta,
                   seconds=round(time.perf_counter() - started, 1))

    def loss(self, model, chunk: list[dict], batching: Batching) -> tuple[torch.Tensor, int, dict]:
        chosen, rejected = dpo.pair_logps(model, chunk, batching.pad_id, batching.device, batching.pack)
        ref_chosen, ref_rejected = dpo.references(chunk, batching.device)
        loss, stats = dpo.dpo_loss(chosen.float(), rejected.float(), ref_chosen, ref_rejected, batching.beta)
        return loss, sum(len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in chunk), stats

    def evaluate(self, model, val: list[dict], batching: Batching) -> dict:
        return dpo.evaluate_pairs(model, val, batching.batch_size, batching.pad_id, batching.device, batching.pack,
                                  batching.beta, batching.ranks)


class Labelled:
    """kto: good answers made likelier and bad ones less likely, each against the base's score of it and of
    an answer to another prompt (the mismatched one, which estimates how far the model moved overall)."""
    no_rows = "train.error.no_rows"
    retention = False

    def encode(self, tokenizer, row: dict, max_len: int) -> list[dict]:
        encoded = kto.encode_labelled(tokenizer, row, max_len)
        return [encoded] if encoded is not None else []

    def prepare(self, model, splits: list[list[dict]], batching: Batching, events) -> None:
        started = time.perf_counter()
        for labelled in splits:
            if labelled:
                kto.pair_with_next(labelled)
                kto.add_reference_logps(model, labelled, batching.batch_size, batching.pad_id, batching.device,
                                        batching.pack, batching.max_len, adapter=batching.adapter,
                                        ranks=batching.ranks)
        events.log("train.log.kto_reference", answers=sum(map(len, splits)), beta=batching.beta,
                   good=sum(e["desirable"][0] for e in splits[0]), seconds=round(time.perf_counter() - started, 1))

    def loss(self, model, chunk: list[dict], batching: Batching) -> tuple[torch.Tensor, int, dict]:
        answer, mismatched = kto.logps(model, chunk, batching.pad_id, batching.device, batching.pack,
                                       batching.max_len)
        ref, ref_kl, desirable = kto.references(chunk, batching.device)
        loss, stats = kto.kto_loss(answer.float(), mismatched.float(), ref, ref_kl, desirable, batching.beta)
        return loss, sum(2 * len(e["prompt_ids"]) + len(e["answer_ids"]) + len(e["kl_answer_ids"])
                         for e in chunk), stats

    def evaluate(self, model, val: list[dict], batching: Batching) -> dict:
        return kto.evaluate_labelled(model, val, batching.batch_size, batching.pad_id, batching.device,
                                     batching.pack, batching.beta, batching.max_len, batching.ranks)


RECIPES = {"sft": lambda: Supervised("sft"), "pretrain": lambda: Supervised("pretrain"), "dpo": Preference,
           "kto": Labelled}


def recipe_for(objective: str):
    return RECIPES[objective]()
