"""Does the exported artefact answer like the trained model? Checked before an export is offered.

The export is loaded the way a user would load it (transformers for merged, peft on the base for the
adapter, optimum-intel's OVModelForCausalLM for OpenVINO, transformers' GGUF loader for GGUF — and
llama.cpp itself where llama-cpp-python is installed, as Ollama and LM Studio read the file) and asked
questions from the job's own training data, greedily, beside the PyTorch job model
(easytune.chat.load_model). Two measures:
- identical answers: the greedy token sequences are equal;
- next-token agreement: the export reads the job model's answer and predicts each next token; the
  share it gets right. Unlike comparing two free runs, one early flip does not count every later token.
The agreement each format must reach is its record's in formats.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from easytune.export.formats import FORMATS

PROMPTS = 3
MAX_NEW_TOKENS = 64
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

    check = FORMATS[fmt].check
    if check == "gguf":
        return load_gguf(folder)
    tokenizer = load_tokenizer(folder)
    if check == "transformers":
        return load_safe(folder, dtype=torch.float32).eval(), tokenizer
    if check == "peft":
        from peft import PeftModel

        return PeftModel.from_pretrained(load_safe(model_path, dtype=torch.float32), folder).eval(), tokenizer
    from easytune.openvino_stack import OVModelForCausalLM

    return OVModelForCausalLM.from_pretrained(folder, ov_config=dict(OV_CONFIG),
                                              trust_remote_code=check_code(folder)), tokenizer


def gguf_file(folder: Path) -> Path:
    """The export's .gguf (a hidden one is a check's scratch file, never the export)."""
    return next(path for path in sorted(Path(folder).glob("*.gguf")) if not path.name.startswith("."))


def load_gguf(folder: Path):
    return load_gguf_file(gguf_file(folder))


def gguf_declared_type(path: Path) -> str:
    """general.type of a GGUF file: "model" (also where it is not written), or "adapter"."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.type")
    return field.contents() if field is not None else "model"


def load_gguf_file(path: Path):
    """(model, tokenizer) of a GGUF file: the weights through transformers' GGUF loader, the tokenizer
    rebuilt from the file's metadata by EasyTune's GGUF reader (easytune.models.gguf_tokenizer, what
    `easytune models add` uses) — transformers' own reader builds a byte-level Llama tokenizer as
    SentencePiece, and cannot read one without a BOS token at all."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.models.gguf_tokenizer import build_tokenizer, read_spec

    tokenizer = build_tokenizer(read_spec(gguf.GGUFReader(str(path))), str(path))
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def gguf_file_type(path: Path) -> str | None:
    """The weight type the file's header declares (general.file_type), read by the gguf package's reader, as
    llama.cpp's name ("F16", "Q8_0", "Q4_K_M")."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return None
    return gguf.LlamaFileType(field.contents()).name.removeprefix("MOSTLY_").removeprefix("ALL_")


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


def verify_export(fmt: str, folder: Path, model_path: str, adapter_path: str | None, train_file: str) -> dict:
    from easytune.chat import load_model
    from easytune.export import llamacpp

    spec = FORMATS[fmt]
    reference, ref_tokenizer = load_model(model_path, adapter_path)
    prompts = training_prompts(train_file)
    asked = reference_answers(reference, ref_tokenizer, prompts)
    if spec.check == "gguf-lora":
        from easytune.export.gguf_lora import verify_gguf_lora

        return verify_gguf_lora(folder, model_path, adapter_path, asked, ref_tokenizer, spec.min_agreement)
    model, tokenizer = load_export(fmt, folder, model_path)
    result = compare(asked, ref_tokenizer, TorchAnswerer(model, tokenizer), spec.min_agreement)
    rows = result["prompts"]
    if spec.check == "openvino":
        texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        checked = openvino_tokenizer_check(folder, tokenizer, texts, [row["answer_ids"] for row in rows])
        result["openvino"] = {"inference_precision": OV_CONFIG["INFERENCE_PRECISION_HINT"], **checked}
        result["passed"] = result["passed"] and checked["tokenizer_matches"]
    if spec.check == "gguf":
        texts = [ref_tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
        result["gguf"] = {"file": gguf_file(folder).name,
                          "chat_template_matches": texts == [tokenizer.apply_chat_template(
                              m, add_generation_prompt=True, tokenize=False) for m in prompts],
                          "transformers_tokenizer_matches": transformers_gguf_tokenizer_check(folder, ref_tokenizer,
                                                                                              texts),
                          "file_type_matches": gguf_file_type(gguf_file(folder)) == spec.gguf_type}
        result["passed"] = (result["passed"] and result["gguf"]["chat_template_matches"]
                            and result["gguf"]["file_type_matches"])
        if llamacpp.installed():  # the reader Ollama and LM Studio use: it must answer alike too
            del model
            result["llama_cpp"] = llama_cpp_check(gguf_file(folder), asked, ref_tokenizer, spec.min_agreement)
            result["passed"] = result["passed"] and result["llama_cpp"]["passed"]
    for row in rows:
        del row["answer_ids"]
    return result
