"""The job's LoRA adapter as one GGUF file in llama.cpp's adapter format, applied on a GGUF of its base:
`llama-cli -m base.gguf --lora adapter-f32.gguf`, or Ollama's `ADAPTER`.

The file holds general.type "adapter", adapter.type "lora", adapter.lora.alpha and the base's
general.architecture (llama.cpp refuses an adapter made for another architecture). Each adapted weight W
(out × in) gets two tensors under W's llama.cpp name: `<name>.lora_a` = A (r × in) and `<name>.lora_b` =
B (out × r), in numpy order, and llama.cpp computes W·x + scale·B·(A·x) with scale = alpha / r — peft's
own scale. For Llama's attn_q and attn_k a GGUF holds W's rows permuted (gguf.permute_for_rope); B's rows
get the same permutation, so B·A lands on the rows it adapted; A, which acts on the input, is unchanged.
Stored in F32: the adapter is small, and the check can then expect exactly the merged weights.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from easytune.export.answers import TorchAnswerer, compare, llama_cpp_check
from easytune.export.gguf import ARCHITECTURES, check_supported, gguf_name, permute_for_rope
from easytune.i18n import UserError

FILE_NAME = "adapter-f32.gguf"
BASE_FOR_CHECK = ".base-f16.gguf"  # hidden, deleted after the check: the base llama.cpp applies it on
# Largest difference allowed between a weight rebuilt from the file (W + scale·B·A) and the merged model's,
# relative to the largest weight: both are sums of the same float32 numbers in another order.
WEIGHT_TOLERANCE = 1e-5


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _pairs(adapter_path: str) -> dict[str, dict]:
    """{HF weight name: {"A": name in the adapter file, "B": …}} of every adapted weight; other tensors
    (a trained bias, embeddings saved whole) under "other"."""
    from safetensors import safe_open

    pairs: dict[str, dict] = {}
    with safe_open(Path(adapter_path) / "adapter_model.safetensors", framework="np") as handle:
        for key in handle.keys():
            stem = key.removeprefix("base_model.model.")
            for side in ("A", "B"):
                if stem.endswith(f".lora_{side}.weight"):
                    weight = stem.removesuffix(f".lora_{side}.weight") + ".weight"
                    pairs.setdefault(weight, {})[side] = key
                    break
            else:
                pairs.setdefault("other", {})[key] = key
    return pairs


def scale_and_alpha(config: dict) -> tuple[float, float]:
    """(peft's scale, the alpha llama.cpp needs for the same scale as alpha / r). rsLoRA scales by
    alpha / √r, which llama.cpp reaches with alpha·√r."""
    r, alpha = config["r"], config["lora_alpha"]
    if config.get("use_rslora"):
        return alpha / math.sqrt(r), alpha * math.sqrt(r)
    return alpha / r, float(alpha)


def check_lora_supported(model_path: str, adapter_path: str) -> None:
    """Refuse, before anything is written, an adapter llama.cpp's format cannot carry faithfully."""
    check_supported(model_path)  # the base's architecture, and its tokenizer for the check's base GGUF
    config = _read_json(Path(adapter_path) / "adapter_config.json")
    problems = [name for name in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "lora_bias")
                if config.get(name)]
    pairs = _pairs(adapter_path)
    problems += [f"extra tensor {key}" for key in pairs.pop("other", {})]
    problems += [f"LoRA on {name}" for name, pair in pairs.items() if gguf_name(name) is None or len(pair) != 2]
    if "lm_head.weight" in pairs and _read_json(Path(model_path) / "config.json").get("tie_word_embeddings"):
        problems.append("LoRA on lm_head, which a GGUF of this base does not hold (tied to the embeddings)")
    if problems:
        raise UserError("export.error.gguf_lora_config", detail=", ".join(problems[:3]))


def lora_tensors(model_path: str, adapter_path: str):
    """(llama.cpp weight name, A, B) in GGUF order — B permuted like its weight — for every adapted weight."""
    import numpy as np
    from safetensors import safe_open

    config = _read_json(Path(model_path) / "config.json")
    arch = ARCHITECTURES[config["architectures"][0]]
    with safe_open(Path(adapter_path) / "adapter_model.safetensors", framework="pt") as handle:
        for weight, pair in sorted(_pairs(adapter_path).items()):
            a, b = (handle.get_tensor(pair[side]).float().numpy() for side in ("A", "B"))
            if arch == "llama" and weight.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
                heads = config["num_attention_heads"] if "q_proj" in weight else config["num_key_value_heads"]
                b = permute_for_rope(b, heads)
            yield gguf_name(weight), np.ascontiguousarray(a), np.ascontiguousarray(b)


def write_gguf_lora(model_path: str, adapter_path: str, out: Path, name: str | None = None) -> dict:
    """The adapter as `out`/adapter-f32.gguf. Returns what the model card reports."""
    from gguf import GGUFType, GGUFWriter, Keys

    started = time.perf_counter()
    config = _read_json(Path(model_path) / "config.json")
    adapter_config = _read_json(Path(adapter_path) / "adapter_config.json")
    arch = ARCHITECTURES[config["architectures"][0]]
    _, alpha = scale_and_alpha(adapter_config)
    out.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(out / FILE_NAME, arch)
    writer.add_type(GGUFType.ADAPTER)
    writer.add_string(Keys.Adapter.TYPE, "lora")
    writer.add_float32(Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(name or Path(adapter_path).parent.name)
    count = 0
    for target, a, b in lora_tensors(model_path, adapter_path):
        writer.add_tensor(f"{target}.lora_a", a)
        writer.add_tensor(f"{target}.lora_b", b)
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"source": "gguf-lora", "gguf_lora": {"file": FILE_NAME, "type": "F32", "architecture": arch,
                                                 "rank": adapter_config["r"], "alpha": alpha, "weights": count,
                                                 "seconds": round(time.perf_counter() - started, 1)}}


