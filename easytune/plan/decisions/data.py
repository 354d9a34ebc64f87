"""What the plan trains on: the model and the data named with what is known of them, the validation split,
and the objective the data calls for."""

from __future__ import annotations

from dataclasses import dataclass

from easytune.datasets import import_share
from easytune.plan.draft import Draft, params_text, pct
from easytune.plan.inputs import PlanContext
from easytune.plan.rules import LEVELS, DataSizeRow


@dataclass(frozen=True)
class Split:
    """The rows training and validation get once the split is decided (None: the data was not inspected)."""

    train_rows: int | None
    val_rows: int | None
    size_row: DataSizeRow | None  # the data_size rule for this many training rows


def describe_inputs(ctx: PlanContext, draft: Draft) -> None:
    m = ctx.model
    if m.params:
        draft.set("model", ctx.model_name, "planner.reason.model", model=ctx.model_name,
                  params=params_text(m.params))
    else:
        draft.set("model", ctx.model_name, "planner.reason.model_unknown", model=ctx.model_name)
        draft.warn("planner.warn.no_model_info")
    d = ctx.data
    if d.known:
        draft.set("dataset", ctx.dataset_name, "planner.reason.dataset", dataset=ctx.dataset_name, rows=d.rows,
                  kind_key=f"planner.kind.{d.kind}")
        if d.other_rows:
            draft.warn("planner.warn.mixed_data", rows=d.other_rows, kind_key=f"planner.kind.{d.kind}")
    else:
        draft.set("dataset", ctx.dataset_name, "planner.reason.dataset_unknown", dataset=ctx.dataset_name)
        draft.warn("planner.warn.no_data_stats")
    language = ctx.rules.language
    if (d.chinese_pct or 0) >= language.min_pct and (m.zh_tokens_per_char or 0) >= language.zh_tokens_per_char:
        draft.warn("planner.warn.model_reads_little_chinese", model=ctx.model_name,
                   tokens=f"{m.zh_tokens_per_char:.1f}")
    suggest = ctx.task_rules.suggest_level
    if suggest and LEVELS.index(ctx.level) < LEVELS.index(suggest):
        draft.warn("planner.warn.level_low", level=ctx.level, suggested=suggest,
                   task_key=f"planner.task.{ctx.task}")


def decide_validation(ctx: PlanContext, draft: Draft) -> Split:
    """The held-out share, and whether the run delivers its best or its last weights."""
    rules = ctx.rules.validation
    d = ctx.data
    if d.split_val:
        ratio = import_share(d.split_val, d.total or d.rows)
        draft.set("val_ratio", ratio, "planner.reason.val_import", val=d.split_val)
    elif not d.known:
        draft.set("val_ratio", rules.ratio, "planner.reason.val_default_unknown", pct=pct(rules.ratio))
    elif d.rows < rules.min_rows:
        draft.set("val_ratio", 0.0, "planner.reason.val_none", rows=d.rows)
    elif d.rows * rules.ratio > rules.max_rows:
        ratio = max(rules.min_ratio, round(rules.max_rows / d.rows, 4))
        draft.set("val_ratio", ratio, "planner.reason.val_capped", val=int(d.rows * ratio), pct=pct(ratio))
    else:
        ratio = rules.ratio
        draft.set("val_ratio", ratio, "planner.reason.val_default", val=max(1, int(d.rows * ratio)),
                  pct=pct(ratio))
    ratio = draft.values["val_ratio"]
    if d.known:
        train_rows = max(1, d.rows - d.split_val) if d.split_val else max(1, int(d.rows * (1 - ratio)))
        val_rows = d.split_val or int(d.rows * ratio)
    else:
        train_rows, val_rows = None, None
    split = Split(train_rows, val_rows, ctx.rules.size_row(train_rows))
    if split.val_rows == 0:
        draft.set("keep_best", False, "planner.reason.keep_best_no_val")
    elif split.val_rows is not None and split.val_rows < rules.best_min_rows:
        draft.set("keep_best", False, "planner.reason.keep_best_few", val=split.val_rows)
    else:
        draft.set("keep_best", True, "planner.reason.keep_best")
    return split


def decide_objective(ctx: PlanContext, draft: Draft) -> None:
    """What the loss rewards, from the kind of data: the worker could infer it, but the plan says it."""
    kind = ctx.data.kind if ctx.data.known else None
    objective = {"preference": "dpo", "kto": "kto", "text": "pretrain", "sft": "sft"}.get(kind, "auto")
    draft.set("objective", objective, f"planner.reason.objective_{objective}")
    if objective in ("dpo", "kto"):
        draft.set("dpo_beta", 0.1, f"planner.reason.{objective}_beta", value="0.1")
    else:  # said so, rather than explained as if it mattered
        draft.set("dpo_beta", 0.1, "planner.reason.dpo_beta_unused")
