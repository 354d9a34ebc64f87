"""The intent planner: the user's two answers (task, level) → a complete TrainingPlan with a reason
for every value.

    propose(model="easytune-tiny", dataset="demo:shop_faq_zh", task="chat", level="L2",
            model_info=info.to_dict(), data_stats=report.to_dict(), hardware=probe().to_dict())
        -> Proposal(plan, reasons, user_set, warnings, estimates)

The rules are data, in presets/intents.yaml (read through easytune/plan/rules.py). The planner
works in the order the settings depend on each other: data → validation split → device → sequence
length → method → number format → adapter shape → learning rate → batch (from the memory estimator)
→ knowledge retention → epochs → time, disk and memory estimates. A setting the user gave in
`overrides` is kept as given (and flagged when it is outside what this intent recommends); the
settings that depend on it are planned around it. A setting with no rule here keeps its default.

Every reason and warning is a message key with parameters (`planner.*` in the catalogs), so each
door renders it in its own language. Inputs are plain dicts (ModelInfo.to_dict(), a catalog entry,
ImportReport.to_dict(), Hardware.to_dict()) or the objects themselves; a missing one is replaced by
a safe fallback that the reasons name. Nothing here imports the training stack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from easytune.datasets import import_share
from easytune.i18n import UserError, t
from easytune.models.calibrate import auto_precision, bf16_pays
from easytune.models.estimate import (
    DTYPE_BYTES,
    FITS_BELOW,
    GIB,
    MIB,
    as_shape,
    estimate_memory,
    lora_parameters,
    verdict,
)
from easytune.models.hardware import GpuInfo, Hardware
from easytune.plan.rules import (  # noqa: F401  (INTENTS_PATH, IntentsError, validate_intents: public names)
    INTENTS_PATH,
    LEVELS,
    TASKS,
    Intents,
    IntentsError,
    load_intents,
    validate_intents,
)
from easytune.plan.schema import TrainingPlan

WIDER = {"attention_qkv": "attention", "attention": "all_linear"}
DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU", "mps": "Apple MPS", "xpu": "Intel XPU"}


def choices() -> dict:
    """Tasks and levels for a form: ids with their label and help message keys."""
    rules = load_intents()
    return {
        "tasks": [{"id": k, "label": f"planner.task.{k}", "help": f"planner.task_help.{k}",
                   "needs": list(rules.tasks[k].needs)} for k in TASKS],
        "levels": [{"id": k, "label": f"planner.level.{k}", "help": f"planner.level_help.{k}"} for k in LEVELS],
    }


# ---------------------------------------------------------------------------------------------
# the result


def _render(entry: dict, lang: str) -> str:
    return t(entry["key"], lang, **_localised(entry.get("params", {}), lang))


def _localised(params: dict, lang: str) -> dict:
    """Parameters that are themselves message keys (`*_key`) are rendered in the language too."""
    out = {}
    for name, value in params.items():
        if name.endswith("_key") and isinstance(value, str):
            out[name[:-4]] = t(value, lang)
        out[name] = value
    return out


@dataclass
class Proposal:
    plan: TrainingPlan
    reasons: dict[str, dict]  # field -> {"key", "params"}: why the value was chosen (or kept)
    user_set: list[str]  # fields taken from the user's overrides, as given
    warnings: list[dict]  # {"key", "params", [field], [method_needed], [change]}
    estimates: dict  # steps, minutes, disk bytes, memory, ...
    intent: dict = field(default_factory=dict)  # task, level, data kind, method_needed

    @property
    def method_needed(self) -> str | None:
        return self.intent.get("method_needed")

    def reason(self, name: str, lang: str = "zh") -> str:
        return _render(self.reasons[name], lang)

    def to_dict(self, lang: str = "zh") -> dict:
        reasons = {name: {**entry, "text": _render(entry, lang), "why": t(f"planner.why.{name}", lang)}
                   for name, entry in self.reasons.items()}  # why: the longer explanation, shown on expand
        warnings = [{**entry, "text": _render(entry, lang)} for entry in self.warnings]
        return {"plan": self.plan.to_dict(), "reasons": reasons, "user_set": list(self.user_set),
                "warnings": warnings, "estimates": dict(self.estimates), "intent": dict(self.intent)}


# ---------------------------------------------------------------------------------------------
# reading the inputs


def _as_dict(value) -> dict | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"expected a mapping or an object with to_dict(), got {type(value).__name__}")


@dataclass
class _Model:
    params: int | None = None
    hidden: int | None = None
    layers: int | None = None
    context: int | None = None
    shape: Any = None  # ModelShape, or None when the numbers are not known
    linear_modules: dict | None = None


def _model_view(info: dict | None) -> _Model:
    """Numbers from a ModelInfo dict, a catalog entry dict ({params_b, context_length, shape}) or a
    bare shape mapping."""
    if not info:
        return _Model()
    flat = dict(info)
    nested = flat.get("shape")
    if isinstance(nested, Mapping):
        flat = {**nested, **{k: v for k, v in flat.items() if k != "shape"}}
    if "params_b" in flat and not flat.get("num_parameters") and not flat.get("params"):
        flat["params"] = round(float(flat["params_b"]) * 1e9)
    try:
        shape = as_shape(flat)
    except (ValueError, TypeError):
        shape = None
    params = flat.get("num_parameters") or flat.get("params") or (shape.num_parameters if shape else None)
    return _Model(
        params=int(params) if params else None,
        hidden=int(shape.hidden) if shape else flat.get("hidden_size"),
        layers=int(shape.layers) if shape else flat.get("num_layers"),
        context=flat.get("context_length") or flat.get("max_position_embeddings"),
        shape=shape,
        linear_modules=flat.get("linear_modules") or None)


def _hardware(value) -> Hardware | None:
    if value is None or isinstance(value, Hardware):
        return value
    data = _as_dict(value)

    def gpus(items):
        return [g if isinstance(g, GpuInfo) else GpuInfo(
            index=int(g.get("index", i)), name=str(g.get("name", "GPU")), total_memory=int(g["total_memory"]),
            bf16=bool(g.get("bf16", False)), compute_capability=g.get("compute_capability"))
            for i, g in enumerate(items or [])]

    return Hardware(cuda=gpus(data.get("cuda")), mps=bool(data.get("mps")), xpu=gpus(data.get("xpu")),
                    cpu_physical=data.get("cpu_physical"), cpu_logical=int(data.get("cpu_logical") or 1),
                    ram_total=int(data.get("ram_total") or 0),
                    ram_available=int(data.get("ram_available") or data.get("ram_total") or 0),
                    disk_path=data.get("disk_path"), disk_free=data.get("disk_free"),
                    four_bit=bool(data.get("four_bit")))


@dataclass
class _Data:
    known: bool = False
    rows: int | None = None  # usable rows of the kind the task trains on
    total: int | None = None
    shape: str | None = None
    kind: str | None = None  # the main kind the task uses
    other_rows: int = 0  # usable rows of a kind the task cannot use
    split_val: int = 0  # rows the import already held out
    tokens: dict | None = None


def _data_view(stats: dict | None, needs: list[str], task: str) -> _Data:
    if not stats:
        return _Data()
    kinds = {k: int(v) for k, v in (stats.get("kinds") or {}).items() if v}
    usable = int(stats.get("rows_usable") or sum(kinds.values()) or 0)
    if not kinds and usable:
        kinds = {"sft": usable}  # a report without kinds: conversation rows, the common case
    shape = stats.get("shape") or "?"
    fitting = {k: n for k, n in kinds.items() if k in needs}
    if not fitting:
        _mismatch(task, needs, kinds, shape)
    splits = stats.get("splits") or {}
    tokens = (stats.get("quality") or {}).get("tokens") or stats.get("tokens")
    return _Data(known=True, rows=sum(fitting.values()), total=usable, shape=shape,
                 kind=max(fitting, key=fitting.get), other_rows=usable - sum(fitting.values()),
                 split_val=int(splits.get("val") or 0), tokens=tokens if isinstance(tokens, dict) else None)


def _mismatch(task: str, needs: list[str], kinds: dict, shape: str) -> None:
    main = max(kinds, key=kinds.get) if kinds else "none"
    if "preference" in needs:
        raise UserError("planner.error.needs_preference_data", shape=shape)
    if "text" in needs:
        raise UserError("planner.error.needs_raw_text", shape=shape)
    if main in ("preference", "kto"):
        raise UserError("planner.error.sft_got_preference", shape=shape)
    raise UserError("planner.error.sft_got_text", shape=shape)


# ---------------------------------------------------------------------------------------------
# small helpers


def _fmt_lr(value: float) -> str:
    """2e-4, 1.5e-05 -> '1.5e-5': short and exact enough to read."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _round_lr(value: float) -> float:
    """Two significant digits: a plan says 2e-3, not 0.0018257."""
    return float(_fmt_lr(value))


