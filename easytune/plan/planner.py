"""The intent planner: the user's two answers (task, level) → a complete TrainingPlan with a reason
for every value.

    propose(model="easytune-tiny", dataset="demo:shop_faq_zh", task="chat", level="L2",
            model_info=info.to_dict(), data_stats=report.to_dict(), hardware=probe().to_dict())
        -> Proposal(plan, reasons, user_set, warnings, estimates)

The rules are data, in presets/intents.yaml (read through easytune/plan/rules.py). The inputs are
read once into a frozen PlanContext (easytune/plan/inputs.py); the decisions (easytune/plan/decisions/)
then run in the order the settings depend on each other: data → validation split → device → sequence
length → method → number format → adapter shape → learning rate → batch (from the memory estimator)
→ knowledge retention → epochs → time, disk and memory estimates. Each writes its values with their
reasons into the Draft (easytune/plan/draft.py) and returns what a later decision needs beyond them.
A setting the user gave in `overrides` is kept as given (and flagged when it is outside what this
intent recommends); the settings that depend on it are planned around it. A setting with no rule here keeps its default.

Every reason and warning is a message key with parameters (`planner.*` in the catalogs), so each
door renders it in its own language. Inputs are plain dicts (ModelInfo.to_dict(), a catalog entry,
ImportReport.to_dict(), Hardware.to_dict()) or the objects themselves; a missing one is replaced by
a safe fallback that the reasons name. Nothing here imports the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from easytune.i18n import UserError, t
from easytune.plan.decisions.adapter import decide_adapter
from easytune.plan.decisions.data import decide_objective, decide_validation, describe_inputs
from easytune.plan.decisions.estimates import estimate_costs
from easytune.plan.decisions.learning_rate import decide_learning_rate
from easytune.plan.decisions.length import decide_seq_len
from easytune.plan.decisions.machine import decide_machine, decide_precision
from easytune.plan.decisions.memory import decide_batch, decide_method, decide_sharding
from easytune.plan.decisions.schedule import (
    decide_embedding_noise,
    decide_epochs,
    decide_housekeeping,
    decide_question_variants,
    decide_retention,
    decide_schedule,
    warn_one_way_asked,
)
from easytune.plan.decisions.user_values import check_user_values
from easytune.plan.decisions.versions import decide_versions
from easytune.plan.draft import Draft, show
from easytune.plan.inputs import PlanContext, build_context
from easytune.plan.rules import (  # noqa: F401  (INTENTS_PATH, IntentsError, validate_intents: public names)
    INTENTS_PATH,
    LEVELS,
    TASKS,
    IntentsError,
    load_intents,
    validate_intents,
)
from easytune.plan.schema import TrainingPlan
from easytune.plan.task_choice import AUTO


def choices() -> dict:
    """Tasks and levels for a form: ids with their label and help message keys."""
    rules = load_intents()
    return {  # first, and the default: the goal picked from the data (easytune.plan.task_choice)
        "tasks": [{"id": AUTO, "label": f"planner.task.{AUTO}", "help": f"planner.task_help.{AUTO}", "needs": []}]
        + [{"id": k, "label": f"planner.task.{k}", "help": f"planner.task_help.{k}",
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
        intent = dict(self.intent)
        if "task_reason" in intent:  # the goal picked from the data (easytune.plan.task_choice)
            intent["task_text"] = self.task_text(lang)
        return {"plan": self.plan.to_dict(), "reasons": reasons, "user_set": list(self.user_set),
                "warnings": warnings, "estimates": dict(self.estimates), "intent": intent}

    def task_text(self, lang: str = "zh") -> str | None:
        """Which goal was picked from the data, and why; None where the user picked it."""
        reason = self.intent.get("task_reason")
        return _render(reason, lang) if reason else None


# ---------------------------------------------------------------------------------------------
# the decisions, in the order the settings depend on each other


def _decide(ctx: PlanContext) -> Proposal:
    draft = Draft(overrides=ctx.overrides)
    describe_inputs(ctx, draft)
    split = decide_validation(ctx, draft)  # rows for training and validation, and their data-size rule
    world = decide_machine(ctx, draft)  # processes sharing each batch
    load = decide_seq_len(ctx, draft)  # tokens a step computes per row
    decide_method(ctx, draft)
    decide_objective(ctx, draft)
    decide_precision(ctx, draft)
    decide_adapter(ctx, draft, split)
    decide_learning_rate(ctx, draft)
    decide_sharding(ctx, draft, world)
    load = decide_batch(ctx, draft, split, load, world)  # (rows shortened to fit memory compute fewer tokens)
    decide_retention(ctx, draft)
    decide_question_variants(ctx, draft, split)
    warn_one_way_asked(ctx, draft)
    decide_embedding_noise(ctx, draft)
    decide_epochs(ctx, draft, split, world)
    decide_schedule(ctx, draft)
    decide_housekeeping(draft)
    decide_versions(draft)
    estimate_costs(ctx, draft, split, load, world)
    check_user_values(ctx, draft)
    for f in fields(TrainingPlan):  # a setting this planner has no rule for keeps its default
        if f.name not in draft.values:
            draft.set(f.name, f.default, "planner.reason.default", value=show(f.name, f.default))
    plan = TrainingPlan(**draft.values)
    method_needed = ctx.task_rules.method_needed
    if isinstance(method_needed, dict):  # by the kind of data: labelled answers (KTO)
        method_needed = method_needed.get(ctx.data.kind)
    if method_needed:
        draft.warnings.insert(0, {"key": "planner.warn.method_needed",
                                  "params": {"method_key": f"planner.method.{method_needed}"},
                                  "method_needed": method_needed})
    intent = {"task": ctx.task, "level": ctx.level, "data_kind": ctx.data.kind, "method_needed": method_needed}
    ordered = {f.name: draft.reasons[f.name] for f in fields(TrainingPlan)}
    return Proposal(plan=plan, reasons=ordered, user_set=[f.name for f in fields(TrainingPlan) if draft.user(f.name)],
                    warnings=draft.warnings, estimates=draft.estimates, intent=intent)


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
    ctx = build_context(load_intents(), model=model, dataset=dataset, task=task, level=level,
                        model_info=model_info, data_stats=data_stats, hardware=hardware, overrides=overrides,
                        tokens_per_s=tokens_per_s, matmul_flops=matmul_flops, cpu_bf16_flops=cpu_bf16_flops)
    return _decide(ctx)
