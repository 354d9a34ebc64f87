"""How long a training row may be, and how many tokens a step really computes."""

from __future__ import annotations

from dataclasses import dataclass

from easytune.plan.draft import Draft, round_up
from easytune.plan.inputs import PlanContext


@dataclass(frozen=True)
class StepTokens:
    """Tokens per row as a step computes them."""

    typical: float  # one row as it is: alone (batch 1) or packed with others
    padded: float  # one row in an unpacked batch, padded to the longest beside it


def decide_seq_len(ctx: PlanContext, draft: Draft) -> StepTokens:
    rules = ctx.rules.seq_len
    context = int(ctx.model.context) if ctx.model.context else None
    cap = min(rules.max, context or rules.fallback_context)
    tokens = ctx.data.tokens
    if not tokens or not tokens.get("p99"):
        length = min(rules.fallback, cap)
        length = draft.set("max_seq_len", length, "planner.reason.seq_unknown", length=length)
        return StepTokens(typical=length / 2, padded=length)
    p90, p99 = int(tokens.get("p90") or tokens["p99"]), int(tokens["p99"])
    margin = rules.estimated_margin if tokens.get("estimated", True) else 1.0
    if ctx.task_rules.split_long_rows:  # raw text: long rows become several pieces, none is lost
        length = min(cap, rules.text_chunk, max(rules.min, round_up(p99 * margin, rules.round_to)))
        length = draft.set("max_seq_len", length, "planner.reason.seq_chunks", length=length)
        return StepTokens(typical=min(float(tokens.get("mean") or p90), length), padded=min(p90, length))
    long_tail = p99 > rules.long_tail_ratio * max(1, p90) and not ctx.task_rules.keep_long_rows
    basis, quantile = (p90 + (p99 - p90) * 5 / 9, "95") if long_tail else (p99, "99")
    template = ctx.model.template_tokens or rules.template_tokens  # the model's own, where it was read
    wanted = (basis + template) * margin
    length = max(rules.min, round_up(wanted, rules.round_to))
    key = "planner.reason.seq_long_tail" if long_tail else "planner.reason.seq_from_data"
    params = {"length": min(length, cap), "quantile": quantile, "tokens": int(basis)}
    if length > cap:
        key = "planner.reason.seq_capped"
        params["limit"] = cap
        length = cap
    if tokens.get("estimated", True):
        key += "_estimated"
    length = draft.set("max_seq_len", length, key, **params)
    # what a step really computes, the template in every row
    return StepTokens(typical=min(float(tokens.get("mean") or p90) + template, length),
                      padded=min(p90 + template, length))