def _pct(share: float) -> str:
    return f"{share * 100:.3g}"


def _gb(n: float) -> str:
    return f"{n / GIB:.1f}"


def _params_text(n: int | None) -> str:
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}K"


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _half_epochs(value: float) -> float:
    return max(0.5, math.ceil(value * 2 - 1e-9) / 2)


def _share_over(tokens: dict | None, length: int) -> float | None:
    """The share of rows longer than `length` tokens, read from the length histogram."""
    if not tokens or not tokens.get("histogram"):
        return None
    total = sum(b["count"] for b in tokens["histogram"])
    if not total:
        return None
    top = tokens.get("max") or length
    over = 0.0
    for bucket in tokens["histogram"]:
        lo, hi = bucket["lo"], bucket["hi"] if bucket["hi"] is not None else max(top, bucket["lo"] + 1)
        if lo >= length:
            over += bucket["count"]
        elif hi > length:
            over += bucket["count"] * (hi - length) / (hi - lo)
    return over / total


# ---------------------------------------------------------------------------------------------
# the planner


class _Planner:
    """One proposal. Methods run in dependency order; each sets values with a reason."""

    def __init__(self, rules: Intents, *, model: str, dataset: str, task: str, level: str, model_info, data_stats,
                 hardware, overrides: dict | None, tokens_per_s: float | None, matmul_flops: float | None = None,
                 cpu_bf16_flops: float | None = None):
        self.rules = rules
        self.task, self.level = task, level
        self.task_rules = rules.tasks[task]
        self.level_rules = rules.levels[level]
        self.model_name, self.dataset_name = model, dataset
        self.info = _as_dict(model_info)
        self.model = _model_view(self.info)
        self.data = _data_view(_as_dict(data_stats), list(self.task_rules.needs), task)
        self.hw = _hardware(hardware)
        self.tokens_per_s = float(tokens_per_s) if tokens_per_s else None
        self.matmul_flops = float(matmul_flops) if matmul_flops else None
        self.cpu_bf16_flops = float(cpu_bf16_flops) if cpu_bf16_flops else None
        self.overrides = self._checked_overrides(overrides or {}, model, dataset)
        self.values: dict[str, Any] = {}
        self.reasons: dict[str, dict] = {}
        self.recommended: dict[str, Any] = {}
        self.ranges: dict[str, tuple] = {}
        self.warnings: list[dict] = []
        self.estimates: dict[str, Any] = {}

    # --- bookkeeping -----------------------------------------------------------------------
    @staticmethod
    def _checked_overrides(overrides: dict, model: str, dataset: str) -> dict:
        """The user's settings, checked and coerced by the plan's own validator."""
        if not overrides:
            return {}
        base = {"model": model, "dataset": dataset}
        checked = TrainingPlan.from_dict({**base, **overrides})
        return {key: getattr(checked, key) for key in overrides if key != "version"}

    @property
    def small_model(self) -> bool:
        """A toy-sized model (the built-in demo model): the level's light-touch rules teach it nothing."""
        return bool(self.model.params and self.model.params <= self.rules.small_model.max_params)

    def user(self, name: str) -> bool:
        return name in self.overrides

    def set(self, name: str, value, key: str, /, **params) -> Any:
        """Record the planner's choice; a user's value wins and keeps the recommendation beside it."""
        self.recommended[name] = value
        if self.user(name):
            value = self.overrides[name]
            self.values[name] = value
            self.reasons[name] = {"key": "planner.reason.user_set",
                                  "params": {"value": self._show(name, value),
                                             "recommended": self._show(name, self.recommended[name])}}
            return value
        self.values[name] = value
        self.reasons[name] = {"key": key, "params": params}
        return value

    @staticmethod
    def _show(name: str, value) -> str:
        if name == "learning_rate":
            return _fmt_lr(value)
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)

    def warn(self, key: str, /, **params) -> None:
        self.warnings.append({"key": key, "params": params})

    # --- inputs ----------------------------------------------------------------------------
    def run(self) -> Proposal:
        self.plan_inputs()
        self.plan_validation()
        self.plan_hardware()
        self.plan_seq_len()
        self.plan_method()
        self.plan_objective()
        self.plan_precision()
        self.plan_adapter()
        self.plan_learning_rate()
        self.plan_batch()
        self.plan_retention()
        self.plan_epochs()
        self.plan_schedule()
        self.plan_housekeeping()
        self.plan_estimates()
        self.check_user_values()
        for f in fields(TrainingPlan):  # a setting this planner has no rule for keeps its default
            if f.name not in self.values:
                self.set(f.name, f.default, "planner.reason.default", value=self._show(f.name, f.default))
        plan = TrainingPlan(**self.values)
        method_needed = self.task_rules.method_needed
        if isinstance(method_needed, dict):  # by the kind of data: labelled answers (KTO)
            method_needed = method_needed.get(self.data.kind)
        if method_needed:
            self.warnings.insert(0, {"key": "planner.warn.method_needed",
                                     "params": {"method_key": f"planner.method.{method_needed}"},
                                     "method_needed": method_needed})
        intent = {"task": self.task, "level": self.level, "data_kind": self.data.kind,
                  "method_needed": method_needed}
        ordered = {f.name: self.reasons[f.name] for f in fields(TrainingPlan)}
        return Proposal(plan=plan, reasons=ordered, user_set=[f.name for f in fields(TrainingPlan)
                                                              if self.user(f.name)],
                        warnings=self.warnings, estimates=self.estimates, intent=intent)

    def plan_inputs(self) -> None:
        m = self.model
        if m.params:
            self.set("model", self.model_name, "planner.reason.model", model=self.model_name,
                     params=_params_text(m.params))
        else:
            self.set("model", self.model_name, "planner.reason.model_unknown", model=self.model_name)
            self.warn("planner.warn.no_model_info")
        d = self.data
        if d.known:
            self.set("dataset", self.dataset_name, "planner.reason.dataset", dataset=self.dataset_name, rows=d.rows,
                     kind_key=f"planner.kind.{d.kind}")
            if d.other_rows:
                self.warn("planner.warn.mixed_data", rows=d.other_rows, kind_key=f"planner.kind.{d.kind}")
        else:
            self.set("dataset", self.dataset_name, "planner.reason.dataset_unknown", dataset=self.dataset_name)
            self.warn("planner.warn.no_data_stats")
        suggest = self.task_rules.suggest_level
        if suggest and LEVELS.index(self.level) < LEVELS.index(suggest):
            self.warn("planner.warn.level_low", level=self.level, suggested=suggest,
                      task_key=f"planner.task.{self.task}")

    def plan_validation(self) -> None:
        rules = self.rules.validation
        d = self.data
        if d.split_val:
            ratio = import_share(d.split_val, d.total or d.rows)
            self.set("val_ratio", ratio, "planner.reason.val_import", val=d.split_val)
        elif not d.known:
            self.set("val_ratio", rules.ratio, "planner.reason.val_default_unknown", pct=_pct(rules.ratio))
        elif d.rows < rules.min_rows:
            self.set("val_ratio", 0.0, "planner.reason.val_none", rows=d.rows)
        elif d.rows * rules.ratio > rules.max_rows:
            ratio = max(rules.min_ratio, round(rules.max_rows / d.rows, 4))
            self.set("val_ratio", ratio, "planner.reason.val_capped", val=int(d.rows * ratio), pct=_pct(ratio))
        else:
            ratio = rules.ratio
            self.set("val_ratio", ratio, "planner.reason.val_default", val=max(1, int(d.rows * ratio)),
                     pct=_pct(ratio))
        ratio = self.values["val_ratio"]
        if d.known:
            self.train_rows = max(1, d.rows - d.split_val) if d.split_val else max(1, int(d.rows * (1 - ratio)))
            self.val_rows = d.split_val or int(d.rows * ratio)
        else:
            self.train_rows, self.val_rows = None, None
        self.size_row = self.rules.size_row(self.train_rows)
        if self.val_rows == 0:
            self.set("keep_best", False, "planner.reason.keep_best_no_val")
        elif self.val_rows is not None and self.val_rows < rules.best_min_rows:
            self.set("keep_best", False, "planner.reason.keep_best_few", val=self.val_rows)
        else:
            self.set("keep_best", True, "planner.reason.keep_best")

    def plan_hardware(self) -> None:
        hw = self.hw
        if hw is None:
            self.device = None
            self.set("device", "auto", "planner.reason.device_unknown")
            self.warn("planner.warn.no_hardware")
        else:
            self.device = hw.accelerator
            key, params = self._device_reason(self.device, hw)
            self.set("device", "auto", key, **params)
        if self.values["device"] != "auto":  # the user's device
            self.device = self.values["device"]
        device = self.device or "cpu"
        # what precision "auto" becomes in the worker: bf16 where the hardware does it natively (on a CPU:
        # where its bf16 products were measured clearly faster than fp32)
        self.bf16 = auto_precision(device, gpu_bf16=hw is not None and hw.bf16,
                                   cpu_bf16=bf16_pays(self.cpu_rates(), self.model.params)) == "bf16"
        self.dtype = self._dtype(self.overrides.get("precision", "auto"))
        self.memory = hw.training_memory(device) if hw is not None and self.device else None
        if self.memory is not None and device in ("cuda", "xpu") and not (hw.cuda if device == "cuda" else hw.xpu):
            self.memory = None  # the user asked for a GPU this machine does not have
        gpus = len(hw.cuda) if hw is not None and device == "cuda" else 0
        if gpus > 1:  # data-parallel: each GPU trains on its own share of every batch
            self.set("num_processes", gpus, "planner.reason.processes_gpus", gpus=gpus)
        else:
            self.set("num_processes", 1, "planner.reason.processes_one")
        self.world = self.values["num_processes"]

    def cpu_rates(self) -> dict | None:
        return {"fp32": self.matmul_flops, "bf16": self.cpu_bf16_flops} if self.cpu_bf16_flops else None

    def _dtype(self, precision: str) -> str:
        return ("bf16" if self.bf16 else "fp32") if precision == "auto" else precision

    def plan_precision(self) -> None:
        """After the method: a full fine-tune keeps fp32 weights, because the worker updates the weights
        in their own format and bf16 rounds away updates smaller than about 1/256 of a weight."""
        if self.values["method"] == "full" and self.bf16:
            self.set("precision", "fp32", "planner.reason.precision_full")
        elif self.bf16 and self.device == "cpu":
            rates = self.cpu_rates()
            self.set("precision", "auto", "planner.reason.precision_cpu_bf16", bf16=f"{rates['bf16'] / 1e9:.0f}",
                     fp32=f"{rates['fp32'] / 1e9:.0f}")
        elif self.bf16:
            self.set("precision", "auto", "planner.reason.precision_bf16")
        elif self.device == "cpu" and self.cpu_rates():
            rates = self.cpu_rates()
            self.set("precision", "auto", "planner.reason.precision_cpu_fp32", bf16=f"{rates['bf16'] / 1e9:.0f}",
                     fp32=f"{rates['fp32'] / 1e9:.0f}")
        elif self.device is None:
            self.set("precision", "auto", "planner.reason.precision_unknown")
        else:
            self.set("precision", "auto", "planner.reason.precision_fp32", device=DEVICE_NAMES[self.device])
        self.dtype = self._dtype(self.values["precision"])

    @staticmethod
    def _device_reason(device: str, hw: Hardware) -> tuple[str, dict]:
        if device in ("cuda", "xpu"):
            gpu = max(hw.cuda if device == "cuda" else hw.xpu, key=lambda g: g.total_memory)
            return "planner.reason.device_gpu", {"name": gpu.name, "gb": _gb(gpu.total_memory)}
        if device == "mps":
            return "planner.reason.device_mps", {"gb": _gb(hw.training_memory("mps"))}
        return "planner.reason.device_cpu", {"cores": hw.cpu_physical or hw.cpu_logical,
                                             "gb": _gb(hw.ram_available)}

    # --- sequence length -------------------------------------------------------------------
    def plan_seq_len(self) -> None:
        rules = self.rules.seq_len
        context = int(self.model.context) if self.model.context else None
        cap = min(rules.max, context or rules.fallback_context)
        tokens = self.data.tokens
        if not tokens or not tokens.get("p99"):
            length = min(rules.fallback, cap)
            length = self.set("max_seq_len", length, "planner.reason.seq_unknown", length=length)
            self.typical_tokens, self.padded_tokens = length / 2, length
            return
        p90, p99 = int(tokens.get("p90") or tokens["p99"]), int(tokens["p99"])
        margin = rules.estimated_margin if tokens.get("estimated", True) else 1.0
        if self.task_rules.split_long_rows:  # raw text: long rows become several pieces, none is lost
            length = min(cap, rules.text_chunk, max(rules.min, _round_up(p99 * margin, rules.round_to)))
            length = self.set("max_seq_len", length, "planner.reason.seq_chunks", length=length)
            self.typical_tokens = min(float(tokens.get("mean") or p90), length)
            self.padded_tokens = min(p90, length)
            return
        long_tail = p99 > rules.long_tail_ratio * max(1, p90) and not self.task_rules.keep_long_rows
        basis, quantile = (p90 + (p99 - p90) * 5 / 9, "95") if long_tail else (p99, "99")
        wanted = (basis + rules.template_tokens) * margin
        length = max(rules.min, _round_up(wanted, rules.round_to))
        key = "planner.reason.seq_long_tail" if long_tail else "planner.reason.seq_from_data"
        params = {"length": min(length, cap), "quantile": quantile, "tokens": int(basis)}
        if length > cap:
            key = "planner.reason.seq_capped"
            params["limit"] = cap
            length = cap
        if tokens.get("estimated", True):
            key += "_estimated"
        length = self.set("max_seq_len", length, key, **params)
        # what a step really computes: rows are padded to the longest in their batch
        self.typical_tokens = min(float(tokens.get("mean") or p90) + rules.template_tokens, length)
        self.padded_tokens = min(p90 + rules.template_tokens, length)

    # --- method, adapter, learning rate ----------------------------------------------------
    def _estimate(self, *, method: str, batch: int = 1, seq_len: int | None = None, grad_accum: int = 1,
                  dtype: str | None = None, grad_checkpointing: bool | None = None):
        """Peak memory for `batch` rows (a preference row is two sequences: chosen and rejected)."""
        if self.model.shape is None:
            return None
        batch *= self.task_rules.sequences_per_row
        target = self.values.get("target_modules", self.level_rules.target_modules)
        dtype = dtype or (self._four_bit_dtype() if method == "qlora" else self.dtype)
        return estimate_memory(self.model.shape, method=method, seq_len=seq_len or self.values["max_seq_len"],
                               batch=batch, dtype=dtype,
                               grad_checkpointing=(self.values.get("grad_checkpointing", False)
                                                   if grad_checkpointing is None else grad_checkpointing),
                               lora_r=self.values.get("lora_r", self.level_rules.rank("upper")), target=target,
                               device=self.device or "cpu", grad_accum=grad_accum,
                               lora_dropout=self.values.get("lora_dropout", 0.05))

    def plan_method(self) -> None:
        rules = self.rules.method.full
        m, d = self.model, self.data
        small = bool(m.params and m.params <= rules.max_params)
        eligible = (small and self.level in rules.levels and self.task_rules.full_allowed
                    and d.known and d.rows >= rules.min_rows)
        if eligible and self.memory:
            full = self._estimate(method="full", dtype="fp32" if "precision" not in self.overrides else None)
            if full is not None and full.total <= rules.max_memory_share * self.memory:
                self.set("method", "full", "planner.reason.method_full", params=_params_text(m.params),
                         need_gb=_gb(full.total), have_gb=_gb(self.memory))
                return
            if full is not None:
                self.set("method", "lora", "planner.reason.method_lora_memory", need_gb=_gb(full.total),
                         have_gb=_gb(self.memory))
                return
        if self._lora_too_big():
            return
        if m.params and not small:
            self.set("method", "lora", "planner.reason.method_lora_large", params=_params_text(m.params))
        else:
            self.set("method", "lora", "planner.reason.method_lora")

    def plan_objective(self) -> None:
        """What the loss rewards, from the kind of data: the worker could infer it, but the plan says it."""
        kind = self.data.kind if self.data.known else None
        objective = {"preference": "dpo", "kto": "kto", "text": "pretrain", "sft": "sft"}.get(kind, "auto")
        self.set("objective", objective, f"planner.reason.objective_{objective}")
        if objective in ("dpo", "kto"):
            self.set("dpo_beta", 0.1, f"planner.reason.{objective}_beta", value="0.1")
        else:  # said so, rather than explained as if it mattered
            self.set("dpo_beta", 0.1, "planner.reason.dpo_beta_unused")

    def plan_housekeeping(self) -> None:
        """Checkpoints and packing: the same for every goal, each with what it does for this run."""
        self.set("save_every", 0, "planner.reason.save_every_eval")
        self.set("keep_checkpoints", 2, "planner.reason.keep_checkpoints", n=2)
        self.set("packing", True, "planner.reason.packing")

    def _four_bit_dtype(self) -> str:
        return "bf16" if self.bf16 else "fp16"  # QLoRA computes in half precision on its 4-bit weights

    def _lora_too_big(self) -> bool:
        """On a GPU where LoRA cannot fit even one row (with gradient checkpointing), QLoRA keeps the
        frozen weights in 4 bits: about a quarter of their memory. True when that was decided."""
        if self.device != "cuda" or not self.memory or self.model.shape is None:
            return False
        lora = self._estimate(method="lora", grad_checkpointing=True)
        if lora.total <= FITS_BELOW * self.memory:
            return False
        qlora = self._estimate(method="qlora", grad_checkpointing=True)
        params = {"need_gb": _gb(lora.total), "qlora_gb": _gb(qlora.total), "have_gb": _gb(self.memory)}
        if not self.hw.four_bit:
            self.warn("planner.warn.qlora_missing", **params)
            return False
        self.set("method", "qlora", "planner.reason.method_qlora", **params)
        return True

    def plan_adapter(self) -> None:
        full = self.values["method"] == "full"
        low, high = self.level_rules.r_range
        self.ranges["lora_r"] = (low, high)
        level_key = f"planner.level.{self.level}"
        if full:
            r = self.level_rules.rank("upper")
            self.set("lora_r", r, "planner.reason.lora_unused")
        else:
            pick = self.task_rules.rank or (self.size_row.rank if self.size_row else "upper")
            r = high if pick == "upper" else low
            key = ("planner.reason.lora_r_task" if self.task_rules.rank == "upper"
                   else "planner.reason.lora_r_small_data" if pick == "lower" else "planner.reason.lora_r")
            params = {"r": r, "lo": low, "hi": high, "level_key": level_key}
            rules = self.rules.model_size
            if self.small_model and r < self.rules.small_model.min_rank:
                r, key = self.rules.small_model.min_rank, "planner.reason.lora_r_small_model"
                params.update(r=r)
            if self.model.hidden:
                cap = max(rules.min_rank, int(self.model.hidden * rules.max_rank_share))
                if r > cap:
                    r, key = cap, "planner.reason.lora_r_narrow"
                    params.update(r=r, hidden=self.model.hidden)
            self.set("lora_r", r, key, **params)
        r = self.values["lora_r"]
        self.ranges["lora_alpha"] = (r, 4 * r)
        if full:
            self.set("lora_alpha", 2 * r, "planner.reason.lora_unused")
        else:
            self.set("lora_alpha", 2 * r, "planner.reason.lora_alpha", alpha=2 * r, r=r)

        # dropout: by data size, with the task's floor
        floor = self.task_rules.lora_dropout_min
        if full:
            self.set("lora_dropout", 0.05, "planner.reason.lora_unused")
        elif self.small_model and floor <= self.rules.small_model.lora_dropout:
            value = self.rules.small_model.lora_dropout
            self.set("lora_dropout", value, "planner.reason.dropout_small_model", value=f"{value:g}")
        elif self.size_row is None:
            self.set("lora_dropout", max(0.05, floor), "planner.reason.dropout_unknown",
                     value=f"{max(0.05, floor):g}")
        else:
            value = max(self.size_row.lora_dropout, floor)
            key = ("planner.reason.dropout_task" if floor > self.size_row.lora_dropout
                   else "planner.reason.dropout_small_data" if value >= 0.1
                   else "planner.reason.dropout_none" if value == 0 else "planner.reason.dropout")
            self.set("lora_dropout", value, key, value=f"{value:g}", rows=self.train_rows)

        # which layers
        scope = self.task_rules.target_modules or self.level_rules.target_modules
        key = {"attention_qkv": "planner.reason.target_qkv", "attention": "planner.reason.target_attention",
               "all_linear": "planner.reason.target_all"}[scope]
        if scope == "all_linear" and self.level == LEVELS[-1]:
            key = "planner.reason.target_all_deep"
        if self.task_rules.target_modules and scope != self.level_rules.target_modules:
            key = "planner.reason.target_task"
        if self.small_model and scope != "all_linear":
            scope, key = "all_linear", "planner.reason.target_small_model"
        params = {"level_key": level_key, "task_key": f"planner.task.{self.task}"}
        groups = self.model.linear_modules
        if groups is not None and not full:
            wanted = scope
            while scope in WIDER and not self._scope_names(groups, scope):
                scope = WIDER[scope]
            if scope != wanted:
                key = "planner.reason.target_fallback"
                params.update(wanted=wanted, scope=scope)
        if full:
            self.set("target_modules", scope, "planner.reason.lora_unused")
        else:
            self.set("target_modules", scope, key, **params)

    @staticmethod
    def _scope_names(groups: dict, scope: str) -> list:
        if scope == "all_linear":
            return list(groups.get("attention", [])) + list(groups.get("feed_forward", []))
        return list(groups.get(scope, []))

    def plan_learning_rate(self) -> None:
        level = self.level_rules
        rules = self.rules.model_size
        task_factor = self.task_rules.lr_factor
        if task_factor > 1.0 and self.values["method"] == "full":
            task_factor = 1.0  # a larger step is for an add-on's few weights, never for every weight
        base = level.learning_rate * task_factor
        lo, hi = (x * task_factor for x in level.lr_range)
        params = {"lr": None, "base": _fmt_lr(base), "level_key": f"planner.level.{self.level}",
                  "task_key": f"planner.task.{self.task}", "level_rate": _fmt_lr(level.learning_rate)}
        factor = 1.0
        if self.model.params:
            factor = (rules.reference_params / self.model.params) ** rules.exponent
            factor = min(rules.max_factor, max(1.0, factor))
        lr = base * factor
        key = "planner.reason.lr_level" if task_factor == 1.0 else (
            "planner.reason.lr_task" if task_factor < 1.0 else "planner.reason.lr_task_facts")
        if factor > 1.0 and task_factor <= 1.0:  # (a task's own larger rate says why it is larger)
            key = "planner.reason.lr_small_model"
            params["params"] = _params_text(self.model.params)
        if self.values["method"] == "full":
            full = self.rules.method.full.lr_factor
            lr, lo, hi = lr * full, lo * full, hi * full
            key = "planner.reason.lr_full"
        if self.small_model and self.values["method"] != "full":
            lr = self.rules.small_model.learning_rate * min(task_factor, 1.0)
            key = "planner.reason.lr_small_model_fixed"
            params["params"] = _params_text(self.model.params)
        capped = min(lr, rules.max_learning_rate)
        if capped < lr:
            key = "planner.reason.lr_capped"
            params["limit"] = _fmt_lr(rules.max_learning_rate)
        lr = _round_lr(capped)
        params["lr"] = _fmt_lr(lr)
        self.ranges["learning_rate"] = (min(lr, _round_lr(lo * factor)), max(lr, _round_lr(hi * factor)))
        if not self.model.params:
            key = "planner.reason.lr_unknown_model"
        self.set("learning_rate", lr, key, **params)

    # --- batch and memory ------------------------------------------------------------------
    def plan_batch(self) -> None:
        effective = self.size_row.effective_batch if self.size_row else 16
        if self.train_rows:
            effective = max(1, min(effective, self.train_rows))
        device = self.device or "cpu"
        top = min(effective, self.rules.memory.micro_batch_cap[device])
        method = self.values["method"]
        seq = self.values["max_seq_len"]
        min_seq = self.rules.memory.min_seq_len
        known = self.memory is not None and self.model.shape is not None

        def fits(batch: int, seq_len: int, ckpt: bool | None = None) -> bool:
            ckpt = self.overrides.get("grad_checkpointing", False) if ckpt is None else ckpt
            estimate = self._estimate(method=method, batch=batch, seq_len=seq_len, grad_checkpointing=ckpt)
            return estimate.total <= FITS_BELOW * self.memory

        batch, ckpt_need = 1, None
        if not known:
            batch = min(top, 4)
        else:
            while batch * 2 <= top:  # the largest power of two up to the cap that fits
                batch *= 2
            while batch > 1 and not fits(batch, seq):
                batch //= 2
            if batch == 1 and not fits(1, seq):  # recomputing activations costs time, shortening rows costs data
                ckpt_need = self._estimate(method=method, seq_len=seq, grad_checkpointing=False).total
        self._plan_checkpointing(ckpt_need, seq, known)
        if known:
            ckpt = self.values["grad_checkpointing"]
            if batch == 1 and not fits(1, seq, ckpt) and not self.user("max_seq_len"):
                while seq > min_seq:  # even one row does not fit: shorten the rows before giving up
                    seq = max(min_seq, seq // 2)
                    if fits(1, seq, ckpt):
                        break
                if seq != self.values["max_seq_len"]:
                    cut = _share_over(self.data.tokens, seq)
                    self.set("max_seq_len", seq, "planner.reason.seq_memory", length=seq,
                             pct=_pct(cut) if cut is not None else "?")
                    if cut is not None and cut > 0.05:
                        self.warn("planner.warn.seq_cut", pct=_pct(cut), length=seq)
                    self.padded_tokens = min(self.padded_tokens, seq)
                    self.typical_tokens = min(self.typical_tokens, seq)
        if known:
            estimate = self._estimate(method=method, batch=batch, grad_accum=max(1, math.ceil(effective / batch)))
            key = "planner.reason.batch_memory" if batch < top else "planner.reason.batch"
            if batch == top and top < effective and device in ("cpu", "mps"):
                key = "planner.reason.batch_cpu"
            if estimate.total > self.memory:
                key = "planner.reason.batch_over"
            self.set("batch_size", batch, key, batch=batch, need_gb=_gb(estimate.total), have_gb=_gb(self.memory))
        elif self.model.shape is None:
            self.set("batch_size", batch, "planner.reason.batch_unknown_model", batch=batch)
        else:
            self.set("batch_size", batch, "planner.reason.batch_unknown_memory", batch=batch)
        batch = self.values["batch_size"]
        accum = max(1, math.ceil(effective / (batch * self.world)))
        if self.size_row is None:
            self.set("grad_accum", accum, "planner.reason.accum_unknown", accum=accum,
                     effective=batch * accum * self.world)
        elif accum == 1:
            self.set("grad_accum", accum, "planner.reason.accum_one", effective=batch * self.world,
                     rows=self.train_rows)
        else:
            self.set("grad_accum", accum, "planner.reason.accum", accum=accum, effective=batch * accum * self.world,
                     rows=self.train_rows)

    def _plan_checkpointing(self, need_without: int | None, seq: int, known: bool) -> None:
        """Gradient checkpointing only where one row's activations do not fit: it slows every step."""
        if need_without is None:
            self.set("grad_checkpointing", False, "planner.reason.ckpt_off" if known else "planner.reason.ckpt_unknown")
            return
        with_ckpt = self._estimate(method=self.values["method"], seq_len=seq, grad_checkpointing=True).total
        self.set("grad_checkpointing", True, "planner.reason.ckpt_memory", length=seq, need_gb=_gb(need_without),
                 ckpt_gb=_gb(with_ckpt), have_gb=_gb(self.memory))

    # --- forgetting --------------------------------------------------------------------------
    def plan_retention(self) -> None:
        rules = self.rules.retention
        task_key = f"planner.task.{self.task}"
        small = self.rules.small_model.retention_ratio
        if self.task in rules.tasks:
            ratio = (self.task_rules.retention_ratio or rules.ratio)
            self.set("retention_ratio", ratio, "planner.reason.retention_task", pct=_pct(ratio), task_key=task_key)
        elif self.small_model and self.task_rules.sequences_per_row == 1:  # not for preference pairs
            self.set("retention_ratio", small, "planner.reason.retention_small_model", pct=_pct(small),
                     params=_params_text(self.model.params))
        elif self.values["method"] in rules.methods:
            self.set("retention_ratio", rules.ratio, "planner.reason.retention_full", pct=_pct(rules.ratio))
        elif self.level in rules.levels and self.task_rules.sequences_per_row == 1:
            self.set("retention_ratio", rules.ratio, "planner.reason.retention_level", pct=_pct(rules.ratio),
                     level_key=f"planner.level.{self.level}")
        else:
            self.set("retention_ratio", 0.0, "planner.reason.retention_off")
        small = self.model.params is not None and self.model.params < rules.guard_min_params
        if small:
            self.set("forgetting_guard", False, "planner.reason.guard_small_model",
                     params=_params_text(self.model.params))
        else:
            self.set("forgetting_guard", True, "planner.reason.guard_on")

        # what one epoch really holds: raw text split into pieces, plus the mixed-in general text
        examples = float(self.train_rows or 0)
        tokens = self.data.tokens
        if self.task_rules.split_long_rows and tokens and tokens.get("mean"):
            examples *= max(1.0, float(tokens["mean"]) / self.values["max_seq_len"])
        ratio = self.values["retention_ratio"]
        self.train_examples = max(1, round(examples / (1 - ratio))) if self.train_rows else None

    # --- epochs and schedule ---------------------------------------------------------------
    def plan_epochs(self) -> None:
        rules = self.rules.steps
        effective = self.values["batch_size"] * self.values["grad_accum"] * self.world
        if self.size_row is None:
            epochs = float(rules.unknown_rows_epochs)
            self.ranges["epochs"] = (1.0, epochs * 2)
            self.set("epochs", epochs, "planner.reason.epochs_unknown", epochs=f"{epochs:g}")
            self.set("max_steps", 0, "planner.reason.max_steps_unknown")
            return
        base = self.size_row.epochs * (self.task_rules.epochs_factor or 1.0)
        epochs = _half_epochs(base)
        key = "planner.reason.epochs_task" if self.task_rules.epochs_factor else self._epochs_key()
        if self.small_model and self.size_row is self.rules.data_size[0]:  # a few rows: the measured case
            epochs = _half_epochs(base * self.rules.small_model.epochs_factor)
            key = "planner.reason.epochs_small_model"
        max_epochs = min(rules.max_epochs, (self.task_rules.max_epochs or rules.max_epochs))
        if epochs > max_epochs:  # (the small-model reason stands: its passes are the measured ones, capped)
            epochs = float(max_epochs)
            key = key if key == "planner.reason.epochs_small_model" else "planner.reason.epochs_task_cap"
        steps_per_epoch = math.ceil(self.train_examples / effective)
        if epochs * steps_per_epoch < rules.min_steps and epochs < max_epochs:
            epochs = float(min(max_epochs, math.ceil(rules.min_steps / steps_per_epoch)))
            key = "planner.reason.epochs_min_steps"
        self.ranges["epochs"] = (max(0.5, _half_epochs(epochs / 2)), epochs * 2)
        self.set("epochs", float(epochs), key, epochs=f"{epochs:g}", rows=self.train_rows,
                 steps=math.ceil(epochs * steps_per_epoch), task_key=f"planner.task.{self.task}")
        if self.train_rows < rules.tiny_rows:
            self.warn("planner.warn.tiny_data", rows=self.train_rows)
        steps = math.ceil(self.values["epochs"] * steps_per_epoch)
        self.set("max_steps", 0, "planner.reason.max_steps", steps=steps)

    def _epochs_key(self) -> str:
        index = next(i for i, row in enumerate(self.rules.data_size) if row is self.size_row)
        last = len(self.rules.data_size) - 1
        return ("planner.reason.epochs_tiny" if index == 0 else "planner.reason.epochs_large" if index == last
                else "planner.reason.epochs")

    def plan_schedule(self) -> None:
        level = self.level_rules
        self.set("warmup_ratio", level.warmup_ratio, "planner.reason.warmup", pct=_pct(level.warmup_ratio))
        self.set("scheduler", level.scheduler, f"planner.reason.scheduler_{level.scheduler}")
        if self.values["method"] == "full":
            wd = self.rules.method.full.weight_decay
            self.set("weight_decay", wd, "planner.reason.weight_decay_full", value=f"{wd:g}")
        else:
            self.set("weight_decay", 0.0, "planner.reason.weight_decay_lora")
        self.set("eval_every", 0, "planner.reason.eval_every")
        self.set("seed", 42, "planner.reason.seed")

    # --- estimates -------------------------------------------------------------------------
    def plan_estimates(self) -> None:
        v = self.values
        est = self.estimates
        effective = v["batch_size"] * v["grad_accum"] * self.world  # rows per optimiser update, all processes
        if self.train_rows:
            steps_per_epoch = math.ceil(self.train_examples / effective)
            steps = v["max_steps"] or max(1, math.ceil(v["epochs"] * steps_per_epoch))
            est.update(train_rows=self.train_rows, val_rows=self.val_rows, train_examples=self.train_examples,
                       steps_per_epoch=steps_per_epoch)
        else:
            steps = v["max_steps"] or None
            est.update(train_rows=None, val_rows=None, train_examples=None, steps_per_epoch=None)
        est.update(steps=steps, effective_batch=effective)

        # memory of the final settings
        estimate = self._estimate(method=v["method"], batch=v["batch_size"], seq_len=v["max_seq_len"],
                                  grad_accum=v["grad_accum"])
        est.update(memory_bytes=estimate.total if estimate else None, memory_available=self.memory,
                   trainable_params=estimate.trainable_params if estimate else None, memory_status=None)
        if estimate is not None and self.memory:
            result = verdict(estimate, self.memory, device=self.device or "cpu")
            est["memory_status"] = result.status
            if result.status != "fits":
                self.warn(f"planner.warn.memory_{result.status}", need_gb=_gb(estimate.total),
                          have_gb=_gb(self.memory))
                # the changes a plan can express; the batch was already the largest that fits, unless the
                # user chose it (and a preference row's two sequences would make the numbers confusing)
                allowed = {"method", "dtype", "seq_len", "model"}
                if self.user("batch_size") and self.task_rules.sequences_per_row == 1:
                    allowed |= {"batch", "grad_accum"}
                for s in result.suggestions:
                    if set(s.change) <= allowed and s.change.get("method") in (None, "lora", "full"):
                        self.warnings.append({"key": s.key, "params": dict(s.params), "change": dict(s.change)})

        # time: steps x (tokens per step / speed + overhead)
        tokens_per_step = effective * (self.padded_tokens if v["batch_size"] > 1 else self.typical_tokens)
        tokens_per_step *= self.task_rules.sequences_per_row
        est["tokens_per_step"] = int(tokens_per_step)
        speed, source = self._speed(v["method"], v["max_seq_len"])
        speed = speed * self.world if speed and source != "measured" else speed  # the processes work at once
        est["time_source"] = source
        if steps and speed:
            overhead = self.rules.throughput.step_overhead_s[self.device or "cpu"]
            step_s = tokens_per_step / speed + overhead * v["grad_accum"]
            evals = self.rules.throughput.evaluations
            eval_tokens = (self.val_rows or 0) * self.typical_tokens * evals
            eval_s = eval_tokens / (speed * (3 if v["method"] == "full" else 2))  # forward only
            seconds = steps * step_s + eval_s + self._startup_seconds()
            est.update(step_seconds=round(step_s, 4), minutes=round(seconds / 60, 1))
            if seconds / 3600 > self.rules.throughput.slow_hours:
                self.warn("planner.warn.slow", hours=f"{seconds / 3600:.0f}")
        else:
            est.update(step_seconds=None, minutes=None)

        # disk
        rules = self.rules.disk
        fixed = rules.fixed_mib * MIB + (steps or 0) * 300
        if v["method"] == "full" and self.model.params:
            disk = self.model.params * DTYPE_BYTES[self.dtype] + fixed
        elif self.model.shape is not None:
            disk = lora_parameters(self.model.shape, v["lora_r"], v["target_modules"]) * 4 + fixed
        else:
            disk = None
        est["disk_bytes"] = int(disk) if disk else None
        free = self.hw.disk_free if self.hw is not None else None
        est["disk_free"] = free
        if disk and free is not None and free < disk * rules.headroom:
            self.warn("planner.warn.disk", need_gb=_gb(disk), free_gb=_gb(free))

    def _startup_seconds(self) -> float:
        """Starting the worker and reading the weights from disk."""
        rules = self.rules.throughput
        size = (self.info or {}).get("size_on_disk") or (self.model.params or 0) * 2
        return rules.startup_s + size / (rules.load_mb_per_s * MIB)

    def _speed(self, method: str, seq_len: int) -> tuple[float | None, str]:
        """Training tokens per second: measured when given, else from FLOPs per token."""
        if self.tokens_per_s:
            return self.tokens_per_s, "measured"
        m = self.model
        if not m.params or self.device is None:
            return None, "unknown"
        rules = self.rules.throughput
        device = self.device
        hw = self.hw
        source = "estimated"
        if device == "cpu" and self.dtype == "bf16" and self.cpu_bf16_flops:  # the bf16 rate, and its share
            flops, source = self.cpu_bf16_flops * rules.calibrated_share["cpu_bf16"], "calibrated"
        elif self.matmul_flops:  # this machine's measured rate, times the share of it training reaches
            flops, source = self.matmul_flops * rules.calibrated_share[device], "calibrated"
        elif device == "cuda" and hw.cuda:
            gb = max(g.total_memory for g in hw.cuda) / GIB
            if hw.bf16:
                flops = next(r.bf16 for r in rules.cuda_tflops if gb >= r.min_gb) * 1e12
            else:
                flops = rules.cuda_fp32_tflops * 1e12
        elif device == "mps":
            flops = rules.mps_tflops * 1e12
        elif device == "xpu":
            flops = rules.xpu_tflops * 1e12
        else:
            cores = hw.cpu_physical or max(1, hw.cpu_logical // 2)
            flops = rules.cpu_gflops_per_core * 1e9 * cores
        per_token = (6 if method == "full" else 4) * m.params
        if self.values.get("grad_checkpointing"):
            per_token += 2 * m.params  # the forward pass is run again during the backward pass
        if self.task_rules.reference_forward:
            per_token += 2 * m.params  # the frozen reference model reads every sequence once
        if m.layers and m.hidden:
            per_token += 6 * m.layers * m.hidden * min(seq_len, self.padded_tokens)
        return flops / per_token, source

    # --- the user's own values -------------------------------------------------------------
    def check_user_values(self) -> None:
        for name in self.overrides:
            value = self.values.get(name)
            if name in self.ranges:
                lo, hi = self.ranges[name]
                if not lo <= value <= hi:
                    self.warnings.append({"key": "planner.warn.outside_range", "field": name,
                                          "params": {"field_key": f"planner.field_name.{name}",
                                                     "value": self._show(name, value), "lo": self._show(name, lo),
                                                     "hi": self._show(name, hi)}})
            elif name in ("target_modules", "method") and value != self.recommended.get(name):
                self.warnings.append({"key": "planner.warn.not_recommended", "field": name,
                                      "params": {"field_key": f"planner.field_name.{name}",
                                                 "value": self._show(name, value),
                                                 "recommended": self._show(name, self.recommended[name])}})
        if self.user("max_seq_len") and self.data.tokens:
            cut = _share_over(self.data.tokens, self.values["max_seq_len"])
            if cut and cut > 0.05:
                self.warnings.append({"key": "planner.warn.seq_cut", "field": "max_seq_len",
                                      "params": {"pct": _pct(cut), "length": self.values["max_seq_len"]}})
        if self.values["method"] == "qlora" and not (self.device == "cuda" and self.hw is not None
                                                     and self.hw.four_bit):
            self.warnings.append({"key": "planner.warn.qlora_unavailable", "field": "method", "params": {}})
        context = self.model.context
        if context and self.values["max_seq_len"] > context:
            self.warn("planner.warn.over_context", length=self.values["max_seq_len"], context=context)


def _normalise(task: str, level: str | int) -> tuple[str, str]:
    key = str(task or "").strip().lower()
    if key not in TASKS:
        raise UserError("planner.error.unknown_task", task=task, choices=", ".join(TASKS))
    lvl = str(level or "").strip().upper()
    lvl = lvl if lvl.startswith("L") else f"L{lvl}"
    if lvl not in LEVELS:
        raise UserError("planner.error.unknown_level", level=level, choices=", ".join(LEVELS))
    return key, lvl


def propose(*, model: str, dataset: str, task: str, level: str, model_info=None, data_stats=None,
            hardware=None, overrides: dict | None = None, tokens_per_s: float | None = None,
            matmul_flops: float | None = None, cpu_bf16_flops: float | None = None) -> Proposal:
    """A complete TrainingPlan for this intent, with a reason for every setting.

    model_info: ModelInfo (or its to_dict()), or a catalog entry dict with params_b / context_length
    / shape; data_stats: ImportReport (or its to_dict()); hardware: Hardware (or its to_dict()).
    overrides: settings the user chose; they are kept as given (checked like a plan file's).
    tokens_per_s: training speed measured on this machine for this model (e.g. from an earlier job's
    step events); the time estimate uses it instead of the FLOP-based guess.
    matmul_flops: this machine's measured matmul rate (easytune.models.calibrate); without a measured
    speed, the time estimate uses it (times the share training reaches) instead of typical rates.
    cpu_bf16_flops: on a CPU, its measured bf16 matmul rate: where it is clearly above `matmul_flops` (the
    fp32 rate), precision "auto" trains in bf16 there (easytune.models.calibrate.bf16_pays).
    Raises UserError for an unknown task or level, and when the data does not suit the task.
    """
    task, level = _normalise(task, level)
    planner = _Planner(load_intents(), model=model, dataset=dataset, task=task, level=level,
                       model_info=model_info, data_stats=data_stats, hardware=hardware, overrides=overrides,
                       tokens_per_s=tokens_per_s, matmul_flops=matmul_flops, cpu_bf16_flops=cpu_bf16_flops)
    return planner.run()
