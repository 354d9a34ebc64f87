"""Does the exported artefact answer like the trained model? Checked before an export is offered.

The export is loaded the way a user would load it (transformers for merged, peft on the base for the
adapter, optimum-intel's OVModelForCausalLM for OpenVINO, transformers' GGUF loader for GGUF — and
llama.cpp itself where llama-cpp-python is installed, as Ollama and LM Studio read the file) and asked
questions from the job's own training data, greedily, beside the PyTorch job model
(easytune.chat.load_model); answers.py asks and measures (identical answers, next-token agreement).
The agreement each format must reach is its record's in formats.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from easytune.export.answers import TorchAnswerer, compare, llama_cpp_check, reference_answers
from easytune.export.formats import FORMATS
from easytune.export.gguf_read import gguf_file, gguf_file_type, load_gguf

PROMPTS = 3
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


def transformers_gguf_tokenizer_check(folder: Path, ref_tokenizer, texts: list[str]) -> bool | None:
    """Does transformers' own GGUF tokenizer reader encode the chat prompts as the original does?
    None where it cannot read the file's tokenizer. Reported, not required (see gguf_read.load_gguf_file)."""
    from transformers import AutoTokenizer

    path = gguf_file(folder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception:  # noqa: BLE001 - its reader's limits are not the export's fault
        return None
    encode = lambda tok, text: tok(text, add_special_tokens=False)["input_ids"]
    return all(encode(tokenizer, text) == encode(ref_tokenizer, text) for text in texts)


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
