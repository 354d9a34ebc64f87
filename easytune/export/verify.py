"""Does the exported artefact answer like the trained model? Checked before an export is offered.

The export is loaded the way a user would load it (transformers for merged, peft on the base for the
adapter, optimum-intel's OVModelForCausalLM for OpenVINO, transformers' GGUF loader for GGUF) and
asked questions from the job's own training data, greedily, beside the PyTorch job model
(easytune.chat.load_model). Two measures:
- identical answers: the greedy token sequences are equal;
- next-token agreement: the export reads the job model's answer and predicts each next token; the
  share it gets right. Unlike comparing two free runs, one early flip does not count every later token.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

PROMPTS = 3
MAX_NEW_TOKENS = 64
# Smallest next-token agreement an export must reach. Merged and adapter hold the same weights (a merge
# only rounds differently), INT8 moves logits by a fraction of a percent: on the built-in model all three
# answer identically. INT4 moves them enough to flip a close call now and then (0.985 measured on the
# built-in model); 0.8 still rejects a broken export, whose agreement is near zero. GGUF F16 rounds the
# weights to half precision only (the built-in model answers identically); Q8_0 rounds each block of 32
# weights to 8 bits with one scale, about as close as INT8 (identical answers on the built-in model too).
MIN_AGREEMENT = {"merged": 0.98, "adapter": 0.98, "openvino-int8": 0.95, "openvino-int4": 0.80,
                 "gguf-f16": 0.98, "gguf-q8_0": 0.95}
# Checked in f32 so it sees the weights' effect only, on any CPU (where a CPU has bf16 instructions,
# OpenVINO computes in bf16 by default).
OV_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}


def training_prompts(train_file: str, count: int = PROMPTS) -> list[list[dict]]:
    """The first `count` conversations of the training file, up to (not including) the first answer."""
    prompts = []
    with open(train_file, encoding="utf-8") as f:
        for line in f:
            messages = json.loads(line).get("messages") or []
            first_answer = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages))
            asked = messages[:first_answer]
            if any(m.get("role") == "user" for m in asked):
                prompts.append(asked)
            if len(prompts) == count:
                break
    return prompts


def load_export(fmt: str, folder: Path, model_path: str):
    """(model, tokenizer) of an export, loaded as a user would."""
    import torch

    from easytune.models.sources import check_code, load_safe, load_tokenizer

    if fmt.startswith("gguf"):
        return load_gguf(folder)
    tokenizer = load_tokenizer(folder)
    if fmt == "merged":
        return load_safe(folder, dtype=torch.float32).eval(), tokenizer
    if fmt == "adapter":
        from peft import PeftModel

        return PeftModel.from_pretrained(load_safe(model_path, dtype=torch.float32), folder).eval(), tokenizer
    from easytune.openvino_stack import OVModelForCausalLM

    return OVModelForCausalLM.from_pretrained(folder, ov_config=dict(OV_CONFIG),
                                              trust_remote_code=check_code(folder)), tokenizer


def gguf_file(folder: Path) -> Path:
    return next(Path(folder).glob("*.gguf"))


def load_gguf(folder: Path):
    """(model, tokenizer) of a GGUF export: the weights through transformers' GGUF loader, the tokenizer
    rebuilt from the file's metadata by EasyTune's GGUF reader (easytune.models.gguf_tokenizer, what
    `easytune models add` uses) — transformers' own reader builds a byte-level Llama tokenizer as
    SentencePiece, and cannot read one without a BOS token at all."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.models.gguf_tokenizer import build_tokenizer, read_spec

    path = gguf_file(folder)
    tokenizer = build_tokenizer(read_spec(gguf.GGUFReader(str(path))), str(path))
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def transformers_gguf_tokenizer_check(folder: Path, ref_tokenizer, texts: list[str]) -> bool | None:
    """Does transformers' own GGUF tokenizer reader encode the chat prompts as the original does?
    None where it cannot read the file's tokenizer. Reported, not required (see load_gguf)."""
    from transformers import AutoTokenizer

    path = gguf_file(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception:  # noqa: BLE001 - its reader's limits are not the export's fault
        return None
    encode = lambda tok, text: tok(text, add_special_tokens=False)["input_ids"]
    return all(encode(tokenizer, text) == encode(ref_tokenizer, text) for text in texts)


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def greedy(model, tokenizer, ids: list[int], max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[int], float]:
    """(answer token ids, seconds) of a greedy answer."""
    import torch

    inputs = torch.tensor([ids])
    started = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id)
    return out[0, len(ids):].tolist(), time.perf_counter() - started


