"""Running the two sides of a comparison: the base model and the tuned one. Imports torch.

For a LoRA adapter only one copy of the weights is loaded: the base side is the same model inside
peft's disable_adapter(). A full fine-tune loads its base from job.json's model_path beside it.
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
from easytune.train.evaluate import mean_loss
from easytune.train.sft import DEFAULT_CHAT_TEMPLATE, encode_row

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


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
def side(pair: Pair, which: str):
    """(model, tokenizer) of the 'base' or 'tuned' side, for the duration of the block."""
    with chat._lock:
        if pair.adapter:
            model, tokenizer = _load(pair.base, pair.adapter)
            with model.disable_adapter() if which == "base" else contextlib.nullcontext():
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


def answer_logprobs(model, tokenizer, conversations: list[list[dict]], max_len: int) -> list[float | None]:
    """The log-probability of each conversation's last answer given everything before it (summed over its
    tokens; None where nothing of it fits)."""
    limit = min(max_len, _context_limit(model, tokenizer))
    out = []
    with torch.inference_mode():
        for messages in conversations:
            context = [dict(m, train=False) if m["role"] == "assistant" else m for m in messages[:-1]]
            examples = encode_row(tokenizer, {"messages": [*context, messages[-1]]}, limit)
            if not examples:
                out.append(None)
                continue
            ids = torch.tensor([examples[-1]["input_ids"]], device=model.device)
            labels = torch.tensor([examples[-1]["labels"]], device=model.device)
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            targets = labels[0, 1:]
            scored = targets != -100
            picked = torch.log_softmax(logits[scored], dim=-1).gather(1, targets[scored].unsqueeze(1))
            out.append(float(picked.sum()) if scored.any() else None)
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


def generate(model, tokenizer, prompts: list[list[dict]], budgets: list[int], batch_size: int,
             on_batch=None) -> list[str]:
    """Greedy answers, left-padded batches of similar length; each cut to its own budget. `on_batch(tokens)`
    after each batch, with the sum of its answers' budgets."""
    eos = model.generation_config.eos_token_id
    eos = sorted({*(eos if isinstance(eos, list) else [eos] if eos is not None else []),
                  *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    pad, limit = _pad_id(tokenizer), _context_limit(model, tokenizer)
    encoded = []
    for messages, budget in zip(prompts, budgets):
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        encoded.append(tokenizer(text, add_special_tokens=False)["input_ids"][-max(1, limit - budget):])
    answers = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        ids, mask = chat.left_padded([encoded[i] for i in chunk], pad, model.device)
        width = ids.shape[1]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(budgets[i] for i in chunk),
                                 do_sample=False, pad_token_id=pad, eos_token_id=eos or None)
        for row, i in enumerate(chunk):
            new = out[row, width:width + budgets[i]].tolist()
            cut = next((k for k, token in enumerate(new) if token in eos), len(new))
            answers[i] = tokenizer.decode(new[:cut], skip_special_tokens=True).strip()
        if on_batch:
            on_batch(sum(budgets[i] for i in chunk))
    return answers



def measure(pair: Pair, buckets: list, cfg: dict, progress=None) -> dict:
    """{bucket name: {side: {"loss", "answers"}}} for both sides. One side is loaded at a time.
    `progress(done, total)` as the work goes, counted in answer tokens (a scored row counts as one)."""
    out = {bucket.name: {} for bucket in buckets}
    asked = {bucket.name: [item for item in bucket.items if item.reference is not None] for bucket in buckets}
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
            for bucket in buckets:
                if not bucket.items:
                    continue
                out[bucket.name][side_name] = {
                    "loss": loss(model, tokenizer, [item.row() for item in bucket.items], cfg["batch_size"],
                                 cfg["max_seq_len"]),
                    "answers": generate(model, tokenizer, [item.messages for item in asked[bucket.name]],
                                        budgets[bucket.name], cfg["generate_batch"], on_batch=advance),
                    "probe": fact_probe(model, tokenizer, asked[bucket.name], cfg["max_seq_len"]),
                }
                advance(len(bucket.items))
    return out
