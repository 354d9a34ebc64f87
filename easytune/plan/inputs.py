"""What the planner reads, gathered once before any decision: the intent and its rules, the model's
numbers, the data's report, the machine, its measured speeds and the user's own settings.

    build_context(rules, task="chat", level="L2", model="m", dataset="d", model_info=..., data_stats=...,
                  hardware=..., overrides=..., tokens_per_s=..., matmul_flops=..., cpu_bf16_flops=...)
        -> PlanContext (frozen)

Inputs are plain dicts (ModelInfo.to_dict(), a catalog entry, ImportReport.to_dict(), Hardware.to_dict())
or the objects themselves; a missing one becomes an empty view that the reasons name. The user's device
and precision are inputs too: what the machine trains on follows from them before anything is decided.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from easytune.i18n import UserError
from easytune.models.calibrate import auto_precision, bf16_pays
from easytune.models.estimate import as_shape
from easytune.models.hardware import GpuInfo, Hardware
from easytune.plan.rules import Intents, LevelRule, TaskRule
from easytune.plan.schema import TrainingPlan


def _as_dict(value) -> dict | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return dict(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    raise TypeError(f"expected a mapping or an object with to_dict(), got {type(value).__name__}")


@dataclass(frozen=True)
class ModelView:
    params: int | None = None
    hidden: int | None = None
    layers: int | None = None
    context: int | None = None
    shape: Any = None  # ModelShape, or None when the numbers are not known
    linear_modules: dict | None = None
    template_tokens: int | None = None  # what its chat template adds to a row; None: unknown
    zh_tokens_per_char: float | None = None  # what a Chinese character costs its tokenizer; None: unknown


def model_view(info: dict | None) -> ModelView:
    """Numbers from a ModelInfo dict, a catalog entry dict ({params_b, context_length, shape}) or a
    bare shape mapping."""
    if not info:
        return ModelView()
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
    return ModelView(
        params=int(params) if params else None,
        hidden=int(shape.hidden) if shape else flat.get("hidden_size"),
        layers=int(shape.layers) if shape else flat.get("num_layers"),
        context=flat.get("context_length") or flat.get("max_position_embeddings"),
        shape=shape,
        linear_modules=flat.get("linear_modules") or None, template_tokens=flat.get("template_tokens"),
        zh_tokens_per_char=flat.get("zh_tokens_per_char"))


def hardware_view(value) -> Hardware | None:
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


@dataclass(frozen=True)
class DataView:
    known: bool = False
    rows: int | None = None  # usable rows of the kind the task trains on
    total: int | None = None
    shape: str | None = None
    kind: str | None = None  # the main kind the task uses
    other_rows: int = 0  # usable rows of a kind the task cannot use
    split_val: int = 0  # rows the import already held out
    tokens: dict | None = None
    latin_pct: float | None = None  # the share of rows written in Latin script (words between spaces)
    chinese_pct: float | None = None  # the share of rows written in Chinese
    ways_asked: dict | None = None  # {"answers", "one_way"}: answers asked by one question only (data.quality)


def data_view(stats: dict | None, needs: list[str], task: str) -> DataView:
    if not stats:
        return DataView()
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
    languages = (stats.get("quality") or {}).get("languages") or {}
    return DataView(known=True, rows=sum(fitting.values()), total=usable, shape=shape,
                 kind=max(fitting, key=fitting.get), other_rows=usable - sum(fitting.values()),
                 split_val=int(splits.get("val") or 0), tokens=tokens if isinstance(tokens, dict) else None,
                 latin_pct=(languages.get("en") or {}).get("pct", 0.0) if languages else None,
                 chinese_pct=(languages.get("zh") or {}).get("pct", 0.0) if languages else None,
                 ways_asked=(stats.get("quality") or {}).get("ways_asked"))


def _mismatch(task: str, needs: list[str], kinds: dict, shape: str) -> None:
    main = max(kinds, key=kinds.get) if kinds else "none"
    if "preference" in needs:
        raise UserError("planner.error.needs_preference_data", shape=shape)
    if "text" in needs:
        raise UserError("planner.error.needs_raw_text", shape=shape)
    if main in ("preference", "kto"):
        raise UserError("planner.error.sft_got_preference", shape=shape)
    raise UserError("planner.error.sft_got_text", shape=shape)


@dataclass(frozen=True)
class PlanContext:
    """Everything a decision may read besides the plan's own values so far."""

    rules: Intents
    task: str
    level: str
    model_name: str
    dataset_name: str
    info: dict | None  # the model description as given (its size on disk is read for the time estimate)
    model: ModelView
    data: DataView
    hw: Hardware | None
    overrides: dict[str, Any]  # the user's settings, checked by the plan's own validator
    tokens_per_s: float | None = None  # measured training speed for this model on this machine
    matmul_flops: float | None = None  # this machine's measured matmul rate (fp32)
    cpu_bf16_flops: float | None = None  # on a CPU, its measured bf16 matmul rate
    device: str | None = None  # the user's device, else this machine's accelerator; None: machine unknown
    bf16: bool = False  # precision "auto" becomes bf16 on this device
    memory: int | None = None  # bytes training may use on the device; None: unknown
    gpus: int = 0  # CUDA GPUs a data-parallel run can use
    task_rules: TaskRule = field(init=False)
    level_rules: LevelRule = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "task_rules", self.rules.tasks[self.task])
        object.__setattr__(self, "level_rules", self.rules.levels[self.level])

    @property
    def small_model(self) -> bool:
        """A toy-sized model (the built-in demo model): the level's light-touch rules teach it nothing."""
        return bool(self.model.params and self.model.params <= self.rules.small_model.max_params)

    def user(self, name: str) -> bool:
        return name in self.overrides

    def cpu_rates(self) -> dict | None:
        return {"fp32": self.matmul_flops, "bf16": self.cpu_bf16_flops} if self.cpu_bf16_flops else None

    def dtype(self, precision: str) -> str:
        """The number format a precision setting trains in here."""
        return ("bf16" if self.bf16 else "fp32") if precision == "auto" else precision

    @property
    def four_bit_dtype(self) -> str:
        return "bf16" if self.bf16 else "fp16"  # QLoRA computes in half precision on its 4-bit weights


