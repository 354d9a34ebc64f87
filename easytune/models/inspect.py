"""What a model is, read from its files without loading its weights.

The structure is built on PyTorch's meta device (a `torch.device("meta")` context and
`AutoModelForCausalLM.from_config`): every module exists with its shapes, no weight takes memory.
Linear layers (and GPT-2's Conv1D) are grouped by where they sit, not by their names:

- a layer under a submodule whose attribute or class name says attention (self_attn, attention,
  attn, self_attention, ...Attention) is an attention projection; one under an MLP / feed-forward /
  experts submodule is a feed-forward projection; the nearest such ancestor decides;
- inside each attention module, the projection called last in a forward pass (traced on the meta
  device) is the output projection; the others read the block's input (query/key/value, fused or not);
- the output head and the embeddings are never targets; anything else is `other`.

Because several models reuse a leaf name in two places (GPT-2's `c_proj` is both the attention
output and the MLP output), target names are the shortest dotted suffix that names one group only
(`attn.c_proj`, `mlp.c_proj`), which is how PEFT matches `target_modules`.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from easytune.i18n import UserError
from easytune.models.estimate import SCOPES, ModelShape
from easytune.models.sources import check_folder, needs_remote_code, read_config
from easytune.models.stack import import_stack
from easytune.settings import PRESETS_DIR

GROUPS = ("attention", "feed_forward", "other")

ATTENTION_WORDS = {"attn", "attention", "attentions", "selfattention", "self_attention", "self_attn"}
FEED_FORWARD_WORDS = {"mlp", "ffn", "ff", "feedforward", "feed_forward", "moe", "experts", "expert"}
ATTENTION_CLASS = re.compile(r"attention|attn", re.IGNORECASE)
FEED_FORWARD_CLASS = re.compile(r"mlp|feedforward|ffn|moe|expert", re.IGNORECASE)


@dataclass
class ModelInfo:
    path: str | None
    architecture: str
    model_type: str
    num_parameters: int
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    context_length: int | None
    dtype: str | None
    quantization: str | None
    size_on_disk: int
    has_chat_template: bool
    needs_remote_code: bool
    gated_mlp: bool
    qk_norm: bool
    # target names for PEFT, by group: attention, attention_qkv, attention_output, feed_forward, other
    linear_modules: dict = field(default_factory=dict)
    # the linear layers of the first block: [{"name", "group", "role", "in", "out"}]
    first_block: list = field(default_factory=list)
    # tokens the chat template adds around one question and its answer (a default system prompt included);
    # None where the folder has no template or its tokenizer cannot be read
    template_tokens: int | None = None
    # tokens its tokenizer spends per Chinese character (CHINESE_SAMPLE): about 1 or fewer for a model that read
    # Chinese, about 2 where each character falls apart into its UTF-8 bytes; None where it cannot be read
    zh_tokens_per_char: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelInfo:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def shape(self) -> ModelShape:
        """The numbers the memory estimator needs."""
        return ModelShape(
            layers=self.num_layers, hidden=self.hidden_size, intermediate=self.intermediate_size,
            heads=self.num_attention_heads, kv_heads=self.num_key_value_heads, vocab=self.vocab_size,
            head_dim=self.head_dim, tie_embeddings=self.tie_word_embeddings, gated_mlp=self.gated_mlp,
            qk_norm=self.qk_norm, params=self.num_parameters)


# ---------------------------------------------------------------------------------------------
# grouping linear layers by position


def _is_linear(module) -> bool:
    import torch

    if isinstance(module, torch.nn.Linear):
        return True
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover
        Conv1D = ()
    return isinstance(module, Conv1D) if Conv1D else False


def _features(module) -> tuple[int, int]:
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    weight = module.weight  # Conv1D keeps (in, out)
    return int(weight.shape[0]), int(weight.shape[1])


def _words(attr: str) -> set[str]:
    lowered = attr.lower()
    return {lowered, *re.split(r"[_\W\d]+", lowered)} - {""}


def classify(attr: str, module) -> str | None:
    """'attention', 'feed_forward' or None for one submodule, from its attribute and class name."""
    words = _words(attr)
    cls = type(module).__name__
    if words & ATTENTION_WORDS or ATTENTION_CLASS.search(cls):
        return "attention"
    if words & FEED_FORWARD_WORDS or FEED_FORWARD_CLASS.search(cls):
        return "feed_forward"
    return None


def _excluded(model) -> set[int]:
    """ids of the output head and the embeddings, which are never adapted."""
    out = set()
    for getter in ("get_output_embeddings", "get_input_embeddings"):
        try:
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError, TypeError):
            module = None
        if module is not None:
            out.add(id(module))
    return out


def _call_order(model, names: list[str]) -> dict[str, int] | None:
    """The order in which linear layers run in one forward pass on the meta device, or None."""
    import torch

    modules = dict(model.named_modules())
    order: dict[str, int] = {}
    hooks = [modules[n].register_forward_pre_hook(lambda _m, _a, n=n: order.setdefault(n, len(order)))
             for n in names]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(input_ids=torch.zeros((1, 4), dtype=torch.long, device=device), use_cache=False)
    except Exception:  # noqa: BLE001 - any model code that cannot run shape-only: fall back
        return None
    finally:
        for hook in hooks:
            hook.remove()
    return order if len(order) == len(names) else None


def group_linear_layers(model, hidden_size: int | None = None) -> list[dict]:
    """Every adaptable linear layer with its group and role, in registration order.

    role: attention_qkv | attention_output | feed_forward | other.
    """
    modules = dict(model.named_modules())
    excluded = _excluded(model)
    linears = [(name, mod) for name, mod in model.named_modules()
               if name and _is_linear(mod) and id(mod) not in excluded]
    rows = []
    for name, mod in linears:
        parts = name.split(".")
        group, owner = None, None
        for depth in range(len(parts) - 1, 0, -1):  # nearest ancestor first
            prefix = ".".join(parts[:depth])
            kind = classify(parts[depth - 1], modules[prefix])
            if kind and group is None:
                group = kind
            if kind == "attention":
                owner = prefix  # keeps climbing: the outermost attention module owns the layer
            elif kind == "feed_forward" and group == "attention":
                break
        n_in, n_out = _features(mod)
        rows.append({"name": name, "group": group or "other",
                     "owner": owner if group == "attention" else None, "in": n_in, "out": n_out})

    attention_rows = [r for r in rows if r["group"] == "attention"]
    order = _call_order(model, [r["name"] for r in attention_rows]) if attention_rows else {}
    by_owner: dict[str, list[dict]] = {}
    for row in attention_rows:
        by_owner.setdefault(row["owner"], []).append(row)
    for owned in by_owner.values():
        if order:
            last = max(owned, key=lambda r: order[r["name"]])
        else:  # registration order, preferring a layer that writes back to the hidden width
            wide = [r for r in owned if hidden_size and r["out"] == hidden_size]
            last = (wide or owned)[-1]
        for row in owned:
            row["role"] = "attention_output" if row is last and len(owned) > 1 else "attention_qkv"
    for row in rows:
        row.setdefault("role", row["group"])
    return rows


def _suffixes(rows: list[dict], excluded_names: list[str]) -> dict[str, str]:
    """For each layer, the shortest dotted suffix that matches no layer of another role."""
    split = {r["name"]: r["name"].split(".") for r in rows}
    by_role: dict[str, list[list[str]]] = {}
    for r in rows:
        by_role.setdefault(r["role"], []).append(split[r["name"]])
    others_cache: dict[str, set[tuple[str, ...]]] = {}

    def foreign(role: str) -> set[tuple[str, ...]]:
        if role not in others_cache:
            names = [p for other, lst in by_role.items() if other != role for p in lst]
            names += [n.split(".") for n in excluded_names]
            others_cache[role] = {tuple(p[-k:]) for p in names for k in range(1, len(p) + 1)}
        return others_cache[role]

    out = {}
    for r in rows:
        parts = split[r["name"]]
        for k in range(1, len(parts) + 1):
            if tuple(parts[-k:]) not in foreign(r["role"]):
                out[r["name"]] = ".".join(parts[-k:])
                break
        else:
            out[r["name"]] = r["name"]
    return out


def linear_module_names(model, hidden_size: int | None = None) -> tuple[dict, list[dict]]:
    """({group: [target names]}, first block's layers) for a model (meta or real)."""
    rows = group_linear_layers(model, hidden_size)
    excluded_names = [n for n, m in model.named_modules() if id(m) in _excluded(model)]
    suffix = _suffixes(rows, excluded_names)
    keys = ("attention", "attention_qkv", "attention_output", "feed_forward", "other")
    groups: dict[str, list[str]] = {k: [] for k in keys}
    for r in rows:
        name = suffix[r["name"]]
        for key in {r["group"], r["role"]}:
            if name not in groups[key]:
                groups[key].append(name)
    first_block = []
    block = _first_block_prefix(rows)
    for r in rows:
        if block and r["name"].startswith(block):
            first_block.append({"name": r["name"][len(block):], "group": r["group"], "role": r["role"],
                                "in": r["in"], "out": r["out"]})
    return groups, first_block


def _first_block_prefix(rows: list[dict]) -> str | None:
    for r in rows:
        match = re.match(r"^(.*?\.\d+\.)", r["name"])
        if match:
            return match.group(1)
    return None


# ---------------------------------------------------------------------------------------------
# reading a model


def _text_config(config):
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _first(cfg, *names, default=None):
    for name in names:
        value = getattr(cfg, name, None)
        if value is not None:
            return value
    return default


def _kv_heads(text, first_block: list[dict], heads: int, head_dim: int) -> int:
    """Key/value heads, from the width of the query/key/value projections (fused or not); the
    config's own number when the widths do not add up to queries + keys + values."""
    qkv_out = sum(r["out"] for r in first_block if r["role"] == "attention_qkv")
    spare = qkv_out - heads * head_dim
    if spare > 0 and spare % (2 * head_dim) == 0 and 1 <= spare // (2 * head_dim) <= heads:
        return spare // (2 * head_dim)
    value = _first(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num")
    if value is None:
        value = 1 if getattr(text, "multi_query", False) else heads
    return int(value)


def build_meta_model(config, *, trust_remote_code: bool = False):
    """The model's module tree on the meta device: shapes only, no memory for weights.

    A `torch.device("meta")` context, not accelerate's init_empty_weights(): that one patches
    nn.Module for the whole process, so a model loaded at the same moment in another thread (the app's
    chat) would get meta weights too; the device context is local to this thread."""
    import_stack()
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
        except ValueError:
            text = _text_config(config)
            if text is config:
                raise
            model = AutoModelForCausalLM.from_config(text, trust_remote_code=trust_remote_code)
    try:  # tied input/output embeddings are one tensor (tying is skipped on the meta device)
        model.tie_weights()
    except Exception:  # noqa: BLE001 - a model without tying support simply stays as built
        pass
    return model


def _dtype_name(value) -> str | None:
    if value is None:
        return None
    name = str(value).replace("torch.", "")
    return name


def stored_counts(folder: Path) -> dict[str, int]:
    """How many numbers the folder's safetensors files hold, by stored dtype, read from their headers
    (a few KB each): no weights are loaded and nothing heavy is imported."""
    counts: dict[str, int] = {}
    for path in sorted(Path(folder).glob("*.safetensors"))[:64]:
        try:
            with path.open("rb") as handle:
                size = struct.unpack("<Q", handle.read(8))[0]
                if size > 100_000_000:
                    continue
                header = json.loads(handle.read(size))
        except (OSError, ValueError, struct.error):
            continue
        for key, meta in header.items():
            if key == "__metadata__" or not isinstance(meta, dict):
                continue
            n = 1
            for dim in meta.get("shape", []):
                n *= dim
            counts[meta.get("dtype", "?")] = counts.get(meta.get("dtype", "?"), 0) + n
    return counts


def _safetensors_dtype(folder: Path) -> str | None:
    """The dtype most weights are stored in."""
    names = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64", "I8": "int8",
             "U8": "uint8", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I32": "int32"}
    counts = stored_counts(folder)
    if not counts:
        return None
    top = max(counts, key=counts.get)
    return names.get(top, top.lower())


def has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    try:
        data = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("chat_template"))


TEMPLATE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")
# Chinese everyday text the tokenizer is measured on: its first CHINESE_CHARS characters of Chinese script
CHINESE_SAMPLE = PRESETS_DIR / "general_reference" / "zh.txt"
CHINESE_CHARS = 1000


def tokenizer_figures(folder: Path) -> dict:
    """{"template_tokens", "zh_tokens_per_char"}: what the chat template wraps around an empty question and answer
    (what every training row carries besides its own words: SmolLM2's default system turn alone is 21 of its 32),
    and the tokens a Chinese character costs. Counted once per version of the folder's tokenizer files: reading the
    tokenizer took 0.28 s of a 0.33-s inspection, and every plan inspects its model."""
    stamp = tuple((folder / name).stat().st_mtime_ns if (folder / name).is_file() else 0 for name in TEMPLATE_FILES)
    template, per_char = _tokenizer_figures(str(folder), stamp, has_chat_template(folder))
    return {"template_tokens": template, "zh_tokens_per_char": per_char}


@functools.lru_cache(maxsize=32)
def _tokenizer_figures(folder: str, stamp: tuple, chat_template: bool) -> tuple[int | None, float | None]:
    from transformers import AutoTokenizer

    from easytune.evaluation.metrics import CJK

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception:  # noqa: BLE001 — a tokenizer this stack cannot read: the planner's typical figures
        return None, None
    template = None
    if chat_template:
        try:
            template = len(tokenizer.apply_chat_template(
                [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}],
                tokenize=True, return_dict=True)["input_ids"])
        except Exception:  # noqa: BLE001 — a template this stack cannot render
            template = None
    chinese = "".join(re.findall(f"[{CJK}]", CHINESE_SAMPLE.read_text(encoding="utf-8")))[:CHINESE_CHARS]
    try:
        # (verbose off: the sample may be longer than the model reads at once, which is no fault here)
        ids = tokenizer(chinese, add_special_tokens=False, verbose=False)["input_ids"]
        per_char = round(len(ids) / len(chinese), 2)
    except Exception:  # noqa: BLE001 — a tokenizer that cannot encode it says nothing of what its model read
        per_char = None
    return template, per_char


