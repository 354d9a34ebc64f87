"""One .gguf file (llama.cpp, Ollama, LM Studio) from a whole model folder, plus an Ollama Modelfile.

    write_gguf(Path("merged"), Path("out"), "gguf-q8_0")  ->  out/model-q8_0.gguf, out/Modelfile

Two families, the ones llama.cpp names `llama` (LlamaForCausalLM: Llama, SmolLM2, the built-in tiny
model) and `qwen2` (Qwen2ForCausalLM: the same blocks with q/k/v biases), and one tokenizer kind,
byte-level BPE (`tokenizer.ggml.model` "gpt2"). Anything else is refused by `check_supported`
before a file is written. Tensor names, the q/k permutation and the metadata keys are llama.cpp's
(convert_hf_to_gguf.py), so llama.cpp, Ollama and transformers' GGUF loader read the file as they
read llama.cpp's own conversions; easytune.models.gguf_import reads it back too.

The file is written one tensor at a time (header first, then each weight converted as it is read
from the safetensors), so a large model never sits in memory twice.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from easytune.i18n import UserError

# Types this module writes itself; the rest are llama.cpp's quantiser's, made from the F16 file it writes.
WRITTEN_TYPES = ("F16", "Q8_0")
# transformers class -> llama.cpp architecture name
ARCHITECTURES = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}
TOKENIZER_KINDS = ("byte-level BPE",)
# HF name inside a block -> llama.cpp's name inside `blk.N.`
BLOCK_TENSORS = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
TOP_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
# A pre-tokenizer name per splitting rule that easytune.models.gguf_tokenizer (and llama.cpp) know;
# the first, GPT-2's, is also the fallback when none encodes like the original.
PRE_CANDIDATES = ("gpt2", "smollm", "llama-bpe", "qwen2")
# Texts the candidate pre-tokenizers must encode exactly as the original tokenizer does.
PRE_PROBES = ("Hello world! It's 2024, isn't it? I'm   fine\n\n  thanks.",
              "价格是 129.50 元，周一至周五 9:00-18:00 营业。",
              "def f(x):\n\treturn x**2  # 12345 apples; don't\r\nÀ la carte — naïve café 😀",
              "<|im_start|>user\nWhat's 3+4?<|im_end|>\n<|im_start|>assistant\n")
# ChatML, the chat layout SmolLM2, Qwen2 and the built-in model share; Ollama renders it with this template.
CHATML_TEMPLATE = ("{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                   "<|im_start|>assistant\n")
CHATML_STOPS = ("<|im_start|>", "<|im_end|>")
# Conversations a translated template must render exactly as the Jinja chat template does.
TEMPLATE_PROBES = (
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "你好！\n有什么可以帮你？"},
     {"role": "user", "content": "Two\nlines"}],
    [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
     {"role": "user", "content": "c"}],
)


def gguf_file_name(qtype: str) -> str:
    return f"model-{qtype.lower()}.gguf"


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def tokenizer_kind(folder: Path) -> str:
    """What the folder's tokenizer.json holds: "byte-level BPE", or a short description of the rest."""
    spec = _read_json(Path(folder) / "tokenizer.json")
    if not spec:
        return "no tokenizer.json"
    model = (spec.get("model") or {}).get("type", "?")
    byte_level = '"ByteLevel"' in json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
    if model == "BPE":
        return "byte-level BPE" if byte_level else "BPE (not byte-level)"
    return model


def check_supported(model_folder: str | Path, tokenizer_folder: str | Path | None = None) -> None:
    """Refuse, before anything is written, a model or tokenizer this writer cannot express faithfully."""
    config = _read_json(Path(model_folder) / "config.json")
    architecture = (config.get("architectures") or ["?"])[0]
    if architecture not in ARCHITECTURES:
        raise UserError("export.error.gguf_architecture", architecture=architecture,
                        supported=", ".join(ARCHITECTURES))
    kind = tokenizer_kind(Path(tokenizer_folder or model_folder))
    if kind not in TOKENIZER_KINDS:
        raise UserError("export.error.gguf_tokenizer", kind=kind, supported=", ".join(TOKENIZER_KINDS))


# ---------------------------------------------------------------------------------------------
# tokenizer