def checked_overrides(overrides: dict, model: str, dataset: str) -> dict:
    """The user's settings, checked and coerced by the plan's own validator."""
    if not overrides:
        return {}
    base = {"model": model, "dataset": dataset}
    checked = TrainingPlan.from_dict({**base, **overrides})
    return {key: getattr(checked, key) for key in overrides if key != "version"}


def build_context(rules: Intents, *, task: str, level: str, model: str, dataset: str, model_info=None,
                  data_stats=None, hardware=None, overrides: dict | None = None, tokens_per_s: float | None = None,
                  matmul_flops: float | None = None, cpu_bf16_flops: float | None = None) -> PlanContext:
    """The inputs, read once. Raises UserError when the data does not suit the task or a setting is bad."""
    info = _as_dict(model_info)
    view = model_view(info)
    data = data_view(_as_dict(data_stats), list(rules.tasks[task].needs), task)
    hw = hardware_view(hardware)
    user = checked_overrides(overrides or {}, model, dataset)
    matmul = float(matmul_flops) if matmul_flops else None
    cpu_bf16 = float(cpu_bf16_flops) if cpu_bf16_flops else None

    device = hw.accelerator if hw is not None else None
    if user.get("device", "auto") != "auto":
        device = user["device"]
    on = device or "cpu"
    # what precision "auto" becomes in the worker: bf16 where the hardware does it natively (on a CPU: where
    # its bf16 products were measured clearly faster than fp32)
    rates = {"fp32": matmul, "bf16": cpu_bf16} if cpu_bf16 else None
    bf16 = auto_precision(on, gpu_bf16=hw is not None and hw.bf16, cpu_bf16=bf16_pays(rates, view.params)) == "bf16"
    memory = hw.training_memory(on) if hw is not None and device else None
    if memory is not None and on in ("cuda", "xpu") and not (hw.cuda if on == "cuda" else hw.xpu):
        memory = None  # the user asked for a GPU this machine does not have
    gpus = len(hw.cuda) if hw is not None and on == "cuda" else 0
    return PlanContext(rules=rules, task=task, level=level, model_name=model, dataset_name=dataset, info=info,
                       model=view, data=data, hw=hw, overrides=user,
                       tokens_per_s=float(tokens_per_s) if tokens_per_s else None, matmul_flops=matmul,
                       cpu_bf16_flops=cpu_bf16, device=device, bf16=bf16, memory=memory, gpus=gpus)