def agreement(model, ids: list[int], answer: list[int]) -> int:
    """How many tokens of `answer` the model predicts when it reads the answer one token at a time."""
    import torch

    if not answer:
        return 0
    sequence = torch.tensor([ids + answer])
    with torch.no_grad():
        logits = model(input_ids=sequence, attention_mask=torch.ones_like(sequence)).logits
    predicted = logits[0, len(ids) - 1:-1].argmax(-1)
    return int((predicted == torch.tensor(answer)).sum())


def openvino_tokenizer_check(folder: Path, tokenizer, texts: list[str], answers: list[list[int]]) -> dict:
    """The converted tokenizer, run by OpenVINO alone, encodes and decodes as the original does."""
    import numpy as np

    from easytune.openvino_stack import ov  # with the tokenizer operations registered

    core = ov.Core()
    encode = core.compile_model(folder / "openvino_tokenizer.xml")
    decode = core.compile_model(folder / "openvino_detokenizer.xml")
    encodes = all(encode([text])["input_ids"][0].tolist() == tokenizer(text)["input_ids"] for text in texts)
    decodes = all(str(decode(np.array([ids], dtype=np.int64))[0][0]) == tokenizer.decode(ids, skip_special_tokens=True)
                  for ids in answers if ids)
    return {"tokenizer_matches": encodes, "detokenizer_matches": decodes}


def compare(reference, ref_tokenizer, model, tokenizer, messages: list[dict]) -> dict:
    """One question to both models: their answers, and how many answer tokens the export predicts."""
    ids = prompt_ids(ref_tokenizer, messages)
    expected, ref_seconds = greedy(reference, ref_tokenizer, ids)
    answer, seconds = greedy(model, tokenizer, ids)
    agreed = agreement(model, ids, expected)
    return {"question": messages[-1]["content"], "reference": ref_tokenizer.decode(expected, skip_special_tokens=True),
            "answer": tokenizer.decode(answer, skip_special_tokens=True), "identical": answer == expected,
            "agreement": round(agreed / len(expected), 4) if expected else 1.0,
            "same_prompt_tokens": prompt_ids(tokenizer, messages) == ids,
            "counts": {"agreed": agreed, "expected": len(expected), "made": len(answer), "seconds": seconds,
                       "ref_seconds": ref_seconds}, "answer_ids": answer}


def verify_export(fmt: str, folder: Path, model_path: str, adapter_path: str | None, train_file: str) -> dict:
    from easytune.chat import load_model

    reference, ref_tokenizer = load_model(model_path, adapter_path)
    model, tokenizer = load_export(fmt, folder, model_path)
    prompts = training_prompts(train_file)
    if prompts:  # warm-up: one-off setup on the first call is not decoding speed
        ids = prompt_ids(ref_tokenizer, prompts[0])
        greedy(reference, ref_tokenizer, ids, 1)
        greedy(model, tokenizer, ids, 1)
    rows = [compare(reference, ref_tokenizer, model, tokenizer, messages) for messages in prompts]
    total = lambda name: sum(row["counts"][name] for row in rows)
    ratio = total("agreed") / total("expected") if total("expected") else 1.0
    result = {"threshold": MIN_AGREEMENT[fmt], "agreement": round(ratio, 4),
              "identical": sum(row["identical"] for row in rows), "total": len(rows),
              "tokens_per_s": round(total("made") / total("seconds"), 1) if rows else None,
              "reference_tokens_per_s": round(total("expected") / total("ref_seconds"), 1) if rows else None}
    passed = bool(rows) and ratio >= MIN_AGREEMENT[fmt] and all(row["same_prompt_tokens"] for row in rows)
    if fmt.startswith("openvino"):
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        checked = openvino_tokenizer_check(folder, tokenizer, texts, [row["answer_ids"] for row in rows])
        result["openvino"] = {"inference_precision": OV_CONFIG["INFERENCE_PRECISION_HINT"], **checked}
        passed = passed and checked["tokenizer_matches"]
    if fmt.startswith("gguf"):
        texts = [ref_tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        result["gguf"] = {"file": gguf_file(folder).name,
                          "chat_template_matches": texts == [tokenizer.apply_chat_template(
                              m, add_generation_prompt=True, tokenize=False) for m in prompts],
                          "transformers_tokenizer_matches": transformers_gguf_tokenizer_check(folder, ref_tokenizer,
                                                                                              texts)}
        passed = passed and result["gguf"]["chat_template_matches"]
    for row in rows:
        del row["counts"], row["answer_ids"]
    return {**result, "passed": passed, "prompts": rows}
