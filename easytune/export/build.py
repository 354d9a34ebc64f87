"""Writers of each export format into a folder. The heavy libraries are imported inside the functions.

merged    the LoRA adapter merged into the base weights, saved as safetensors in the base's dtype,
          with the tokenizer and chat template: transformers alone loads it.
adapter   the job's adapter weights, adapter_config.json and tokenizer files: peft applies it on the base.
openvino  OpenVINO IR of the merged model from optimum-intel, weights compressed by nncf, plus the
          tokenizer converted by openvino-tokenizers, so OpenVINO alone runs it end to end.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# What a model or adapter folder may carry into an export. Pickle files (*.bin, *.pt) never travel.
CARRIED_SUFFIXES = {".json", ".safetensors", ".jinja", ".txt", ".model", ".tiktoken"}


def copy_files(source: Path, out: Path, skip: tuple[str, ...] = ("README.md",)) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in CARRIED_SUFFIXES and path.name not in skip:
            shutil.copy2(path, out / path.name)


def write_merged(model_path: str, adapter_path: str | None, out: Path) -> dict:
    """The adapter merged into its base. A full fine-tune is a whole model already: its files are copied."""
    if adapter_path is None:
        copy_files(Path(model_path), out)
        return {"source": "model"}
    import torch
    from peft import PeftModel

    from easytune.models.sources import load_config, load_safe, load_tokenizer

    stored = getattr(load_config(model_path), "dtype", None)
    stored = getattr(torch, stored) if isinstance(stored, str) else stored
    # A fresh copy: merging rewrites the weights in place, and the chat's cached model must stay as it is.
    base = load_safe(model_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_path).merge_and_unload()
    if isinstance(stored, torch.dtype) and stored != torch.float32:
        merged = merged.to(stored)  # merged in fp32, saved at the base's size
    merged.save_pretrained(out, safe_serialization=True)
    load_tokenizer(adapter_path).save_pretrained(out)  # carries the chat template
    return {"source": "merged", "dtype": str(stored or torch.float32).removeprefix("torch.")}


def write_adapter(adapter_path: str, out: Path) -> dict:
    copy_files(Path(adapter_path), out)  # peft's own README is replaced by the model card
    return {"source": "adapter"}


def quantization_settings(hidden_size: int, bits: int) -> dict:
    """nncf weight-compression settings (OVWeightQuantizationConfig arguments).

    INT8: per-channel asymmetric, every linear layer and the embeddings; close enough to fp32 that the
    tiny model's greedy answers are unchanged. INT4: asymmetric groups, ratio 1.0 (every layer that can be
    4-bit is), data-free. Groups of 128 are the usual choice, but on a narrow model (hidden size < 1024)
    one group would span most of a row; 32 keeps the error small (measured on the built-in model:
    next-token agreement 0.985 at 32, 0.982 at 64, 0.976 per-channel). A layer whose width is not a
    multiple of the group ("adjust") gets the largest power-of-two group ≥ 32 that fits, else INT8 —
    the tiny model's down_proj (344 inputs) is one; nncf keeps embeddings and the output layer in INT8.
    """
    if bits == 8:
        return {"bits": 8, "sym": False}
    return {"bits": 4, "sym": False, "group_size": 128 if hidden_size >= 1024 else 32, "ratio": 1.0,
            "group_size_fallback": "adjust"}


def write_openvino(source: Path, out: Path, bits: int) -> dict:
    """OpenVINO IR of the model in `source` (a whole model folder), weights compressed to `bits`."""
    from easytune.models.sources import check_code, load_config, load_tokenizer
    from easytune.openvino_stack import OVModelForCausalLM, OVWeightQuantizationConfig

    settings = quantization_settings(load_config(source).hidden_size, bits)
    model = OVModelForCausalLM.from_pretrained(source, export=True, compile=False, trust_remote_code=check_code(source),
                                               quantization_config=OVWeightQuantizationConfig(**settings))
    model.save_pretrained(out)
    tokenizer = load_tokenizer(source)
    tokenizer.save_pretrained(out)  # for optimum-intel / transformers users
    write_openvino_tokenizer(tokenizer, out)
    return {"source": "openvino", "quantization": settings}


def write_openvino_tokenizer(tokenizer, out: Path) -> None:
    """openvino_tokenizer.xml / openvino_detokenizer.xml: text in, text out, with OpenVINO alone
    (the chat template travels in the tokenizer's runtime info)."""
    from easytune.openvino_stack import convert_tokenizer, ov

    tokenizer.padding_side = "left"  # batched generation pads on the left, as optimum's own exporter sets it
    ov_tokenizer, ov_detokenizer = convert_tokenizer(tokenizer, with_detokenizer=True)
    ov.save_model(ov_tokenizer, out / "openvino_tokenizer.xml")
    ov.save_model(ov_detokenizer, out / "openvino_detokenizer.xml")
