"""The adapter's shape: rank, scale, dropout and the layers it adapts (all marked unused for a full fine-tune)."""

from __future__ import annotations

from easytune.plan.decisions.data import Split
from easytune.plan.draft import Draft
from easytune.plan.inputs import PlanContext
from easytune.plan.rules import LEVELS

# where a model lacks the layers asked for
WIDER = {"attention_qkv": "attention", "attention": "all_linear", "feed_forward": "all_linear"}


def decide_adapter(ctx: PlanContext, draft: Draft, split: Split) -> None:
    full = draft.values["method"] == "full"
    low, high = ctx.level_rules.r_range
    draft.ranges["lora_r"] = (low, high)
    level_key = f"planner.level.{ctx.level}"
    if full:
        r = ctx.level_rules.rank("upper")
        draft.set("lora_r", r, "planner.reason.lora_unused")
    else:
        pick = ctx.task_rules.rank or (split.size_row.rank if split.size_row else "upper")
        r = high if pick == "upper" else low
        key = ("planner.reason.lora_r_task" if ctx.task_rules.rank == "upper"
               else "planner.reason.lora_r_small_data" if pick == "lower" else "planner.reason.lora_r")
        params = {"r": r, "lo": low, "hi": high, "level_key": level_key}
        rules = ctx.rules.model_size
        if ctx.small_model and r < ctx.rules.small_model.min_rank:
            r, key = ctx.rules.small_model.min_rank, "planner.reason.lora_r_small_model"
            params.update(r=r)
        if ctx.model.hidden:
            cap = max(rules.min_rank, int(ctx.model.hidden * rules.max_rank_share))
            if r > cap:
                r, key = cap, "planner.reason.lora_r_narrow"
                params.update(r=r, hidden=ctx.model.hidden)
        draft.set("lora_r", r, key, **params)
    r = draft.values["lora_r"]
    draft.ranges["lora_alpha"] = (r, 4 * r)
    if full:
        draft.set("lora_alpha", 2 * r, "planner.reason.lora_unused")
    else:
        draft.set("lora_alpha", 2 * r, "planner.reason.lora_alpha", alpha=2 * r, r=r)

    # dropout: by data size, with the task's floor
    floor = ctx.task_rules.lora_dropout_min
    if full:
        draft.set("lora_dropout", 0.05, "planner.reason.lora_unused")
    elif ctx.small_model and floor <= ctx.rules.small_model.lora_dropout:
        value = ctx.rules.small_model.lora_dropout
        draft.set("lora_dropout", value, "planner.reason.dropout_small_model", value=f"{value:g}")
    elif split.size_row is None:
        draft.set("lora_dropout", max(0.05, floor), "planner.reason.dropout_unknown",
                  value=f"{max(0.05, floor):g}")
    else:
        value = max(split.size_row.lora_dropout, floor)
        key = ("planner.reason.dropout_task" if floor > split.size_row.lora_dropout
               else "planner.reason.dropout_small_data" if value >= 0.1
               else "planner.reason.dropout_none" if value == 0 else "planner.reason.dropout")
        draft.set("lora_dropout", value, key, value=f"{value:g}", rows=split.train_rows)

    # which layers
    scope = ctx.task_rules.target_modules or ctx.level_rules.target_modules
    key = {"attention_qkv": "planner.reason.target_qkv", "attention": "planner.reason.target_attention",
           "feed_forward": "planner.reason.target_feed_forward", "all_linear": "planner.reason.target_all"}[scope]
    if scope == "all_linear" and ctx.level == LEVELS[-1]:
        key = "planner.reason.target_all_deep"
    if scope == "all_linear" and ctx.task_rules.target_modules and scope != ctx.level_rules.target_modules:
        key = "planner.reason.target_task"
    if ctx.small_model and scope != "all_linear":
        scope, key = "all_linear", "planner.reason.target_small_model"
    params = {"level_key": level_key, "task_key": f"planner.task.{ctx.task}"}
    groups = ctx.model.linear_modules
    if groups is not None and not full:
        wanted = scope
        while scope in WIDER and not scope_names(groups, scope):
            scope = WIDER[scope]
        if scope != wanted:
            key = "planner.reason.target_fallback"
            params.update(wanted=wanted, scope=scope)
    if full:
        draft.set("target_modules", scope, "planner.reason.lora_unused")
    else:
        draft.set("target_modules", scope, key, **params)

    # how deep: every layer (the upper ones alone train faster, and were measured to teach less)
    draft.set("lora_layers", 1.0, "planner.reason.lora_unused" if full else "planner.reason.lora_layers_all")


def scope_names(groups: dict, scope: str) -> list:
    if scope == "all_linear":
        return list(groups.get("attention", [])) + list(groups.get("feed_forward", []))
    return list(groups.get(scope, []))