def _vocabulary(tokenizer, size: int) -> tuple[list[str], list[int]]:
    """Every id's token string and llama.cpp token type, padded to the model's vocab size as llama.cpp
    does ("[PAD<id>]", unused) — the embedding matrix has a row for every id."""
    from gguf import TokenType

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for index in range(max(size, len(by_id))):
        if index not in by_id:
            tokens.append(f"[PAD{index}]")
            types.append(TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(TokenType.CONTROL if added[index].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(TokenType.NORMAL)
    return tokens, [int(kind) for kind in types]


def _merges(folder: Path) -> list[str]:
    merges = _read_json(folder / "tokenizer.json")["model"].get("merges") or []
    return [" ".join(merge) if isinstance(merge, list) else merge for merge in merges]


def _token_id(tokenizer, token) -> int | None:
    return None if token is None else tokenizer.convert_tokens_to_ids(str(token))


def _adds_bos(tokenizer) -> bool:
    """Does encoding put the BOS token first? Read from what the tokenizer does, not from a flag."""
    if tokenizer.bos_token_id is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.bos_token_id


def tokenizer_spec(folder: Path, tokenizer, vocab_size: int, pre: str):
    """The tokenizer as easytune.models.gguf_tokenizer (and llama.cpp) read it from GGUF metadata."""
    from easytune.models.gguf_tokenizer import GGUFTokenizerSpec

    tokens, types = _vocabulary(tokenizer, vocab_size)
    eos = _token_id(tokenizer, tokenizer.eos_token)
    return GGUFTokenizerSpec(kind="gpt2", pre=pre, tokens=tokens, token_types=types, merges=_merges(folder),
                             bos_id=_token_id(tokenizer, tokenizer.bos_token), eos_id=eos,
                             unk_id=_token_id(tokenizer, tokenizer.unk_token),
                             pad_id=_token_id(tokenizer, tokenizer.pad_token) if tokenizer.pad_token else eos,
                             add_bos=_adds_bos(tokenizer), chat_template=tokenizer.chat_template)


def choose_pre_tokenizer(folder: Path, tokenizer, vocab_size: int) -> tuple[str, list[str]]:
    """The `tokenizer.ggml.pre` name whose splitting rules, rebuilt the way a GGUF reader rebuilds them,
    encode the probe texts exactly as the original tokenizer does. Compared by the ids they give, since the
    same rules are written several ways in tokenizer.json; where several encode alike (a vocabulary without
    digit merges encodes the same whether digits are split first or not), the one that also splits the
    probes into the same words wins. None encodes alike: GPT-2's rules, with a note."""
    from easytune.models.gguf_tokenizer import build_tokenizer

    def words(backend) -> list[list[str]]:
        split = backend.pre_tokenizer
        return [[piece for piece, _ in split.pre_tokenize_str(text)] if split else [text] for text in PRE_PROBES]

    expected = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in PRE_PROBES]
    expected_words = words(tokenizer.backend_tokenizer)
    best, best_words = None, -1
    for name in PRE_CANDIDATES:
        rebuilt = build_tokenizer(tokenizer_spec(folder, tokenizer, vocab_size, name), "")
        if [rebuilt(text, add_special_tokens=False)["input_ids"] for text in PRE_PROBES] != expected:
            continue
        same_words = sum(a == b for a, b in zip(words(rebuilt.backend_tokenizer), expected_words))
        if same_words > best_words:
            best, best_words = name, same_words
    if best is None:
        return PRE_CANDIDATES[0], ["no known pre-tokenizer encodes like the original: GPT-2's rules written"]
    return best, []


# ---------------------------------------------------------------------------------------------
# weights


def permute_for_rope(weights, heads: int):
    """llama.cpp's q/k row order for Llama: each head's rotary halves interleaved (transformers'
    GGUF loader and llama.cpp's own converter undo / do exactly this)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def gguf_name(hf_name: str) -> str | None:
    stem, _, kind = hf_name.rpartition(".")
    if stem in TOP_TENSORS:
        return f"{TOP_TENSORS[stem]}.{kind}"
    match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", stem)
    if match and match.group(2) in BLOCK_TENSORS:
        return f"blk.{match.group(1)}.{BLOCK_TENSORS[match.group(2)]}.{kind}"
    return None


def storage_type(shape: tuple, qtype: str):
    """llama.cpp's rule: 1-D tensors (norms, biases) stay F32; Q8_0 needs rows in whole blocks of 32,
    else the tensor is F16 (the tiny model's ffn_down, 344 wide, is one)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    if len(shape) < 2:
        return GGMLQuantizationType.F32
    if qtype == "Q8_0" and shape[-1] % GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0][0] == 0:
        return GGMLQuantizationType.Q8_0
    return GGMLQuantizationType.F16


def _weights(folder: Path):
    """(name, float32 numpy array) for every tensor of the folder's safetensors, one at a time."""
    import torch
    from safetensors import safe_open

    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name).to(torch.float32).numpy()


