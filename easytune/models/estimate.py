"""Will this fine-tune fit in memory? An estimate from the model's shape alone, before any download.

The estimate is built from the structure of a decoder-only transformer, tensor by tensor: which
tensors autograd keeps alive between the forward and the backward pass of one layer, and how wide
each one is. With h = hidden size, i = intermediate size, hq = heads x head_dim, kv = key/value
heads x head_dim, H = heads, s = sequence length, e = bytes per activation element, one layer keeps,
per token:

    always             2h (the layer input and the residual after attention, kept by the two norms)
                       hq + 2kv (query after rotary, key, value, kept by attention)
                       hq (attention output, also the output projection's input) + 4H bytes (logsumexp)
                       3i for a gated MLP (gate, activation, up) or i for a plain one
    full fine-tuning   + 4h + i (the normalised and scaled copies kept for the norm weights, the MLP
                       product kept for the down projection's weight gradient)
    LoRA / QLoRA       the frozen weights keep nothing; each adapted projection keeps its input:
                       shared with the base when dropout is 0 and the adapter has the model's dtype,
                       otherwise its own fp32 copy (and a dropout mask beside it: 1 byte per
                       element on a GPU, 4 on CPU)
    padded batches     + s·e (the attention mask, expanded per layer) and GQA keys/values expanded
                       to hq; eager attention adds the H·s score matrix

and the head keeps the final norm's input plus fp32 log-probabilities over the vocabulary, whose
backward pass briefly holds two more vocabulary-wide fp32 tensors. Gradient checkpointing keeps only
each layer's input and recomputes one layer at a time.

On CPU the numbers assume the training process returns freed memory to the system promptly
(`hardware.tune_cpu_allocator()`, exact accounting). Reusing freed memory instead is much faster but
leaves fragments in the heap (measured: 1.2–1.9× the exact peak), so the worker reuses it only where
twice this estimate is free (`hardware.cpu_allocator_threshold`).

The peak is the larger of two moments: the start of the backward pass (weights + optimiser states +
all activations) and the optimiser step (weights + optimiser states + gradients), because a full
fine-tune's gradients are created while the activations are being released. Gradient accumulation
keeps gradients alive across micro-batches, so then they count at both moments.

`python -m easytune.models.bench_memory` checks these numbers against measured peaks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

GIB = 1024**3
MIB = 1024**2

METHODS = ("lora", "qlora", "full")
SCOPES = ("attention_qkv", "attention", "feed_forward", "all_linear")
DEVICES = ("cuda", "mps", "xpu", "cpu")
DTYPE_BYTES = {
    "fp32": 4, "float32": 4,
    "bf16": 2, "bfloat16": 2,
    "fp16": 2, "float16": 2,
}
# NF4 weights: 4 bits, plus one fp8 block constant per 64 weights and the second-level constants
# (double quantisation), about 4.13 bits per weight.
NF4_BYTES_PER_PARAM = 4.127 / 8
ADAPTER_BYTES = 4  # adapters are kept in fp32 even when the base model is 16-bit

# What is outside the tensors: the CUDA context, kernels and cuBLAS workspaces on a GPU; the
# runtime's graph bookkeeping, thread pools and allocator slack everywhere.
FIXED_OVERHEAD = {"cuda": 700 * MIB, "xpu": 700 * MIB, "mps": 400 * MIB, "cpu": 64 * MIB}
SLACK = {"cuda": 0.08, "xpu": 0.08, "mps": 0.10, "cpu": 0.05}
# Where training shares memory with the host (CPU, Apple unified memory), the training process itself
# (Python, PyTorch, Transformers, PEFT loaded) counts too.
RUNTIME = {"cuda": 0, "xpu": 0, "mps": 700 * MIB, "cpu": 700 * MIB}

FITS_BELOW = 0.85  # of the memory available: fits; up to 1.0: tight; above: does not fit


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers the estimate needs (from the catalog or an inspected model)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int | None = None
    tie_embeddings: bool = False
    gated_mlp: bool = True
    qk_norm: bool = False
    params: int | None = None  # the real count when known; otherwise computed from the numbers above

    @property
    def dim_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_width(self) -> int:
        return self.heads * self.dim_head

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.dim_head

    def linears(self) -> list[tuple[str, int, int]]:
        """(role, in_features, out_features) of the linear layers in one transformer block."""
        h, i = self.hidden, self.intermediate
        attention = [("q", h, self.q_width), ("k", h, self.kv_width), ("v", h, self.kv_width),
                     ("o", self.q_width, h)]
        if self.gated_mlp:
            return attention + [("gate", h, i), ("up", h, i), ("down", i, h)]
        return attention + [("up", h, i), ("down", i, h)]

    @property
    def linear_params(self) -> int:
        return self.layers * sum(n_in * n_out for _, n_in, n_out in self.linears())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def num_parameters(self) -> int:
        if self.params:
            return int(self.params)
        norms = self.layers * 2 * self.hidden + self.hidden
        return self.linear_params + self.embedding_params + norms

    def to_dict(self) -> dict:
        return asdict(self)


SHAPE_KEYS = {
    "layers": ("layers", "num_layers", "num_hidden_layers"),
    "hidden": ("hidden", "hidden_size"),
    "intermediate": ("intermediate", "intermediate_size"),
    "heads": ("heads", "num_attention_heads"),
    "kv_heads": ("kv_heads", "num_key_value_heads"),
    "vocab": ("vocab", "vocab_size"),
    "head_dim": ("head_dim",),
    "tie_embeddings": ("tie_embeddings", "tie_word_embeddings"),
    "gated_mlp": ("gated_mlp",),
    "qk_norm": ("qk_norm",),
    "params": ("params", "num_parameters"),
}


def as_shape(source: Any) -> ModelShape:
    """A ModelShape from a ModelShape, a catalog entry, an inspected ModelInfo, or a plain mapping."""
    if isinstance(source, ModelShape):
        return source
    if hasattr(source, "shape") and callable(source.shape):
        return as_shape(source.shape())
    if hasattr(source, "shape") and isinstance(source.shape, (ModelShape, Mapping)):
        shape = as_shape(source.shape)
        params = getattr(source, "num_parameters", None)
        return replace(shape, params=shape.params or params)
    if isinstance(source, Mapping):
        values = {}
        for name, keys in SHAPE_KEYS.items():
            for key in keys:
                if source.get(key) is not None:
                    values[name] = source[key]
                    break
        values.setdefault("kv_heads", values.get("heads"))
        missing = [k for k in ("layers", "hidden", "intermediate", "heads", "vocab") if k not in values]
        if missing:
            raise ValueError(f"model shape lacks {', '.join(missing)}")
        if "params_b" in source and "params" not in values:
            values["params"] = int(float(source["params_b"]) * 1e9)
        return ModelShape(**values)
    raise TypeError(f"cannot read a model shape from {type(source).__name__}")


@dataclass(frozen=True)
class Estimate:
    """Bytes needed by one training configuration, at its peak."""

    weights: int
    trainable: int  # adapter weights (LoRA), gradients and optimiser states
    activations: int
    overhead: int
    total: int  # the peak; for a full fine-tune less than the sum (see peak_phase)
    peak_phase: str  # "backward" or "optimizer_step"
    trainable_params: int
    total_params: int
    # the inputs, so that a verdict can propose changes
    shape: ModelShape
    method: str
    seq_len: int
    batch: int
    grad_checkpointing: bool
    dtype: str
    lora_r: int
    target: str
    device: str
    grad_accum: int = 1
    lora_dropout: float = 0.05
    padded: bool = True
    attention: str = "sdpa"
    shards: int = 1
    parts: dict = field(default_factory=dict)  # finer breakdown, bytes

    def settings(self) -> dict:
        return dict(method=self.method, seq_len=self.seq_len, batch=self.batch,
                    grad_checkpointing=self.grad_checkpointing, dtype=self.dtype, lora_r=self.lora_r,
                    target=self.target, device=self.device, grad_accum=self.grad_accum,
                    lora_dropout=self.lora_dropout, padded=self.padded, attention=self.attention,
                    shards=self.shards)

    def to_dict(self) -> dict:
        data = {k: getattr(self, k) for k in (
            "weights", "trainable", "activations", "overhead", "total", "peak_phase",
            "trainable_params", "total_params")}
        data.update(self.settings())
        data["shape"] = self.shape.to_dict()
        data["parts"] = dict(self.parts)
        data["total_gib"] = round(self.total / GIB, 2)
        return data


def _targeted(shape: ModelShape, target: str) -> list[tuple[str, int, int]]:
    roles = {"attention_qkv": {"q", "k", "v"}, "attention": {"q", "k", "v", "o"},
             "feed_forward": {"gate", "up", "down"}}.get(target)
    if target not in SCOPES:
        raise ValueError(f"unknown target scope {target!r}; expected one of {SCOPES}")
    return [lin for lin in shape.linears() if roles is None or lin[0] in roles]


def lora_parameters(shape: ModelShape, lora_r: int, target: str = "all_linear") -> int:
    return shape.layers * sum(lora_r * (n_in + n_out) for _, n_in, n_out in _targeted(shape, target))


def layer_activation_bytes(shape: ModelShape, *, method: str, target: str, seq_len: int, act_bytes: int,
                           lora_r: int, lora_dropout: float, padded: bool, attention: str,
                           device: str = "cuda") -> dict:
    """Bytes one transformer block keeps for its backward pass, per token, by what keeps them."""
    e = act_bytes
    h, i, hq, kv = shape.hidden, shape.intermediate, shape.q_width, shape.kv_width
    expand_kv = padded and shape.kv_heads < shape.heads  # a mask forces GQA keys/values to full width
    kv_kept = hq if expand_kv else kv
    parts = {
        "residual": 2 * h * e,
        "attention": (2 * hq + 2 * kv_kept) * e + 4 * shape.heads,
        "mlp": (3 * i if shape.gated_mlp else i) * e,
    }
    if shape.qk_norm:
        parts["attention"] += (hq + kv) * e * (2 if method == "full" else 1)
    if padded:
        parts["mask"] = seq_len * e
    if attention == "eager":
        parts["attention"] += shape.heads * seq_len * (4 + e)
    if method == "full":
        parts["weight_inputs"] = (4 * h + i) * e
    else:
        targeted = _targeted(shape, target)
        own_copy = lora_dropout > 0 or e != ADAPTER_BYTES
        if own_copy:
            # the input cast to the adapter's fp32, and dropout's mask: one byte per element on
            # GPUs, a float on CPU
            mask = (4 if device == "cpu" else 1) if lora_dropout > 0 else 0
            per_copy = ADAPTER_BYTES + mask
            parts["adapter_inputs"] = sum(n_in * per_copy for _, n_in, _ in targeted)
        else:  # each adapted projection keeps the input the base layer already had
            roles = {role for role, _, _ in targeted}
            shared = 0
            if roles & {"q", "k", "v"}:
                shared += h
            if roles & {"gate", "up"}:
                shared += h
            if "down" in roles:
                shared += i
            parts["adapter_inputs"] = shared * e
        parts["adapter_inputs"] += len(targeted) * lora_r * ADAPTER_BYTES
    return parts


def estimate_memory(shape: Any, method: str = "lora", seq_len: int = 1024, batch: int = 1,
                    grad_checkpointing: bool = False, dtype: str = "bf16", lora_r: int = 16,
                    target: str = "all_linear", *, device: str = "cuda", grad_accum: int = 1,
                    lora_dropout: float = 0.05, padded: bool = True, attention: str = "sdpa",
                    shards: int = 1) -> Estimate:
    """Peak memory of one training configuration, in bytes, with its breakdown.

    shape: a ModelShape, catalog entry, inspected ModelInfo or mapping with the architecture numbers.
    dtype: the weights' dtype for lora and full ("fp32", "bf16", "fp16"); for qlora the compute dtype.
    padded: batches padded to a common length (an attention mask is then materialised per layer).
    shards: processes a full fine-tune's weights, gradients and optimizer state are split over (FSDP); each
    holds its share, plus what is gathered whole while it computes: the embeddings, a layer and the next.
    """
    shape = as_shape(shape)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    if dtype not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}")
    seq_len, batch, grad_accum = int(seq_len), max(1, int(batch)), max(1, int(grad_accum))
    e = DTYPE_BYTES[dtype]
    tokens = batch * seq_len
    total_params = shape.num_parameters
    parts: dict[str, int] = {}

    # weights
    if method == "qlora":
        linear = shape.linear_params
        weights = int(linear * NF4_BYTES_PER_PARAM + (total_params - linear) * e)
    else:
        weights = total_params * e

    # trainable parameters, their gradients and AdamW's two moments
    if method == "full":
        trainable_params = total_params
        grads = total_params * e
        optimizer = 2 * total_params * e  # AdamW keeps its moments in the parameters' dtype
        adapter = 0
        largest = max(shape.vocab * shape.hidden, max(a * b for _, a, b in shape.linears()))
        step_temp = largest * e  # one parameter's update temporaries at a time
    else:
        trainable_params = lora_parameters(shape, lora_r, target)
        adapter = trainable_params * ADAPTER_BYTES
        grads = trainable_params * ADAPTER_BYTES
        optimizer = 2 * trainable_params * ADAPTER_BYTES
        step_temp = trainable_params * ADAPTER_BYTES
    shards = max(1, int(shards)) if method == "full" else 1
    if shards > 1:
        embeddings = shape.embedding_params * e
        gathered = embeddings + 2 * (weights - embeddings) // max(1, shape.layers)  # the root's, a layer, the next
        weights, grads, optimizer = weights // shards + gathered, grads // shards, optimizer // shards
        step_temp //= shards
        parts["gathered_layers"] = gathered
    parts.update(adapter=adapter, gradients=grads, optimizer_states=optimizer)

    # activations
    per_layer = layer_activation_bytes(
        shape, method=method, target=target, seq_len=seq_len, act_bytes=e, lora_r=lora_r,
        lora_dropout=lora_dropout, padded=padded, attention=attention, device=device)
    layer_bytes = sum(per_layer.values()) * tokens
    # final norm, then fp32 log-probabilities kept for the loss and two more vocabulary-wide fp32
    # tensors while the loss is differentiated (plus the cast back to 16 bit)
    head = (shape.hidden * e * (3 if method == "full" else 1)
            + shape.vocab * (3 * 4 + (e if e != 4 else 0))) * tokens
    if grad_checkpointing:
        # each layer's input is kept; the head is differentiated first and released before the
        # last layer is recomputed, so the two never coexist
        layers_bytes = shape.layers * shape.hidden * e * tokens + layer_bytes
        activations = shape.layers * shape.hidden * e * tokens + max(layer_bytes, head)
    else:
        layers_bytes = shape.layers * layer_bytes
        activations = layers_bytes + head
    parts.update(layer_activations=layers_bytes, head_activations=head)
    for name, value in per_layer.items():
        parts[f"per_layer_{name}"] = value * tokens

    # the peak: start of backward vs optimiser step
    early_grads = shape.vocab * shape.hidden * e if method == "full" else 0  # the head's, first
    kept_grads = grads if grad_accum > 1 else early_grads
    at_backward = weights + adapter + optimizer + kept_grads + activations
    at_step = weights + adapter + optimizer + grads + step_temp
    dynamic = max(at_backward, at_step)
    peak_phase = "backward" if at_backward >= at_step else "optimizer_step"

    parts.update(fixed=FIXED_OVERHEAD[device], slack=int(SLACK[device] * dynamic), runtime=RUNTIME[device])
    if method == "qlora":  # one projection dequantised at a time, forward and backward
        parts["dequantize"] = 2 * max(a * b for _, a, b in shape.linears()) * e
    overhead = sum(parts.get(k, 0) for k in ("fixed", "slack", "runtime", "dequantize"))
    return Estimate(
        weights=int(weights), trainable=int(adapter + grads + optimizer), activations=int(activations),
        overhead=int(overhead), total=int(dynamic + overhead), peak_phase=peak_phase,
        trainable_params=int(trainable_params), total_params=int(total_params), shape=shape,
        method=method, seq_len=seq_len, batch=batch, grad_checkpointing=bool(grad_checkpointing),
        dtype=dtype, lora_r=int(lora_r), target=target, device=device, grad_accum=grad_accum,
        lora_dropout=float(lora_dropout), padded=bool(padded), attention=attention, shards=shards,
        parts={k: int(v) for k, v in parts.items()})


# ---------------------------------------------------------------------------------------------
# verdicts


@dataclass(frozen=True)
class Suggestion:
    key: str  # message key, models.suggest_*
    params: dict
    change: dict  # the settings to change (or {"model": catalog id})
    total: int
    verdict: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    status: str  # fits | tight | does_not_fit
    key: str  # message key for the status line
    params: dict
    total: int
    available: int
    ratio: float
    suggestions: list[Suggestion]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["suggestions"] = [s.to_dict() for s in self.suggestions]
        return data


def _status(total: int, available: int) -> str:
    if available <= 0:
        return "does_not_fit"
    ratio = total / available
    return "fits" if ratio <= FITS_BELOW else "tight" if ratio <= 1.0 else "does_not_fit"


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def _redo(estimate: Estimate, shape: ModelShape | None = None, **changes) -> Estimate:
    settings = estimate.settings()
    settings.update(changes)
    return estimate_memory(shape or estimate.shape, **settings)


def verdict(estimate: Estimate, hardware_bytes: int, *, catalog: list, device: str | None = None,
            max_suggestions: int = 4) -> Verdict:
    """fits | tight | does_not_fit for the memory available, with changes that would make it fit.

    hardware_bytes: memory the training can use (GPU memory, or RAM on CPU / Apple unified memory).
    device: where it would run; 4-bit QLoRA is only proposed on CUDA. Defaults to the estimate's.
    catalog: entries to look for a smaller model in (load_catalog()); the caller reads it, because the
        catalog builds on this module's ModelShape and this module must not reach back for it.
    """
    device = device or estimate.device
    available = int(hardware_bytes)
    status = _status(estimate.total, available)
    ratio = estimate.total / available if available > 0 else float("inf")
    params = {"need_gb": _gib(estimate.total), "have_gb": _gib(available)}
    suggestions: list[Suggestion] = []
    if status != "fits":
        suggestions = _suggestions(estimate, available, device, catalog)[:max_suggestions]
    return Verdict(status=status, key=f"models.verdict_{status}", params=params, total=estimate.total,
                   available=available, ratio=round(ratio, 3), suggestions=suggestions)


def _suggestions(estimate: Estimate, available: int, device: str, catalog: list) -> list[Suggestion]:
    out: list[Suggestion] = []

    def add(key: str, params: dict, change: dict, new: Estimate):
        if new.total < estimate.total:
            status = _status(new.total, available)
            params = {**params, "need_gb": _gib(new.total)}
            out.append(Suggestion(key=key, params=params, change=change, total=new.total, verdict=status))

    # 1. gradient checkpointing: same result, about a third slower
    if not estimate.grad_checkpointing:
        add("models.suggest_grad_checkpointing", {}, {"grad_checkpointing": True},
            _redo(estimate, grad_checkpointing=True))
    # 2. a smaller batch, with gradient accumulation keeping the effective batch
    if estimate.batch > 1:
        effective = estimate.batch * estimate.grad_accum
        for batch in _halvings(estimate.batch):
            accum = max(1, -(-effective // batch))
            new = _redo(estimate, batch=batch, grad_accum=accum)
            if _status(new.total, available) != "does_not_fit" or batch == 1:
                add("models.suggest_smaller_batch", {"batch": batch, "grad_accum": accum},
                    {"batch": batch, "grad_accum": accum}, new)
                break
    # 3. full fine-tuning -> LoRA
    if estimate.method == "full":
        add("models.suggest_lora", {}, {"method": "lora", "dtype": _half(estimate.dtype)},
            _redo(estimate, method="lora", dtype=_half(estimate.dtype)))
    # 4. 4-bit QLoRA (bitsandbytes needs an NVIDIA GPU)
    if estimate.method != "qlora" and device == "cuda":
        add("models.suggest_qlora", {}, {"method": "qlora", "dtype": "bf16"},
            _redo(estimate, method="qlora", dtype="bf16"))
    # 5. a shorter maximum sequence length
    if estimate.seq_len > 512:
        seq = max(512, estimate.seq_len // 2)
        add("models.suggest_shorter_seq", {"seq_len": seq}, {"seq_len": seq}, _redo(estimate, seq_len=seq))
    # 6. everything cheap at once, when no single change is enough
    if out and not any(s.verdict != "does_not_fit" for s in out):
        method = "qlora" if device == "cuda" else ("lora" if estimate.method == "full" else estimate.method)
        combo = dict(grad_checkpointing=True, batch=1,
                     grad_accum=estimate.batch * estimate.grad_accum, method=method,
                     dtype="bf16" if method == "qlora" else _half(estimate.dtype))
        add("models.suggest_combined", {"batch": 1, "grad_accum": combo["grad_accum"], "method": method},
            combo, _redo(estimate, **combo))
    # 7. a smaller model from the catalog, with the current settings
    smaller = _smaller_model(estimate, available, catalog)
    if smaller is not None:
        entry, new = smaller
        add("models.suggest_smaller_model", {"model": entry.name, "params_b": entry.params_b},
            {"model": entry.id}, new)
    # what makes it fit first, then by how much memory it saves
    order = {"fits": 0, "tight": 1, "does_not_fit": 2}
    out.sort(key=lambda s: (order[s.verdict], s.key == "models.suggest_smaller_model", s.total))
    return out


def _halvings(batch: int):
    while batch > 1:
        batch //= 2
        yield max(1, batch)


def _half(dtype: str) -> str:
    return "bf16" if DTYPE_BYTES[dtype] == 4 else dtype


def _smaller_model(estimate: Estimate, available: int, catalog: list):
    current = estimate.shape.num_parameters
    best = None
    for entry in catalog:
        shape = as_shape(entry)
        if shape.num_parameters >= current * 0.9:
            continue
        new = _redo(estimate, shape=shape)
        if _status(new.total, available) == "fits" and (best is None or shape.num_parameters > best[2]):
            best = (entry, new, shape.num_parameters)
    return None if best is None else best[:2]
