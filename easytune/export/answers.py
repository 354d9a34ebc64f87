"""The same questions asked of the trained model and of an export, greedily, and the export's answers
judged beside the trained model's. Two measures:
- identical answers: the greedy token sequences are equal;
- next-token agreement: the export reads the job model's answer and predicts each next token; the
  share it gets right. Unlike comparing two free runs, one early flip does not count every later token.
"""

from __future__ import annotations

import time
from pathlib import Path

MAX_NEW_TOKENS = 64


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


class TorchAnswerer:
    """A transformers (or optimum) model and its tokenizer, as the check asks it."""

    def __init__(self, model, tokenizer):
        self.model, self.tokenizer = model, tokenizer

    def encode(self, messages: list[dict]) -> list[int]:
        return prompt_ids(self.tokenizer, messages)

    def greedy(self, ids: list[int], max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[int], float]:
        return greedy(self.model, self.tokenizer, ids, max_new_tokens)

    def agreement(self, ids: list[int], answer: list[int]) -> int:
        return agreement(self.model, ids, answer)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


class LlamaCppAnswerer:
    """A GGUF file loaded by llama.cpp (easytune.export.llamacpp), asked the reference's rendered prompts:
    llama.cpp's own tokenizer encodes them, the reference's tokenizer decodes the answers for the card."""

    def __init__(self, llm, ref_tokenizer):
        self.llm, self.ref_tokenizer = llm, ref_tokenizer

    def encode(self, messages: list[dict]) -> list[int]:
        return self.llm.tokenize(self.ref_tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                                        tokenize=False))

    def greedy(self, ids: list[int], max_new_tokens: int = MAX_NEW_TOKENS) -> tuple[list[int], float]:
        return self.llm.greedy(ids, self.ref_tokenizer.eos_token_id, max_new_tokens)

    def agreement(self, ids: list[int], answer: list[int]) -> int:
        return self.llm.agreement(ids, answer)

    def decode(self, ids: list[int]) -> str:
        return self.ref_tokenizer.decode(ids, skip_special_tokens=True)


def reference_answers(reference, ref_tokenizer, prompts: list[list[dict]]) -> list[dict]:
    """The trained model's greedy answer to each question, asked once for every reader of the export."""
    if prompts:  # warm-up: one-off setup on the first call is not decoding speed
        greedy(reference, ref_tokenizer, prompt_ids(ref_tokenizer, prompts[0]), 1)
    asked = []
    for messages in prompts:
        ids = prompt_ids(ref_tokenizer, messages)
        expected, seconds = greedy(reference, ref_tokenizer, ids)
        asked.append({"messages": messages, "ids": ids, "expected": expected, "seconds": seconds})
    return asked


def compare(asked: list[dict], ref_tokenizer, export, threshold: float) -> dict:
    """The export's answers to the asked questions beside the trained model's, and the verdict."""
    if asked:
        export.greedy(asked[0]["ids"], 1)  # warm-up
    rows, made, seconds, agreed, expected = [], 0, 0.0, 0, 0
    for question in asked:
        ids, reference = question["ids"], question["expected"]
        answer, took = export.greedy(ids)
        hits = export.agreement(ids, reference)
        made, seconds, agreed, expected = made + len(answer), seconds + took, agreed + hits, expected + len(reference)
        rows.append({"question": question["messages"][-1]["content"],
                     "reference": ref_tokenizer.decode(reference, skip_special_tokens=True),
                     "answer": export.decode(answer), "identical": answer == reference,
                     "agreement": round(hits / len(reference), 4) if reference else 1.0,
                     "same_prompt_tokens": export.encode(question["messages"]) == ids, "answer_ids": answer})
    ratio = agreed / expected if expected else 1.0
    ref_seconds = sum(question["seconds"] for question in asked)
    return {"threshold": threshold, "agreement": round(ratio, 4), "identical": sum(r["identical"] for r in rows),
            "total": len(rows), "tokens_per_s": round(made / seconds, 1) if rows else None,
            "reference_tokens_per_s": round(expected / ref_seconds, 1) if rows else None,
            "passed": bool(rows) and ratio >= threshold and all(r["same_prompt_tokens"] for r in rows),
            "prompts": rows}


def llama_cpp_check(model_file: Path, asked: list[dict], ref_tokenizer, threshold: float,
                    lora_file: Path | None = None) -> dict:
    """The GGUF file (and a LoRA adapter on it) read by llama.cpp itself, held to the format's agreement."""
    from easytune.export.llamacpp import LlamaCppModel, version

    llm = LlamaCppModel(model_file, lora_file)
    try:
        checked = compare(asked, ref_tokenizer, LlamaCppAnswerer(llm, ref_tokenizer), threshold)
    finally:
        llm.close()
    for row in checked["prompts"]:
        del row["answer_ids"]
    return {**checked, "version": version()}
