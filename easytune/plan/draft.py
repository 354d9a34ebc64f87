"""The plan being written: each value with its reason, what the planner would have chosen beside a
user's own value, the ranges a user's value is checked against, warnings and estimates. Decisions write
here and read the values decided before them; nothing else carries state between decisions.

Also the small number formats the reasons use (2e-4, 12.5 %, 1.2 GB, 1.1M parameters).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from easytune.models.estimate import GIB


@dataclass
class Draft:
    overrides: dict[str, Any]  # the user's settings: they win over the planner's choice
    values: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, dict] = field(default_factory=dict)  # name -> {"key", "params"}
    recommended: dict[str, Any] = field(default_factory=dict)  # the planner's choice, even where the user's won
    ranges: dict[str, tuple] = field(default_factory=dict)  # what this intent recommends, for the user's value
    warnings: list[dict] = field(default_factory=list)
    estimates: dict[str, Any] = field(default_factory=dict)

    def user(self, name: str) -> bool:
        return name in self.overrides

    def set(self, name: str, value, key: str, /, **params) -> Any:
        """Record the planner's choice; a user's value wins and keeps the recommendation beside it."""
        self.recommended[name] = value
        if self.user(name):
            value = self.overrides[name]
            self.values[name] = value
            self.reasons[name] = {"key": "planner.reason.user_set",
                                  "params": {"value": show(name, value),
                                             "recommended": show(name, self.recommended[name])}}
            return value
        self.values[name] = value
        self.reasons[name] = {"key": key, "params": params}
        return value

    def warn(self, key: str, /, **params) -> None:
        self.warnings.append({"key": key, "params": params})


def show(name: str, value) -> str:
    """A setting's value as a reason writes it."""
    if name == "learning_rate":
        return fmt_lr(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def fmt_lr(value: float) -> str:
    """2e-4, 1.5e-05 -> '1.5e-5': short and exact enough to read."""
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def round_lr(value: float) -> float:
    """Two significant digits: a plan says 2e-3, not 0.0018257."""
    return float(fmt_lr(value))


def pct(share: float) -> str:
    return f"{share * 100:.3g}"


def gb(n: float) -> str:
    return f"{n / GIB:.1f}"


def params_text(n: int | None) -> str:
    if not n:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.0f}K"


def round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def half_epochs(value: float) -> float:
    return max(0.5, math.ceil(value * 2 - 1e-9) / 2)


def share_over(tokens: dict | None, length: int) -> float | None:
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