def _tensor_plan(folder: Path, config: dict, arch: str, qtype: str) -> list[tuple[str, str, object, tuple]]:
    """(hf name, gguf name, storage type, shape) in file order; unknown tensors are an error, not dropped."""
    from safetensors import safe_open

    tied = config.get("tie_word_embeddings", False)
    plan = []
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="np") as handle:
            for name in handle.keys():
                shape = tuple(handle.get_slice(name).get_shape())
                if name == "lm_head.weight" and tied:
                    continue  # llama.cpp reads the embeddings again when `output` is absent
                if name.endswith("rotary_emb.inv_freq"):
                    continue
                target = gguf_name(name)
                if target is None:
                    raise ValueError(f"tensor {name} has no place in a GGUF {arch} file")
                plan.append((name, target, storage_type(shape, qtype), shape))
    return plan


def _convert(array, name: str, config: dict, arch: str, gtype):
    import numpy as np
    from gguf import GGMLQuantizationType, quants

    if arch == "llama" and name.endswith(("self_attn.q_proj.weight", "self_attn.k_proj.weight")):
        heads = config["num_attention_heads"] if "q_proj" in name else config["num_key_value_heads"]
        array = permute_for_rope(array, heads)
    if gtype == GGMLQuantizationType.F32:
        return np.ascontiguousarray(array, dtype=np.float32)
    return quants.quantize(np.ascontiguousarray(array), gtype)


def _tensor_info(shape: tuple, gtype) -> tuple[tuple, object, int]:
    """(shape, numpy dtype, bytes) as GGUFWriter.add_tensor_info takes them: a quantised tensor is
    described by its rows of bytes, as gguf.quants.quantize returns it."""
    import math

    import numpy as np
    from gguf import GGML_QUANT_SIZES, quants

    block, size = GGML_QUANT_SIZES[gtype]
    if block == 1:  # F32, F16
        return shape, np.dtype(np.float32 if size == 4 else np.float16), math.prod(shape) * size
    byte_shape = quants.quant_shape_to_byte_shape(shape, gtype)
    return byte_shape, np.dtype(np.uint8), math.prod(byte_shape)


# ---------------------------------------------------------------------------------------------
# metadata


def _rope_theta(config: dict) -> float:
    parameters = config.get("rope_parameters") or {}
    return float(parameters.get("rope_theta") or config.get("rope_theta") or 10000.0)


def _add_metadata(writer, config: dict, arch: str, qtype: str, name: str) -> None:
    from gguf import LlamaFileType

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_name(name)
    writer.add_file_type(int(getattr(LlamaFileType, f"MOSTLY_{qtype}")))
    writer.add_quantization_version(2)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    if arch == "llama":
        writer.add_rope_dimension_count(head_dim)


def _add_tokenizer(writer, spec) -> None:
    writer.add_tokenizer_model(spec.kind)
    writer.add_tokenizer_pre(spec.pre)
    writer.add_token_list(spec.tokens)
    writer.add_token_types(spec.token_types)
    writer.add_token_merges(spec.merges)
    for add, value in ((writer.add_bos_token_id, spec.bos_id), (writer.add_eos_token_id, spec.eos_id),
                       (writer.add_unk_token_id, spec.unk_id), (writer.add_pad_token_id, spec.pad_id)):
        if value is not None:
            add(value)
    writer.add_add_bos_token(spec.add_bos)
    if spec.chat_template:
        writer.add_chat_template(spec.chat_template)


# ---------------------------------------------------------------------------------------------
# Ollama


def _chatml(messages: list[dict], system: str | None) -> str:
    """What CHATML_TEMPLATE renders in Ollama, which puts the Modelfile's SYSTEM first when the
    conversation brings no system message."""
    if system is not None and (not messages or messages[0]["role"] != "system"):
        messages = [{"role": "system", "content": system}, *messages]
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def ollama_template(tokenizer) -> tuple[str, str | None] | None:
    """(TEMPLATE, default SYSTEM or None) for a ChatML chat template, else None. Translated only when
    the probe conversations render to exactly the Jinja template's text."""
    if not tokenizer.chat_template:
        return None

    def render(messages):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    try:
        alone = render(TEMPLATE_PROBES[0])
        default = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>\n<\|im_start\|>user\n", alone, re.S)
        system = default.group(1) if default else None
        if all(render(messages) == _chatml(messages, system) for messages in TEMPLATE_PROBES):
            return CHATML_TEMPLATE, system
    except Exception:  # noqa: BLE001 - a template that cannot render the probes is not translated either
        return None
    return None


