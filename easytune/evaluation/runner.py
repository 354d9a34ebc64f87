"""Running the two sides of a comparison: the base model and the tuned one. Imports torch.

For a LoRA adapter only one copy of the weights is loaded: the base side is the same model inside
peft's disable_adapter(), the tuned side the same with the adapter merged into it while it runs. A full
fine-tune loads its base from job.json's model_path beside it.
While a side runs it holds the chat generation lock: the app's chat shares these cached models, and
must never answer with the adapter switched off.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from easytune import chat
from easytune.evaluation.pair import Pair
from easytune.i18n import UserError
from easytune.train.dpo import sequence_logps
from easytune.train.evaluate import mean_loss
from easytune.train.packing import IGNORE
from easytune.train.sft import DEFAULT_CHAT_TEMPLATE, encode_row

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
# Conversations the fact probe scores together: one at a time, its products were too small to keep two CPU
# cores busy (with the vocabulary projected at answer tokens only, an evaluation's probes on SmolLM2 took
# 33 s instead of 81).
PROBE_BATCH = 8


@lru_cache(maxsize=1)
def _adapter_without_tokenizer(base: str, adapter: str):
    """A third-party adapter that ships no tokenizer: the base model's tokenizer, the adapter on top."""
    from peft import PeftModel

    from easytune.models.sources import load_safe, load_tokenizer

    model = PeftModel.from_pretrained(load_safe(base, dtype=torch.float32), adapter)
    return model.eval(), load_tokenizer(base)


def _load(path: str, adapter: str | None):
    try:
        if adapter and not any((Path(adapter) / name).is_file() for name in TOKENIZER_FILES):
            model, tokenizer = _adapter_without_tokenizer(path, adapter)
        else:
            model, tokenizer = chat.load_model(path, adapter)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:  # missing files, shapes that do not match
        raise UserError("evaluation.error.load", path=adapter or path, detail=str(exc)[:300]) from exc
    if not tokenizer.chat_template:  # the template training used for such models
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return model, tokenizer


@contextlib.contextmanager
def _merged(model):
    """The adapter added into the base weights while the block runs, taken out again after: each adapted
    layer one product instead of three. Measured on SmolLM2-135M (LoRA r16, every linear layer): the same
    greedy answers, 90 of 90, in 10-12 % less time."""
    model.merge_adapter()
    try:
        yield
    finally:
        model.unmerge_adapter()


@contextlib.contextmanager
def side(pair: Pair, which: str):
    """(model, tokenizer) of the 'base' or 'tuned' side, for the duration of the block."""
    with chat._lock:
        if pair.adapter:
            model, tokenizer = _load(pair.base, pair.adapter)
            with model.disable_adapter() if which == "base" else _merged(model):
                yield model, tokenizer
        else:
            yield _load(pair.base if which == "base" else pair.tuned, None)


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _context_limit(model, tokenizer) -> int:
    known = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    known = [n for n in known if isinstance(n, int) and 0 < n < 10_000_000]
    return min(known) if known else 2048


def loss(model, tokenizer, rows: list[dict], batch_size: int, max_len: int) -> float | None:
    """Token-weighted mean cross-entropy on the reference answers (None when nothing is scored)."""
    examples = [e for row in rows for e in encode_row(tokenizer, row, min(max_len, _context_limit(model, tokenizer)))]
    if not examples:
        return None
    return mean_loss(model, examples, batch_size, _pad_id(tokenizer), model.device)


def answer_logprobs(model, tokenizer, conversations: list[list[dict]], max_len: int,
                    batch_size: int = PROBE_BATCH) -> list[float | None]:
    """The log-probability of each conversation's last answer given everything before it (summed over its
    tokens; None where nothing of it fits). Conversations of similar length go through the model together,
    and the vocabulary projection runs only where an answer token is predicted."""
    limit = min(max_len, _context_limit(model, tokenizer))
    encoded = []
    for messages in conversations:
        context = [dict(m, train=False) if m["role"] == "assistant" else m for m in messages[:-1]]
        examples = encode_row(tokenizer, {"messages": [*context, messages[-1]]}, limit)
        last = examples[-1] if examples else None
        encoded.append(last if last and any(label != IGNORE for label in last["labels"][1:]) else None)
    out: list[float | None] = [None] * len(conversations)
    order = sorted((i for i, e in enumerate(encoded) if e), key=lambda i: len(encoded[i]["input_ids"]))
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            sums = sequence_logps(model, [(encoded[i]["input_ids"], encoded[i]["labels"]) for i in chunk],
                                  _pad_id(tokenizer), model.device, pack=False)
            for i, total in zip(chunk, sums.tolist()):
                out[i] = total
    return out