# ---------------------------------------------------------------------------------------------
# the check


def read_adapter(path: Path) -> tuple[dict, dict]:
    """(metadata that matters to llama.cpp, {tensor name: array in numpy order}) read back from the file."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    keys = ("general.type", "general.architecture", "adapter.type", "adapter.lora.alpha")
    metadata = {key: reader.fields[key].contents() if key in reader.fields else None for key in keys}
    return metadata, {tensor.name: np.array(tensor.data, dtype=np.float32) for tensor in reader.tensors}


def _gguf_order(weights, hf_name: str, config: dict, arch: str):
    """A weight in the row order a GGUF of the base holds it (what llama.cpp adds B·A to)."""
    if arch == "llama" and hf_name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
        heads = config["num_attention_heads"] if "q_proj" in hf_name else config["num_key_value_heads"]
        return permute_for_rope(weights, heads)
    return weights


def rebuild(model_path: str, adapter_path: str, tensors: dict, alpha: float) -> tuple[dict, float]:
    """W + (alpha / r)·B·A for every adapted weight, from the base's weights in GGUF order and the file's A
    and B, beside peft's merge of the same adapter: ({HF name: rebuilt weight in HF order}, largest
    difference relative to the largest weight)."""
    import numpy as np
    import torch
    from peft import PeftModel

    from easytune.models.sources import load_safe

    config = _read_json(Path(model_path) / "config.json")
    arch = ARCHITECTURES[config["architectures"][0]]
    base = {name: value.numpy() for name, value in load_safe(model_path, dtype=torch.float32).state_dict().items()}
    merged = PeftModel.from_pretrained(load_safe(model_path, dtype=torch.float32), adapter_path).merge_and_unload()
    merged = {name: value.numpy() for name, value in merged.state_dict().items()}
    rebuilt, worst = {}, 0.0
    for hf_name in _pairs(adapter_path):
        target = gguf_name(hf_name)
        a, b = tensors[f"{target}.lora_a"], tensors[f"{target}.lora_b"]
        weight = _gguf_order(base[hf_name], hf_name, config, arch) + (alpha / a.shape[0]) * (b @ a)
        expected = _gguf_order(merged[hf_name], hf_name, config, arch)
        worst = max(worst, float(np.abs(weight - expected).max() / max(1.0, np.abs(expected).max())))
        rows = _gguf_order(np.arange(weight.shape[0]), hf_name, config, arch)  # GGUF row i is HF row rows[i]
        back = np.empty_like(weight)
        back[rows] = weight
        rebuilt[hf_name] = back
    return rebuilt, worst


def verify_gguf_lora(folder: Path, model_path: str, adapter_path: str, asked: list[dict], ref_tokenizer,
                     threshold: float) -> dict:
    """Read the adapter back, rebuild the adapted weights from it and compare them with the merged model's,
    then let the base carrying the rebuilt weights answer the questions; where llama.cpp is installed, it
    also answers them from an F16 GGUF of the base with the adapter applied."""
    import torch

    from easytune.export import llamacpp
    from easytune.export.gguf import write_gguf_file
    from easytune.models.sources import load_safe

    path = folder / FILE_NAME
    config = _read_json(Path(model_path) / "config.json")
    metadata, tensors = read_adapter(path)
    _, alpha = scale_and_alpha(_read_json(Path(adapter_path) / "adapter_config.json"))
    metadata_ok = (metadata["general.type"] == "adapter" and metadata["adapter.type"] == "lora"
                   and metadata["general.architecture"] == ARCHITECTURES[config["architectures"][0]]
                   and math.isclose(metadata["adapter.lora.alpha"], alpha, rel_tol=1e-6))
    rebuilt, worst = rebuild(model_path, adapter_path, tensors, metadata["adapter.lora.alpha"])

    model = load_safe(model_path, dtype=torch.float32)
    state = model.state_dict()
    model.load_state_dict({**state, **{name: torch.from_numpy(value) for name, value in rebuilt.items()}})
    result = compare(asked, ref_tokenizer, TorchAnswerer(model.eval(), ref_tokenizer), threshold)
    for row in result["prompts"]:
        del row["answer_ids"]
    result["gguf_lora"] = {"file": FILE_NAME, "metadata_ok": metadata_ok, "tensors": len(tensors),
                           "max_weight_error": worst, "weights_match": worst <= WEIGHT_TOLERANCE}
    result["passed"] = result["passed"] and metadata_ok and worst <= WEIGHT_TOLERANCE
    if llamacpp.installed():
        base = folder / BASE_FOR_CHECK
        try:
            write_gguf_file(Path(model_path), base, "F16")
            result["llama_cpp"] = llama_cpp_check(base, asked, ref_tokenizer, threshold, lora_file=path)
        finally:
            base.unlink(missing_ok=True)
        result["passed"] = result["passed"] and result["llama_cpp"]["passed"]
    return result
