"""How long and in what rhythm the run trains: knowledge retention and the forgetting guard, epochs, warm-up,
scheduler and weight decay, checkpoints and packing."""

from __future__ import annotations

import math

from easytune.jobs.question_variants import ONE_WAY_FACTOR
from easytune.plan.decisions.data import Split
from easytune.plan.draft import Draft, half_epochs, params_text, pct
from easytune.plan.inputs import PlanContext


def decide_retention(ctx: PlanContext, draft: Draft) -> None:
    rules = ctx.rules.retention
    task_key = f"planner.task.{ctx.task}"
    small = ctx.rules.small_model.retention_ratio
    if ctx.task in rules.tasks:
        ratio = (ctx.task_rules.retention_ratio or rules.ratio)
        draft.set("retention_ratio", ratio, "planner.reason.retention_task", pct=pct(ratio), task_key=task_key)
    elif ctx.small_model and ctx.task_rules.sequences_per_row == 1:  # not for preference pairs
        draft.set("retention_ratio", small, "planner.reason.retention_small_model", pct=pct(small),
                  params=params_text(ctx.model.params))
    elif draft.values["method"] in rules.methods:
        draft.set("retention_ratio", rules.ratio, "planner.reason.retention_full", pct=pct(rules.ratio))
    elif ctx.level in rules.levels and ctx.task_rules.sequences_per_row == 1:
        draft.set("retention_ratio", rules.ratio, "planner.reason.retention_level", pct=pct(rules.ratio),
                  level_key=f"planner.level.{ctx.level}")
    else:
        draft.set("retention_ratio", 0.0, "planner.reason.retention_off")
    small = ctx.model.params is not None and ctx.model.params < rules.guard_min_params
    if small:
        draft.set("forgetting_guard", False, "planner.reason.guard_small_model",
                  params=params_text(ctx.model.params))
    else:
        draft.set("forgetting_guard", True, "planner.reason.guard_on")


def train_examples(ctx: PlanContext, values: dict, split: Split) -> int | None:
    """What one epoch really holds: raw text split into pieces, plus the mixed-in general text."""
    examples = float(split.train_rows or 0)
    tokens = ctx.data.tokens
    if ctx.task_rules.split_long_rows and tokens and tokens.get("mean"):
        examples *= max(1.0, float(tokens["mean"]) / values["max_seq_len"])
    ratio = values["retention_ratio"]
    # question copies (short questions get none: at most this), more for answers asked one way only; general text
    # in proportion to the rows before copying and the second questions those extra copies stand in for, as the
    # worker mixes it in
    copies = values.get("question_variants", 0)
    if not split.train_rows:
        return None
    one_way = (ctx.data.ways_asked or {}).get("one_way", 0) if copies else 0
    share = split.train_rows / (split.train_rows + (split.val_rows or 0))  # of the answers, those trained on
    stand_ins = one_way * share * (ONE_WAY_FACTOR - 1)  # their extra copies stand in for second questions
    per_row = copies + ratio / (1 - ratio)  # what each row (or stand-in) brings beside itself
    return max(1, round(examples * (1 + per_row) + stand_ins * per_row))


def decide_epochs(ctx: PlanContext, draft: Draft, split: Split, world: int) -> None:
    rules = ctx.rules.steps
    effective = draft.values["batch_size"] * draft.values["grad_accum"] * world
    if split.size_row is None:
        epochs = float(rules.unknown_rows_epochs)
        draft.ranges["epochs"] = (1.0, epochs * 2)
        draft.set("epochs", epochs, "planner.reason.epochs_unknown", epochs=f"{epochs:g}")
        draft.set("max_steps", 0, "planner.reason.max_steps_unknown")
        return
    base = split.size_row.epochs * (ctx.task_rules.epochs_factor or 1.0)
    epochs = half_epochs(base)
    key = "planner.reason.epochs_task" if ctx.task_rules.epochs_factor else epochs_key(ctx, split)
    if ctx.small_model and split.size_row is ctx.rules.data_size[0]:  # a few rows: the measured case
        epochs = half_epochs(base * ctx.rules.small_model.epochs_factor)
        key = "planner.reason.epochs_small_model"
    factor = ctx.task_rules.variant_epochs_factor
    if draft.values.get("question_variants") and factor != 1:  # each pass shows every question 1 + copies times
        epochs = half_epochs(epochs * factor)
        key = "planner.reason.epochs_question_variants"
    max_epochs = min(rules.max_epochs, (ctx.task_rules.max_epochs or rules.max_epochs))
    if epochs > max_epochs:  # (the small-model reason stands: its passes are the measured ones, capped)
        epochs = float(max_epochs)
        key = key if key == "planner.reason.epochs_small_model" else "planner.reason.epochs_task_cap"
    steps_per_epoch = math.ceil(train_examples(ctx, draft.values, split) / effective)
    if epochs * steps_per_epoch < rules.min_steps and epochs < max_epochs:
        epochs = float(min(max_epochs, math.ceil(rules.min_steps / steps_per_epoch)))
        key = "planner.reason.epochs_min_steps"
    draft.ranges["epochs"] = (max(0.5, half_epochs(epochs / 2)), epochs * 2)
    draft.set("epochs", float(epochs), key, epochs=f"{epochs:g}", rows=split.train_rows,
              steps=math.ceil(epochs * steps_per_epoch), task_key=f"planner.task.{ctx.task}")
    if split.train_rows < rules.tiny_rows:
        draft.warn("planner.warn.tiny_data", rows=split.train_rows)
    steps = math.ceil(draft.values["epochs"] * steps_per_epoch)
    draft.set("max_steps", 0, "planner.reason.max_steps", steps=steps)


