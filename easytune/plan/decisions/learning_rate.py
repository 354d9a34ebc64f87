"""The learning rate: the level's, times the task's factor, scaled for small models and full fine-tuning."""

from __future__ import annotations

from easytune.plan.draft import Draft, fmt_lr, params_text, round_lr
from easytune.plan.inputs import PlanContext


def decide_learning_rate(ctx: PlanContext, draft: Draft) -> None:
    level = ctx.level_rules
    rules = ctx.rules.model_size
    task_factor = ctx.task_rules.lr_factor
    if task_factor > 1.0 and draft.values["method"] == "full":
        task_factor = 1.0  # a larger step is for an add-on's few weights, never for every weight
    base = level.learning_rate * task_factor
    lo, hi = (x * task_factor for x in level.lr_range)
    params = {"lr": None, "base": fmt_lr(base), "level_key": f"planner.level.{ctx.level}",
              "task_key": f"planner.task.{ctx.task}", "level_rate": fmt_lr(level.learning_rate)}
    factor = 1.0
    if ctx.model.params:
        factor = (rules.reference_params / ctx.model.params) ** rules.exponent
        factor = min(rules.max_factor, max(1.0, factor))
    lr = base * factor
    key = "planner.reason.lr_level" if task_factor == 1.0 else (
        "planner.reason.lr_task" if task_factor < 1.0 else "planner.reason.lr_task_facts")
    if factor > 1.0 and task_factor <= 1.0:  # (a task's own larger rate says why it is larger)
        key = "planner.reason.lr_small_model"
        params["params"] = params_text(ctx.model.params)
    if draft.values["method"] == "full":
        full = ctx.rules.method.full.lr_factor
        lr, lo, hi = lr * full, lo * full, hi * full
        key = "planner.reason.lr_full"
    if ctx.small_model and draft.values["method"] != "full":
        lr = ctx.rules.small_model.learning_rate * min(task_factor, 1.0)
        key = "planner.reason.lr_small_model_fixed"
        params["params"] = params_text(ctx.model.params)
    capped = min(lr, rules.max_learning_rate)
    if capped < lr:
        key = "planner.reason.lr_capped"
        params["limit"] = fmt_lr(rules.max_learning_rate)
    lr = round_lr(capped)
    params["lr"] = fmt_lr(lr)
    draft.ranges["learning_rate"] = (min(lr, round_lr(lo * factor)), max(lr, round_lr(hi * factor)))
    if not ctx.model.params:
        key = "planner.reason.lr_unknown_model"
    draft.set("learning_rate", lr, key, **params)