def inspect_config(config, *, path: str | Path | None = None, trust_remote_code: bool = False,
                   size_on_disk: int = 0, chat_template: bool = False, remote_code: bool = False,
                   stored_dtype: str | None = None, template_tokens: int | None = None,
                   zh_tokens_per_char: float | None = None) -> ModelInfo:
    """ModelInfo from a transformers config object (builds the meta structure)."""
    model = build_meta_model(config, trust_remote_code=trust_remote_code)
    text = _text_config(model.config)
    hidden = int(_first(text, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(text, "num_attention_heads", "n_head"))
    head_dim = int(_first(text, "head_dim", default=0) or hidden // heads)
    groups, first_block = linear_module_names(model, hidden)
    kv_heads = _kv_heads(text, first_block, heads, head_dim)

    ffn = [r for r in first_block if r["group"] == "feed_forward"]
    down = [r for r in ffn if r["out"] == hidden]
    intermediate = down[0]["in"] if down else int(
        _first(text, "intermediate_size", "n_inner", "ffn_hidden_size", default=4 * hidden) or 4 * hidden)
    ups = [r for r in ffn if r["in"] == hidden]
    gated = len(ups) >= 2 or any(r["out"] == 2 * intermediate for r in ups)
    attention_module = next((m for n, m in model.named_modules()
                             if n and classify(n.split(".")[-1], m) == "attention"), None)
    qk_norm = bool(attention_module is not None and any(
        "norm" in type(child).__name__.lower() for child in attention_module.children()))

    num_parameters = sum(p.numel() for p in model.parameters())
    context = _first(text, "max_position_embeddings", "n_positions", "seq_length", "max_sequence_length",
                     "n_ctx")
    quant = getattr(config, "quantization_config", None)
    if isinstance(quant, dict):
        quant = quant.get("quant_method") or "quantized"
    elif quant is not None:
        quant = str(getattr(quant, "quant_method", "quantized"))
    declared = getattr(config, "dtype", None)
    if declared is None and "torch_dtype" in vars(config):  # older releases
        declared = vars(config)["torch_dtype"]
    dtype = stored_dtype or _dtype_name(declared)
    architectures = getattr(config, "architectures", None) or [type(model).__name__]
    return ModelInfo(
        path=str(path) if path else None, architecture=architectures[0],
        model_type=str(getattr(config, "model_type", "") or ""), num_parameters=int(num_parameters),
        num_layers=int(_first(text, "num_hidden_layers", "n_layer", "num_layers")), hidden_size=hidden,
        intermediate_size=int(intermediate), num_attention_heads=heads, num_key_value_heads=int(kv_heads),
        head_dim=head_dim, vocab_size=int(_first(text, "vocab_size")),
        tie_word_embeddings=bool(_first(text, "tie_word_embeddings", default=False)
                                 or _first(config, "tie_word_embeddings", default=False)),
        context_length=int(context) if context else None, dtype=dtype, quantization=quant,
        size_on_disk=int(size_on_disk), has_chat_template=chat_template, needs_remote_code=remote_code,
        gated_mlp=bool(gated), qk_norm=qk_norm, linear_modules=groups, first_block=first_block,
        template_tokens=template_tokens, zh_tokens_per_char=zh_tokens_per_char)


def inspect_model(path: str | Path, *, trust_remote_code: bool = False) -> ModelInfo:
    """Inspect a model folder (config, tokenizer files, safetensors headers); no weights are loaded."""
    import_stack()
    from transformers import AutoConfig

    from easytune.models.sources import check_code

    folder = Path(path).expanduser()
    check = check_folder(folder)
    if not (folder / "config.json").is_file():
        check.raise_if_bad()
    raw = read_config(folder)
    remote = needs_remote_code(raw)
    trust_remote_code = check_code(folder, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (ValueError, KeyError, OSError) as exc:
        raise UserError("models.unsupported_architecture", path=str(folder),
                        model_type=str(raw.get("model_type")), error=str(exc)[:200]) from exc
    try:
        return inspect_config(config, path=folder, trust_remote_code=trust_remote_code,
                              size_on_disk=check.size_bytes, chat_template=has_chat_template(folder),
                              remote_code=remote, stored_dtype=_safetensors_dtype(folder),
                              **tokenizer_figures(folder))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError("models.unsupported_architecture", path=str(folder),
                        model_type=str(raw.get("model_type")), error=str(exc)[:200]) from exc


def target_modules(info: ModelInfo | dict[str, Any], scope: str = "all_linear") -> list[str]:
    """Target names for peft's LoraConfig(target_modules=...).

    attention_qkv: the projections reading the block input (q/k/v, fused or not);
    attention: those plus the attention output projection;
    feed_forward: the feed-forward projections (up, down and the gate where there is one);
    all_linear: attention and feed-forward projections (never the output head or embeddings).
    """
    groups = info.linear_modules if isinstance(info, ModelInfo) else info.get("linear_modules", info)
    if scope in ("attention_qkv", "attention", "feed_forward"):
        names = groups.get(scope, [])
    elif scope == "all_linear":
        names = list(groups.get("attention", [])) + list(groups.get("feed_forward", []))
    else:
        raise ValueError(f"unknown scope {scope!r}; expected one of {SCOPES}")
    if not names:
        raise UserError("models.no_target_modules", scope=scope)
    return sorted(dict.fromkeys(names))
