"""The planner's rules: presets/intents.yaml as typed classes, checked by the shared preset checker.

    load_intents() -> Intents          intents.levels["L2"].learning_rate, intents.tasks["domain"].rank, …

Each class below is one section of the file; the file's comments explain the numbers. A task's
optional adjustment that is absent takes the default that means "no adjustment".
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from easytune.presets import PresetError, bounds, check_preset, load_preset

INTENTS_PATH = Path(__file__).resolve().parents[2] / "presets" / "intents.yaml"

Task = Literal["chat", "domain", "style", "extraction", "preference", "pretrain"]
Level = Literal["L1", "L2", "L3"]
DataKind = Literal["sft", "preference", "kto", "text"]
Scope = Literal["attention_qkv", "attention", "feed_forward", "all_linear"]
Device = Literal["cpu", "mps", "cuda", "xpu"]
RankEnd = Literal["lower", "upper"]  # which end of a level's r_range

TASKS: tuple[str, ...] = typing.get_args(Task)
LEVELS: tuple[str, ...] = typing.get_args(Level)
DATA_KINDS: tuple[str, ...] = typing.get_args(DataKind)
SCOPES: tuple[str, ...] = typing.get_args(Scope)


class IntentsError(PresetError):
    """presets/intents.yaml breaks its schema (a packaging error, not something a user can fix)."""


@dataclass(frozen=True)
class LevelRule:
    r_range: tuple[int, int] = bounds(ge=1)  # [lower, upper]: the two ranks data size and task pick from
    target_modules: Scope
    learning_rate: float = bounds(gt=0)
    lr_range: tuple[float, float] = bounds(gt=0)
    warmup_ratio: float = bounds(ge=0, le=0.5)
    scheduler: Literal["cosine", "linear", "constant"]

    def __post_init__(self) -> None:
        if self.r_range[0] > self.r_range[1]:
            raise ValueError("r_range must be [lower, upper]")
        if not self.lr_range[0] <= self.learning_rate <= self.lr_range[1]:
            raise ValueError("learning_rate outside lr_range")

    def rank(self, end: RankEnd) -> int:
        return self.r_range[1] if end == "upper" else self.r_range[0]


@dataclass(frozen=True)
class TaskRule:
    needs: tuple[DataKind, ...]
    lr_factor: float = bounds(1.0, gt=0)
    epochs_factor: float | None = bounds(None, gt=0)
    retention_ratio: float | None = bounds(None, gt=0, lt=0.9)
    max_epochs: float | None = bounds(None, gt=0)
    rank: RankEnd | None = None
    target_modules: Scope | None = None
    lora_dropout_min: float = bounds(0.0, ge=0, le=0.5)
    embedding_noise: float = bounds(0.0, ge=0, le=50)
    question_variants: int = bounds(0, ge=0, le=8)
    variant_epochs_factor: float = bounds(1.0, gt=0)
    one_way_warning: float | None = bounds(None, gt=0, le=1)
    keep_long_rows: bool = False
    split_long_rows: bool = False
    suggest_level: Level | None = None
    full_allowed: bool = True
    sequences_per_row: int = bounds(1, ge=1)
    reference_forward: bool = False
    method_needed: str | dict[DataKind, str] | None = None

    def __post_init__(self) -> None:
        if not self.needs:
            raise ValueError("needs must name at least one kind of data")


@dataclass(frozen=True)
class DataSizeRow:
    max_rows: int | None = bounds(ge=1)  # null: every larger set
    epochs: float = bounds(gt=0)
    effective_batch: int = bounds(ge=1)
    lora_dropout: float = bounds(ge=0, le=0.5)
    rank: RankEnd


@dataclass(frozen=True)
class Steps:
    min_steps: int = bounds(ge=1)
    max_epochs: int = bounds(ge=1)
    tiny_rows: int = bounds(ge=1)
    unknown_rows_epochs: float = bounds(gt=0)


@dataclass(frozen=True)
class ModelSize:
    reference_params: float = bounds(gt=0)
    exponent: float = bounds(gt=0)
    max_factor: float = bounds(gt=0)
    max_learning_rate: float = bounds(gt=0)
    max_rank_share: float = bounds(gt=0, le=1)
    min_rank: int = bounds(ge=1)


@dataclass(frozen=True)
class SmallModel:
    max_params: float = bounds(gt=0)
    learning_rate: float = bounds(gt=0)
    epochs_factor: float = bounds(gt=0)
    retention_ratio: float = bounds(ge=0, le=1)
    min_rank: int = bounds(ge=1)
    lora_dropout: float = bounds(ge=0, le=1)


@dataclass(frozen=True)
class FullMethod:
    max_params: float = bounds(gt=0)
    levels: tuple[Level, ...]
    min_rows: int = bounds(ge=1)
    max_memory_share: float = bounds(gt=0)
    lr_factor: float = bounds(gt=0)
    weight_decay: float = bounds(ge=0, le=1)


@dataclass(frozen=True)
class Method:
    full: FullMethod


@dataclass(frozen=True)
class Retention:
    ratio: float = bounds(ge=0, le=0.9)
    tasks: tuple[Task, ...]
    levels: tuple[Level, ...]
    methods: tuple[Literal["lora", "qlora", "full"], ...]
    guard_min_params: float = bounds(gt=0)


@dataclass(frozen=True)
class SeqLen:
    template_tokens: int = bounds(ge=1)
    estimated_margin: float = bounds(gt=0)
    long_tail_ratio: float = bounds(gt=0)
    round_to: int = bounds(ge=1)
    min: int = bounds(ge=1)
    max: int = bounds(ge=1)
    fallback: int = bounds(ge=1)
    fallback_context: int = bounds(ge=1)
    text_chunk: int = bounds(ge=1)


@dataclass(frozen=True)
class Memory:
    micro_batch_cap: dict[Device, int] = bounds(ge=1)
    min_seq_len: int = bounds(ge=1)


@dataclass(frozen=True)
class Validation:
    ratio: float = bounds(gt=0, le=1)
    max_rows: int = bounds(ge=1)
    min_ratio: float = bounds(gt=0, le=1)
    min_rows: int = bounds(ge=1)
    best_min_rows: int = bounds(ge=1)


@dataclass(frozen=True)
class Language:
    zh_tokens_per_char: float = bounds(gt=0)
    min_pct: float = bounds(ge=0, le=100)


@dataclass(frozen=True)
class CudaRate:
    min_gb: float = bounds(ge=0)
    bf16: float = bounds(gt=0)


@dataclass(frozen=True)
class Throughput:
    calibrated_share: dict[Literal["cpu", "cpu_bf16", "cuda", "mps", "xpu"], float] = bounds(gt=0, le=1)
    cpu_gflops_per_core: float = bounds(gt=0)
    cuda_tflops: tuple[CudaRate, ...]  # the first row whose min_gb the GPU's memory reaches
    cuda_fp32_tflops: float = bounds(gt=0)
    mps_tflops: float = bounds(gt=0)
    xpu_tflops: float = bounds(gt=0)
    step_overhead_s: dict[Device, float] = bounds(ge=0)
    evaluations: int = bounds(ge=1)
    startup_s: float = bounds(gt=0)
    load_mb_per_s: float = bounds(gt=0)
    slow_hours: float = bounds(gt=0)


@dataclass(frozen=True)
class Disk:
    fixed_mib: int = bounds(ge=1)
    headroom: float = bounds(gt=0)


@dataclass(frozen=True)
class Intents:
    schema: Literal[1]
    levels: dict[Level, LevelRule]
    tasks: dict[Task, TaskRule]
    data_size: tuple[DataSizeRow, ...]
    steps: Steps
    model_size: ModelSize
    small_model: SmallModel
    method: Method
    retention: Retention
    seq_len: SeqLen
    memory: Memory
    validation: Validation
    language: Language
    throughput: Throughput
    disk: Disk

    def __post_init__(self) -> None:
        bounds_ = [row.max_rows for row in self.data_size]
        if not bounds_ or bounds_[-1] is not None:
            raise ValueError("data_size: the last row must have max_rows: null")
        if None in bounds_[:-1] or bounds_[:-1] != sorted(set(bounds_[:-1])):
            raise ValueError("data_size: max_rows must be increasing integers")

    def size_row(self, rows: int | None) -> DataSizeRow | None:
        """The data_size row for this many training rows (None when the count is unknown)."""
        if rows is None:
            return None
        return next(row for row in self.data_size if row.max_rows is None or rows <= row.max_rows)


def validate_intents(data: object, file: str = INTENTS_PATH.name) -> Intents:
    """Parsed intents YAML → Intents; raises IntentsError naming every bad key."""
    return check_preset(Intents, data, file, IntentsError)


def load_intents(path: str | Path | None = None) -> Intents:
    """The rules from presets/intents.yaml (or `path`), checked; read again when the file changes."""
    return load_preset(Intents, path or INTENTS_PATH, IntentsError)