def fact_probe(model, tokenizer, items: list, max_len: int) -> float | None:
    """Contrastive probe, no generation: the share of questions where the model finds the true answer more
    likely than the same answer with its key fact swapped for another from the dataset. A model that
    learned the style but not the facts stays near chance (0.5)."""
    from easytune.evaluation.facts import swapped

    references = [item.reference for item in items if item.reference is not None]
    pairs = []
    for item in items:
        if item.reference is None or item.key:
            continue
        false = swapped(item.reference, [r for r in references if r != item.reference], item.question)
        if false is not None:
            pairs.append((item.messages, item.reference, false))
    if not pairs:
        return None
    conversations = [[*m, {"role": "assistant", "content": answer}] for m, true, false in pairs
                     for answer in (true, false)]
    scores = answer_logprobs(model, tokenizer, conversations, max_len)
    wins = [true > false for true, false in zip(scores[::2], scores[1::2]) if true is not None and false is not None]
    return sum(wins) / len(wins) if wins else None


def answer_budget(tokenizer, reference: str, ratio: float, extra: int, cap: int) -> int:
    """Room for an answer: bounded by the reference's length, so a rambling model costs little."""
    return min(cap, int(len(tokenizer(reference, add_special_tokens=False)["input_ids"]) * ratio) + extra)


class _Made:
    """A stopping criterion that stops nothing: after each step of a batch, `on_tokens(n)` with the number of
    its rows still within their budget, so progress moves while a long batch runs."""

    def __init__(self, limits: list[int], on_tokens):
        self.limits, self.on_tokens, self.steps, self.counted = limits, on_tokens, 0, 0

    def __call__(self, input_ids, scores, **kwargs):
        self.steps += 1
        made = sum(1 for limit in self.limits if limit >= self.steps)
        self.counted += made
        self.on_tokens(made)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def generate(model, tokenizer, prompts: list[list[dict]], budgets: list[int], batch_size: int,
             on_tokens=None) -> list[str]:
    """Greedy answers, in left-padded batches of at most `batch_size` and all about the same size, of similar
    budgets; each row stops at its own budget, and a batch when every row has. `on_tokens(n)` as the work
    goes, n answer tokens at a time, adding up to the sum of the budgets."""
    from transformers import StoppingCriteriaList

    eos = model.generation_config.eos_token_id
    eos = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                  *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    pad, limit = _pad_id(tokenizer), _context_limit(model, tokenizer)
    encoded = []
    for messages, budget in zip(prompts, budgets):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max(1, limit - budget):])
    answers = [""] * len(prompts)
    # a batch takes as many steps as its longest budget, every row computed at each: rows of similar
    # budgets together, and no small batch left at the end to pay for a whole batch's steps
    order = sorted(range(len(prompts)), key=lambda i: (budgets[i], len(encoded[i])))
    size = -(-len(order) // max(1, -(-len(order) // batch_size)))
    for start in range(0, len(order), size):
        chunk = order[start:start + size]
        ids, mask = chat.left_padded([encoded[i] for i in chunk], pad, model.device)
        width, limits = ids.shape[1], [budgets[i] for i in chunk]
        stops = [chat.RowLimits(width, limits)] + ([_Made(limits, on_tokens)] if on_tokens else [])
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(limits), do_sample=False,
                                 pad_token_id=pad, eos_token_id=eos or None,
                                 stopping_criteria=StoppingCriteriaList(stops))
        for row, i in enumerate(chunk):
            new = out[row, width:width + budgets[i]].tolist()
            cut = next((k for k, token in enumerate(new) if token in eos), len(new))
            answers[i] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
        if on_tokens:  # a batch whose answers all ended early: the rest of its budget is done too
            on_tokens(sum(limits) - stops[-1].counted)
    return answers


def measure(pair: Pair, buckets: list, cfg: dict, progress=None) -> dict:
    """{bucket name: {side: {"loss", "answers"}}} for both sides. One side is loaded at a time.
    `progress(done, total)` as the work goes, counted in answer tokens (a scored row counts as one)."""
    out = {bucket.name: {} for bucket in buckets}
    asked = {bucket.name: bucket.asked for bucket in buckets}
    done, total, budgets = 0, 0, {}

    def advance(units: int) -> None:
        nonlocal done
        done += units
        if progress:
            progress(min(done, total), total)

    for side_name in ("base", "tuned"):
        with side(pair, side_name) as (model, tokenizer):
            if not budgets:  # both sides share the tokenizer: the whole run's work is known now
                budgets = {name: [answer_budget(tokenizer, item.reference, cfg["answer"]["ratio"],
                                                cfg["answer"]["extra"], cfg["answer"]["cap"]) for item in items]
                           for name, items in asked.items()}
                total = 2 * sum(sum(budgets[bucket.name]) + len(bucket.items) for bucket in buckets if bucket.items)
            # every bucket's questions in one call: fewer, fuller batches
            filled = [bucket for bucket in buckets if bucket.items]
            answers = iter(generate(model, tokenizer, [item.messages for b in filled for item in asked[b.name]],
                                    [n for b in filled for n in budgets[b.name]], cfg["generate_batch"],
                                    on_tokens=advance))
            for bucket in filled:
                out[bucket.name][side_name] = {
                    "loss": loss(model, tokenizer, [item.row() for item in bucket.items], cfg["batch_size"],
                                 cfg["max_seq_len"]),
                    "answers": [next(answers) for _ in asked[bucket.name]],
                    "probe": fact_probe(model, tokenizer, asked[bucket.name], cfg["max_seq_len"]),
                }
                advance(len(bucket.items))
    return out
