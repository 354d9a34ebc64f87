"""What a sweep varies and over which values: around the plan's own value, within the setting's allowed range.

    search_space(plan, ["learning_rate", "lora_r", "epochs"])
    -> {"learning_rate": {"kind": "log", "low": 5e-4, "high": 8e-3},
        "lora_r": {"kind": "choice", "choices": [4, 8, 16]}, "epochs": {"kind": "int", "low": 1, "high": 6}}

The space is decided once, when the sweep is created, and kept with it: every trial of a study draws from
the same ranges. Values the user asks to try are always inside it (a range widens to hold them).
A trial trains a share of the plan's steps: `trial_plan` shortens the run, `full_plan` is what the values
would train in full; the two differ in the length of the run alone.
"""

from __future__ import annotations

import math
from dataclasses import fields

from easytune.i18n import UserError
from easytune.plan.schema import TrainingPlan, unknown_setting

DEFAULT_VARY = ("learning_rate", "lora_r", "epochs")
LOG_SCALE = ("learning_rate", "dpo_beta")  # a step size: what matters is its order of magnitude
LOG_SPREAD = 4.0  # log-scale settings range from a quarter of the plan's value to four times it
SPREAD = 2.0  # the others from half to twice it (a whole number: the neighbouring ranks ½×, 1×, 2×)
# Numbers and choices a sweep leaves alone: varying them would not compare what is learned on the same questions.
# val_ratio and seed decide which rows are held out; max_steps is the trial's length; the rest is bookkeeping
# (evaluations, checkpoints), what the loss means (objective) or where the run happens; a new version's
# settings (continual, replay) mean nothing to a trial, which starts from the base; question copies change the
# rows trained on, as the data does.
NOT_SWEPT = ("val_ratio", "seed", "max_steps", "eval_every", "save_every", "keep_checkpoints", "objective", "device",
             "num_processes", "num_machines", "machine_rank", "main_process_port", "join_timeout",
             "orthogonal_weight", "replay_ratio", "question_variants", "fsdp")


def _field(name: str):
    for f in fields(TrainingPlan):
        if f.name == name:
            return f
    raise unknown_setting(name)


def variable_settings() -> list[str]:
    """The settings a sweep can vary: numbers and choices that change what is learned (not switches, the model or
    the data)."""
    return [f.name for f in fields(TrainingPlan)
            if (f.metadata["choices"] or f.metadata["lo"] is not None) and f.name not in NOT_SWEPT]


def parse_vary(vary: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`learning_rate,lora_r` (or a list) as setting names, each checked against the plan's settings."""
    names = [n.strip() for n in (vary.split(",") if isinstance(vary, str) else vary or DEFAULT_VARY) if n.strip()]
    if not names:
        raise UserError("sweep.error.vary_empty", settings=", ".join(variable_settings()))
    for name in names:
        _field(name)  # an unknown name: the same error a plan file or --set gives
        if name not in variable_settings():
            raise UserError("sweep.error.not_variable", key=name, settings=", ".join(variable_settings()))
    return list(dict.fromkeys(names))


def search_space(plan: TrainingPlan, vary: list[str], tries: list[dict] | None = None) -> dict[str, dict]:
    """Each varied setting's values around the plan's, clipped to its allowed range and widened to hold `tries`."""
    if "epochs" in vary and plan.max_steps:
        raise UserError("sweep.error.epochs_fixed", steps=plan.max_steps)
    space = {name: _around(name, getattr(plan, name)) for name in vary}
    for values in tries or []:
        for name, value in values.items():
            space[name] = _widened(space[name], value)
    for name, entry in space.items():
        single = len(entry["choices"]) < 2 if entry["kind"] == "choice" else entry["low"] >= entry["high"]
        if single:  # (a rank of 0, say: nothing lies around it)
            raise UserError("sweep.error.nothing_to_vary", key=name, value=getattr(plan, name))
    return space


def _around(name: str, value) -> dict:
    meta = _field(name).metadata
    if meta["choices"]:
        return {"kind": "choice", "choices": list(meta["choices"])}
    lo, hi = meta["lo"], meta["hi"]
    if name == "epochs" and value >= 1:  # whole passes over the data, half as many to twice as many
        return {"kind": "int", "low": max(1, math.floor(value / SPREAD)),
                "high": min(int(hi), math.ceil(value * SPREAD))}
    if isinstance(value, int):  # a rank: the neighbouring powers of two around the plan's value
        ranks = sorted({min(hi, max(lo, round(value * factor))) for factor in (1 / SPREAD, 1, SPREAD)})
        return {"kind": "choice", "choices": ranks}
    if name in LOG_SCALE:
        return {"kind": "log", "low": max(lo, value / LOG_SPREAD), "high": min(hi, value * LOG_SPREAD)}
    if value > 0:
        return {"kind": "float", "low": max(lo, value / SPREAD), "high": min(hi, value * SPREAD)}
    return {"kind": "float", "low": lo, "high": lo + (hi - lo) / 4}  # off in the plan: try a little of it


def _widened(entry: dict, value) -> dict:
    if entry["kind"] == "choice":
        return entry if value in entry["choices"] else {**entry, "choices": sorted([*entry["choices"], value])}
    return {**entry, "low": min(entry["low"], value), "high": max(entry["high"], value)}


def parse_tries(items: list[str] | None, vary: list[str], plan: TrainingPlan) -> list[dict]:
    """`--try learning_rate=1e-4,lora_r=16` (one trial each) as {setting: value}, checked like a plan's values."""
    import yaml

    tries = []
    for item in items or []:
        values = {}
        for pair in item.split(","):
            key, sep, text = pair.partition("=")
            if not sep or not key.strip():
                raise UserError("sweep.error.bad_try", item=item)
            values[key.strip()] = yaml.safe_load(text)
        tries.append(checked_values(plan, vary, values))
    return tries


def checked_values(plan: TrainingPlan, vary: list[str], values: dict) -> dict:
    """Values for the varied settings, coerced and range-checked by the plan's own rules."""
    for key in values:
        if key not in vary:
            _field(key)
            raise UserError("sweep.error.try_not_varied", key=key, vary=", ".join(vary))
    full = full_plan(plan, values)
    return {key: getattr(full, key) for key in values}


def distributions(space: dict[str, dict]) -> dict:
    """The space as optuna distributions (optuna is imported here, by the driver only)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for name, entry in space.items():
        if entry["kind"] == "choice":
            out[name] = CategoricalDistribution(entry["choices"])
        elif entry["kind"] == "int":
            out[name] = IntDistribution(entry["low"], entry["high"])
        else:
            out[name] = FloatDistribution(entry["low"], entry["high"], log=entry["kind"] == "log")
    return out


def full_plan(plan: TrainingPlan, values: dict) -> TrainingPlan:
    """The plan with these values, checked like any plan."""
    return TrainingPlan.from_dict({**plan.to_dict(), **values})


def trial_plan(plan: TrainingPlan, values: dict, fraction: float) -> TrainingPlan:
    """The plan with these values, trained for `fraction` of its steps: the same data, batch and schedule shape,
    fewer passes (or fewer steps, where the plan counts steps)."""
    full = full_plan(plan, values)
    if fraction >= 1:
        return full
    if full.max_steps:
        return full_plan(full, {"max_steps": max(1, math.ceil(full.max_steps * fraction))})
    lo = _field("epochs").metadata["lo"]
    return full_plan(full, {"epochs": max(lo, round(full.epochs * fraction, 4))})