def epochs_key(ctx: PlanContext, split: Split) -> str:
    index = next(i for i, row in enumerate(ctx.rules.data_size) if row is split.size_row)
    last = len(ctx.rules.data_size) - 1
    return ("planner.reason.epochs_tiny" if index == 0 else "planner.reason.epochs_large" if index == last
            else "planner.reason.epochs")


def decide_schedule(ctx: PlanContext, draft: Draft) -> None:
    level = ctx.level_rules
    draft.set("warmup_ratio", level.warmup_ratio, "planner.reason.warmup", pct=pct(level.warmup_ratio))
    draft.set("scheduler", level.scheduler, f"planner.reason.scheduler_{level.scheduler}")
    if draft.values["method"] == "full":
        wd = ctx.rules.method.full.weight_decay
        draft.set("weight_decay", wd, "planner.reason.weight_decay_full", value=f"{wd:g}")
    else:
        draft.set("weight_decay", 0.0, "planner.reason.weight_decay_lora")
    draft.set("eval_every", 0, "planner.reason.eval_every")
    draft.set("seed", 42, "planner.reason.seed")


def decide_question_variants(ctx: PlanContext, draft: Draft, split: Split) -> None:
    """Copies of each question with words left out (jobs/question_variants.py) where the task's rule asks for
    them and they were measured: a few rows (each copy adds a row's training time) written with spaces between
    words (on Chinese questions the real model here, which does not read Chinese, was paused by its guard)."""
    count = ctx.task_rules.question_variants
    if not count or split.size_row is None:
        draft.set("question_variants", 0, "planner.reason.question_variants_off")
    elif split.size_row is not ctx.rules.data_size[0]:
        draft.set("question_variants", 0, "planner.reason.question_variants_many_rows", rows=split.train_rows)
    elif (ctx.data.latin_pct or 0) < 50:
        draft.set("question_variants", 0, "planner.reason.question_variants_unspaced")
    else:
        draft.set("question_variants", count, "planner.reason.question_variants_task", count=count,
                  double=count * ONE_WAY_FACTOR, task_key=f"planner.task.{ctx.task}")


ONE_WAY_MIN_ANSWERS = 5  # below this, a share of answers says little


def warn_one_way_asked(ctx: PlanContext, draft: Draft) -> None:
    """For a task that teaches facts to be asked in new words: say so where most answers are asked one way only.
    A small model learns a fact for the words it was asked in; a second question of the user's own wording helps
    more than any copy the plan can make (presets/intents.yaml, the task's `one_way_warning`)."""
    share, ways = ctx.task_rules.one_way_warning, ctx.data.ways_asked
    if share and ways and ways["answers"] >= ONE_WAY_MIN_ANSWERS and ways["one_way"] >= share * ways["answers"]:
        draft.warn("planner.warn.one_way_asked", one_way=ways["one_way"], answers=ways["answers"])


def decide_embedding_noise(ctx: PlanContext, draft: Draft) -> None:
    """Noise on the input embeddings while training (train/embedding_noise.py) where the task's rule sets a
    strength: answering what is meant rather than the words the data used."""
    alpha = ctx.task_rules.embedding_noise
    if alpha:
        draft.set("embedding_noise", alpha, "planner.reason.embedding_noise_task", value=f"{alpha:g}",
                  task_key=f"planner.task.{ctx.task}")
    else:
        draft.set("embedding_noise", 0.0, "planner.reason.embedding_noise_off")


def decide_housekeeping(draft: Draft) -> None:
    """Checkpoints, packing and tracking: the same for every goal, each with what it does for this run."""
    draft.set("save_every", 0, "planner.reason.save_every_eval")
    draft.set("keep_checkpoints", 2, "planner.reason.keep_checkpoints", n=2)
    draft.set("packing", True, "planner.reason.packing")
    draft.set("tensorboard", False, "planner.reason.tensorboard_off")  # an optional package; the app draws the curves
    draft.set("mlflow", False, "planner.reason.mlflow_off")
