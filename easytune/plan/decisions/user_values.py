"""The user's own settings against what this intent recommends: each one outside it gets a warning."""

from __future__ import annotations

from easytune.plan.draft import Draft, pct, share_over, show
from easytune.plan.inputs import PlanContext


def check_user_values(ctx: PlanContext, draft: Draft) -> None:
    for name in ctx.overrides:
        value = draft.values.get(name)
        if name in draft.ranges:
            lo, hi = draft.ranges[name]
            if not lo <= value <= hi:
                draft.warnings.append({"key": "planner.warn.outside_range", "field": name,
                                       "params": {"field_key": f"planner.field_name.{name}",
                                                  "value": show(name, value), "lo": show(name, lo),
                                                  "hi": show(name, hi)}})
        elif name in ("target_modules", "method") and value != draft.recommended.get(name):
            draft.warnings.append({"key": "planner.warn.not_recommended", "field": name,
                                   "params": {"field_key": f"planner.field_name.{name}",
                                              "value": show(name, value),
                                              "recommended": show(name, draft.recommended[name])}})
    if draft.user("max_seq_len") and ctx.data.tokens:
        cut = share_over(ctx.data.tokens, draft.values["max_seq_len"])
        if cut and cut > 0.05:
            draft.warnings.append({"key": "planner.warn.seq_cut", "field": "max_seq_len",
                                   "params": {"pct": pct(cut), "length": draft.values["max_seq_len"]}})
    if draft.values["method"] == "qlora" and not (ctx.device == "cuda" and ctx.hw is not None
                                                  and ctx.hw.four_bit):
        draft.warnings.append({"key": "planner.warn.qlora_unavailable", "field": "method", "params": {}})
    context = ctx.model.context
    if context and draft.values["max_seq_len"] > context:
        draft.warn("planner.warn.over_context", length=draft.values["max_seq_len"], context=context)
