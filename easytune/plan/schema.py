"""TrainingPlan: the one definition of every training setting.

Each field carries its default, its allowed range or choices and its UI group in `metadata`; its
help text lives in the message catalogs as `plan.field.<name>` (zh + en). The YAML a job runs
from, the expert form in the UI and `easytune plan --explain` are all generated from these fields.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from easytune.i18n import UserError, catalog, t

PLAN_VERSION = 1


def setting(default, *, lo=None, hi=None, choices=None, group="training"):
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices, "group": group})


@dataclass
class TrainingPlan:
    # A setting's help is its catalog entry `plan.field.<name>` (field_help), never a comment here: the
    # YAML comments, the expert form and `easytune plan --explain` all show that one text.
    # what to train
    model: str = setting("easytune-tiny", group="data")
    dataset: str = setting("demo:shop_faq_zh", group="data")
    # how
    method: str = setting("lora", choices=("lora", "qlora", "full"), group="method")
    lora_r: int = setting(8, lo=1, hi=256, group="method")
    lora_alpha: int = setting(16, lo=1, hi=1024, group="method")
    lora_dropout: float = setting(0.05, lo=0.0, hi=0.5, group="method")
    embedding_noise: float = setting(0.0, lo=0.0, hi=50.0, group="method")
    target_modules: str = setting("all_linear", choices=("all_linear", "feed_forward", "attention", "attention_qkv"),
                                  group="method")
    lora_layers: float = setting(1.0, lo=0.05, hi=1.0, group="method")
    # optimisation
    learning_rate: float = setting(2e-4, lo=1e-7, hi=1e-1)
    epochs: float = setting(3.0, lo=0.01, hi=1000.0)
    max_steps: int = setting(0, lo=0, hi=10_000_000)
    batch_size: int = setting(4, lo=1, hi=4096)
    grad_accum: int = setting(1, lo=1, hi=1024)
    max_seq_len: int = setting(512, lo=16, hi=1_048_576)
    warmup_ratio: float = setting(0.05, lo=0.0, hi=0.5)
    scheduler: str = setting("cosine", choices=("cosine", "linear", "constant"))
    weight_decay: float = setting(0.0, lo=0.0, hi=1.0)
    val_ratio: float = setting(0.1, lo=0.0, hi=0.5)
    eval_every: int = setting(0, lo=0, hi=10_000_000)
    seed: int = setting(42, lo=0, hi=2**31 - 1)
    retention_ratio: float = setting(0.0, lo=0.0, hi=0.9)
    forgetting_guard: bool = setting(True)
    # a new version of a model (easytune jobs next)
    continual: bool = setting(False, group="method")
    orthogonal_weight: float = setting(0.5, lo=0.0, hi=1000.0, group="method")
    replay_ratio: float = setting(0.0, lo=0.0, hi=0.9)
    question_variants: int = setting(0, lo=0, hi=8)
    # what is learned
    objective: str = setting("auto", choices=("auto", "sft", "dpo", "kto", "pretrain"), group="method")
    dpo_beta: float = setting(0.1, lo=0.001, hi=10.0, group="method")
    # checkpoints
    save_every: int = setting(0, lo=0, hi=10_000_000)
    keep_checkpoints: int = setting(2, lo=1, hi=1000)
    keep_best: bool = setting(True)
    # where
    device: str = setting("auto", choices=("auto", "cpu", "cuda", "mps", "xpu"), group="hardware")
    precision: str = setting("auto", choices=("auto", "fp32", "bf16", "fp16"), group="hardware")
    packing: bool = setting(True, group="hardware")
    grad_checkpointing: bool = setting(False, group="hardware")
    num_processes: int = setting(1, lo=1, hi=256, group="hardware")
    fsdp: bool = setting(False, group="hardware")
    # several machines (read only when num_machines is above 1)
    num_machines: int = setting(1, lo=1, hi=1024, group="hardware")
    machine_rank: int = setting(0, lo=0, hi=1023, group="hardware")
    main_process_ip: str = setting("127.0.0.1", group="hardware")
    main_process_port: int = setting(29500, lo=1024, hi=65535, group="hardware")
    join_timeout: int = setting(600, lo=1, hi=86_400, group="hardware")
    # what else keeps the run's curves
    tensorboard: bool = setting(False, group="tracking")
    mlflow: bool = setting(False, group="tracking")

    def __post_init__(self) -> None:
        for f in fields(self):
            setattr(self, f.name, _checked(f, getattr(self, f.name)))
        if self.machine_rank >= self.num_machines:
            raise UserError("plan.machine_rank_too_high", rank=self.machine_rank, machines=self.num_machines,
                            last=self.num_machines - 1)
        if self.fsdp and self.method != "full":
            raise UserError("plan.fsdp_needs_full", method=self.method)
        if not _is_address(self.main_process_ip):
            raise UserError("plan.bad_address", value=self.main_process_ip)

    # --- YAML round trip -------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> TrainingPlan:
        if not isinstance(data, dict):
            raise UserError("plan.not_a_mapping")
        data = {k: v for k, v in data.items() if k != "version"}
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise unknown_setting(key)
        return cls(**data)

    @classmethod
    def from_yaml(cls, text: str) -> TrainingPlan:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UserError("plan.bad_yaml", detail=str(exc).splitlines()[0]) from exc
        return cls.from_dict(data or {})

    @classmethod
    def load(cls, path: Path) -> TrainingPlan:
        if not Path(path).is_file():
            raise UserError("plan.no_file", path=str(path))
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))

    @property
    def processes(self) -> int:
        """The run's training processes over all its machines."""
        return self.num_processes * self.num_machines

    @property
    def shards(self) -> int:
        """The processes a full fine-tune's weights are split over: all of them under FSDP, else none."""
        return self.processes if self.fsdp else 1

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self, lang: str = "en") -> str:
        """YAML with each setting's help as a comment; loading it back gives an equal plan."""
        lines = [f"# {t('plan.yaml_header', lang)}", f"version: {PLAN_VERSION}"]
        for f in fields(self):
            value = yaml.safe_dump({f.name: getattr(self, f.name)}, allow_unicode=True,
                                   default_flow_style=True, width=1_000_000).strip()[1:-1]
            lines.append(f"{value}  # {field_help(f.name, lang)}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path, lang: str = "en") -> None:
        Path(path).write_text(self.to_yaml(lang), encoding="utf-8")


def _checked(f, value):
    """Coerce a value to the field's type and check its range; errors name the field and the fix."""
    kind = type(f.default)
    meta = f.metadata
    if kind is bool:
        if not isinstance(value, bool):
            raise UserError("plan.bad_type", key=f.name, value=value, expected="true/false")
        return value
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
            raise ValueError  # True is not 1 epoch; 2.5 is not a batch size
        value = kind(value)
    except (TypeError, ValueError):
        raise UserError("plan.bad_type", key=f.name, value=value, expected=kind.__name__) from None
    if meta["choices"] and value not in meta["choices"]:
        raise UserError("plan.bad_choice", key=f.name, value=value, choices=", ".join(meta["choices"]))
    if meta["lo"] is not None and not (meta["lo"] <= value <= meta["hi"]):
        raise UserError("plan.out_of_range", key=f.name, value=value, lo=meta["lo"], hi=meta["hi"])
    return value


# Where this machine stands in a run over several machines: each machine's plan says it differently (its rank;
# the main machine's address as this one reaches it; how long it waits). Every other setting must be the same on
# all of them, but for the names of the model and the data, which each machine may keep elsewhere: those are
# compared by content (easytune/train/machines.py).
THIS_MACHINE = ("machine_rank", "main_process_ip", "main_process_port", "join_timeout")
NAMED_BY_PATH = ("model", "dataset")


def shared_settings(plan: TrainingPlan) -> dict:
    """The settings every machine of one run must agree on."""
    return {k: v for k, v in plan.to_dict().items() if k not in THIS_MACHINE + NAMED_BY_PATH}


def _is_address(value: str) -> bool:
    """An IP address or a host name: the main machine's address is whatever the user's network calls it."""
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return bool(re.fullmatch(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                                 r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*", value))


def plan_fields():
    """The settings in declaration order, for code that generates forms, flags and docs."""
    return fields(TrainingPlan)


def default(name: str):
    """A setting's default value."""
    return TrainingPlan.__dataclass_fields__[name].default


def field_help(name: str, lang: str | None = "zh") -> str:
    """A setting's help, from its one catalog entry per language."""
    return t(f"plan.field.{name}", lang)


def shown_value(name: str, value, lang: str) -> str:
    """A plan value in the user's words (yes/no, "all linear layers"); numbers and names as they are."""
    key = f"plan.value.bool.{value}" if isinstance(value, bool) else f"plan.value.{name}.{value}"
    return t(key, lang) if key in catalog(lang) else str(value)


def unknown_setting(key) -> UserError:
    """The error for a name that is no setting, wherever it was written (a plan file, --set, --explain)."""
    close = difflib.get_close_matches(str(key), [f.name for f in fields(TrainingPlan)], n=1)
    if close:
        return UserError("plan.unknown_key", key=key, hint=close[0])
    return UserError("plan.unknown_key_no_hint", key=key)
