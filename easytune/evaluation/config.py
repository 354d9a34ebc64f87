"""presets/evaluation.yaml: sizes, answer budgets and verdict thresholds, as data read through typed classes
(the file's comments explain each number)."""

from __future__ import annotations

from dataclasses import dataclass

from easytune.presets import as_dict, bounds, load_preset
from easytune.settings import PRESETS_DIR

CONFIG_FILE = PRESETS_DIR / "evaluation.yaml"


@dataclass(frozen=True)
class Rows:
    seen: int = bounds(ge=1)
    unseen: int = bounds(ge=1)
    gatekeeper: int = bounds(ge=1)
    questions: int = bounds(ge=1)


@dataclass(frozen=True)
class AnswerBudget:
    ratio: float = bounds(gt=0)
    extra: int = bounds(ge=0)
    cap: int = bounds(ge=1)


@dataclass(frozen=True)
class ExactMatch:
    max_chars: int = bounds(ge=1)
    label_share: float = bounds(gt=0, le=1)


@dataclass(frozen=True)
class VerdictLimits:
    learned_match: float = bounds(ge=0, le=1)  # match changes are ROUGE-L points (0 … 1)
    learned_loss_pct: float = bounds(ge=0)  # loss changes are percentages
    transfer_match: float = bounds(ge=0, le=1)
    transfer_loss_pct: float = bounds(ge=0)
    worse_match: float = bounds(ge=0, le=1)
    worse_loss_pct: float = bounds(ge=0)
    some_forgetting_pct: float = bounds(ge=0)
    some_forgetting_match: float = bounds(ge=0, le=1)
    severe_forgetting_pct: float = bounds(ge=0)
    severe_forgetting_match: float = bounds(ge=0, le=1)
    facts_min: int = bounds(ge=1)
    learned_facts: float = bounds(ge=0, le=1)
    transfer_facts: float = bounds(ge=0, le=1)
    general_facts_drop: float = bounds(ge=0, le=1)
    severe_general_facts_drop: float = bounds(ge=0, le=1)
    unread_language_right: float = bounds(ge=0, le=1)
    read_language_right: float = bounds(ge=0, le=1)
    chance_p: float = bounds(gt=0, lt=1)
    mixed_up_min: int = bounds(ge=1)


@dataclass(frozen=True)
class SafetyLimits:
    max_new_tokens: int = bounds(ge=1)
    flag_drop_points: float = bounds(ge=0, le=100)
    flag_base_min: float = bounds(ge=0, le=100)


@dataclass(frozen=True)
class EvaluationConfig:
    seed: int = bounds(ge=0)
    rows: Rows
    max_seq_len: int = bounds(ge=1)
    batch_size: int = bounds(ge=1)
    generate_batch: int = bounds(ge=1)
    answer: AnswerBudget
    exact_match: ExactMatch
    verdict: VerdictLimits
    samples_kept: int = bounds(ge=0)
    safety: SafetyLimits


def evaluation_preset() -> EvaluationConfig:
    """presets/evaluation.yaml, checked; read again when the file changes."""
    return load_preset(EvaluationConfig, CONFIG_FILE)


def evaluation_config() -> dict:
    """The same settings as plain mappings, for the readers that index them by name."""
    return as_dict(evaluation_preset())
