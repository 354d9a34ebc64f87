"""Training health in plain words: overfitting, forgetting, divergence, stalling, too few steps.

Reads a job's metric series (as jobs.metrics returns them) and the thresholds in presets/health.yaml;
returns warnings as message keys with parameters, each with a suggested action.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from easytune.presets import as_dict, bounds, load_preset
from easytune.settings import PRESETS_DIR

HEALTH_FILE = PRESETS_DIR / "health.yaml"


# presets/health.yaml, as the preset checker reads it (the file's comments explain each number)
@dataclass(frozen=True)
class ForgettingLimits:
    warn_pct: float = bounds(ge=0)
    warn_nats: float = bounds(ge=0)
    stop_pct: float = bounds(ge=0)
    stop_nats: float = bounds(ge=0)
    resume_margin_pct: float = bounds(ge=0)
    reference_lines: int = bounds(ge=1)
    max_time_share: float = bounds(gt=0, le=1)

    def __post_init__(self) -> None:
        if self.stop_pct < self.warn_pct or self.stop_nats < self.warn_nats:
            raise ValueError("the stop thresholds must not be below the warn thresholds")


@dataclass(frozen=True)
class EvalCount:
    evals: int = bounds(ge=1)


@dataclass(frozen=True)
class DivergenceLimit:
    spike_ratio: float = bounds(gt=1)


@dataclass(frozen=True)
class HealthThresholds:
    forgetting: ForgettingLimits
    overfitting: EvalCount
    divergence: DivergenceLimit
    stall: EvalCount
    too_few_steps: int = bounds(ge=1)


def health_thresholds() -> HealthThresholds:
    """presets/health.yaml, checked; read again when the file changes."""
    return load_preset(HealthThresholds, HEALTH_FILE)


def thresholds() -> dict:
    """The same thresholds as plain mappings, for readers that index them by name."""
    return as_dict(health_thresholds())


# The share of general text knowledge retention mixes in when it is suggested; a run at or above it
# already has retention on, and is told to lower its rate instead.
RETENTION_SHARE = 0.3


def _warning(name: str, level: str = "warning", **params) -> dict:
    return {"key": f"health.{name}", "action": f"health.{name}_action", "level": level, "params": params}


def forgetting_level(pct: float, nats: float) -> str | None:
    """'error' past the stop threshold, 'warning' past the warn threshold, else None."""
    limits = health_thresholds().forgetting
    if pct > limits.stop_pct and nats > limits.stop_nats:
        return "error"
    if pct > limits.warn_pct and nats > limits.warn_nats:
        return "warning"
    return None


def assess(series: dict[str, list[tuple[int, float]]], total_steps: int = 0, retention: float = 0.0,
           guard: bool = True, val_trusted: bool = True) -> list[dict]:
    """The warnings a run's curves call for. `retention`: the plan's share of general text, since knowledge
    retention is no advice against forgetting in a run that already uses it. `guard`: the plan's forgetting
    guard; without it (a model too small to learn without forgetting) forgetting past the stop threshold is
    a warning, as the plan told the user, not a stop sign. `val_trusted`: whether the held-out rows are
    enough for their loss to say anything (jobs.status.held_out_trusted); a handful rises while the run
    learns what it was given, so neither a rise nor a standstill of it is a warning then."""
    limits = health_thresholds()
    loss = [v for _, v in series.get("loss", [])]
    val = [v for _, v in series.get("val_loss", [])]
    cf = [v for _, v in series.get("cf_pct", [])]
    cf_nats = [v for _, v in series.get("cf_score", [])]
    out = []
    if any(not math.isfinite(v) for v in loss):
        out.append(_warning("diverged", "error"))
    elif len(loss) > 20:
        recent = statistics.median(loss[-21:-1])
        if loss[-1] > limits.divergence.spike_ratio * recent:
            out.append(_warning("spike", ratio=round(loss[-1] / recent, 1)))
    val = val if val_trusted else []
    k = limits.overfitting.evals
    if len(val) > k and all(val[-i] > val[-i - 1] for i in range(1, k + 1)):
        train_at_evals = [v for _, v in series.get("loss", [])][-k * 2:]
        if len(train_at_evals) >= 2 and train_at_evals[-1] < train_at_evals[0]:
            out.append(_warning("overfitting", evals=k))
    if cf and cf_nats:
        level = forgetting_level(cf[-1], cf_nats[-1])
        level = "warning" if level == "error" and not guard else level
        if level:
            out.append(_warning("forgetting", level, pct=round(cf[-1], 1)))
            if retention >= RETENTION_SHARE:
                out[-1]["action"] = "health.forgetting_with_retention_action"
    s = limits.stall.evals
    if len(val) > s and min(val[-s:]) >= min(val[:-s]):
        out.append(_warning("stalled", "info", evals=s))
    if 0 < total_steps < limits.too_few_steps:
        out.append(_warning("too_few_steps", "info", steps=total_steps))
    return out