def modelfile(file_name: str, translated: tuple[str, str | None] | None, stops: list[str]) -> str:
    lines = [f"FROM ./{file_name}", ""]
    if translated:
        template, system = translated
        lines += [f'TEMPLATE """{template}"""']
        if system is not None:
            lines += [f'SYSTEM """{system}"""']
        lines += [""]
    lines += [f"PARAMETER stop {json.dumps(stop, ensure_ascii=False)}" for stop in stops]
    return "\n".join(lines) + "\n"


def _stops(tokenizer, translated) -> list[str]:
    stops = list(CHATML_STOPS) if translated else []
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(str(tokenizer.eos_token))
    return stops


# ---------------------------------------------------------------------------------------------


def write_gguf_file(source: Path, path: Path, qtype: str, name: str | None = None) -> dict:
    """`source` (a whole model folder: safetensors, config.json, tokenizer) as the GGUF file `path`, weights in
    `qtype` (one of WRITTEN_TYPES). Returns what it chose: architecture, pre-tokenizer, notes."""
    from gguf import GGUFWriter

    from easytune.models.sources import load_tokenizer

    source = Path(source)
    check_supported(source)
    config = _read_json(source / "config.json")
    arch = ARCHITECTURES[config["architectures"][0]]
    tokenizer = load_tokenizer(source)
    pre, notes = choose_pre_tokenizer(source, tokenizer, config["vocab_size"])
    spec = tokenizer_spec(source, tokenizer, config["vocab_size"], pre)
    plan = _tensor_plan(source, config, arch, qtype)

    writer = GGUFWriter(path, arch)
    _add_metadata(writer, config, arch, qtype, name or source.name)
    _add_tokenizer(writer, spec)
    for _, target, gtype, shape in plan:
        # numpy order (rows, columns): the writer lists GGUF's dimensions the other way round itself
        writer.add_tensor_info(target, *_tensor_info(shape, gtype), raw_dtype=gtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    planned = {hf: (target, gtype) for hf, target, gtype, _ in plan}
    for hf, array in _weights(source):
        if hf in planned:  # in plan order: the plan read the same files in the same order
            writer.write_tensor_data(_convert(array, hf, config, arch, planned[hf][1]))
    writer.close()
    return {"architecture": arch, "pre_tokenizer": pre, "notes": notes, "tokenizer": tokenizer}


def tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each storage type the file holds, read back from it."""
    import gguf

    counts: dict[str, int] = {}
    for tensor in gguf.GGUFReader(str(path)).tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + 1
    return counts


def write_gguf(source: Path, out: Path, fmt: str, name: str | None = None) -> dict:
    """`source` (a whole model folder) as one GGUF file of the format `fmt` in `out`, with a Modelfile beside
    it. F16 and Q8_0 are written here; another type is llama.cpp's quantiser's work on the F16 file, which is
    written first and deleted after. Returns what the model card reports."""
    from easytune.export.formats import FORMATS

    source, out = Path(source), Path(out)
    started = time.perf_counter()
    qtype = FORMATS[fmt].gguf_type
    file_name = gguf_file_name(qtype)
    out.mkdir(parents=True, exist_ok=True)
    if qtype in WRITTEN_TYPES:
        written = write_gguf_file(source, out / file_name, qtype, name)
    else:
        from easytune.export import llamacpp

        f16 = out / ".model-f16.gguf"  # hidden: never mistaken for the export's own file
        written = write_gguf_file(source, f16, "F16", name)
        try:
            llamacpp.quantize(f16, out / file_name, qtype)
        finally:
            f16.unlink(missing_ok=True)

    tokenizer = written.pop("tokenizer")
    translated = ollama_template(tokenizer)
    (out / "Modelfile").write_text(modelfile(file_name, translated, _stops(tokenizer, translated)), encoding="utf-8")
    return {"source": "gguf", "gguf": {"file": file_name, "type": qtype, **written,
                                       "tensor_types": tensor_types(out / file_name),
                                       "ollama_template": translated is not None,
                                       "seconds": round(time.perf_counter() - started, 1)}}
