"""The base line: what the base model already does on the job's own held-out rows, before anything trains.

    base_line(settings, plan)   -> {"asked", "right", "judged", "loss", "log_vocab", "near_chance", "answers", …}

The held-out rows are the ones training will hold out (the dataset's validation file, or the worker's
own split, reproduced exactly), so the figure is the "before" of the run's "after". An answer is right
when it states every key fact of the reference (easytune.evaluation.facts); answers whose reference has
no checkable fact are shown but not counted. A loss near log(vocabulary) means the model reads this
data no better than a blind guess: its tokenizer does not match its weights, and training it would be
wasted — said in plain words before anything starts.
"""

from __future__ import annotations

import math
import time

from easytune.evaluation import facts
from easytune.evaluation.buckets import items_of, read_jsonl, sample
from easytune.evaluation.config import evaluation_config
from easytune.i18n import t
from easytune.models.sanity import MAX_LOSS_SHARE  # the same line as the check at `models add`
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings

DEFAULT_LIMIT = 20


def base_line(settings: Settings, plan: TrainingPlan, *, limit: int = DEFAULT_LIMIT) -> dict:
    from easytune.datasets import held_out, resolve_dataset
    from easytune.evaluation.pair import Pair
    from easytune.evaluation.runner import answer_budget, generate, loss, side
    from easytune.models.registry import resolve_path

    cfg = evaluation_config()
    data = resolve_dataset(settings, plan.dataset)
    started = time.perf_counter()
    with side(Pair(base=resolve_path(settings, plan.model)), "base") as (model, tokenizer):
        rows = read_jsonl(data.train_file)
        if data.val_file:
            held, source = read_jsonl(data.val_file), "val_file"
        else:  # the rows a job on this plan will hold out (easytune.datasets.job_split)
            held, source = [rows[i] for i in sorted(held_out(len(rows), plan.val_ratio, plan.seed))], "holdout"
        if not held:  # nothing is held out (val_ratio 0): the training rows, as they are before training
            held, source = rows, "train_file"
        items = [item for item in items_of(sample(held, limit, cfg["seed"])) if item.reference is not None]
        scored = loss(model, tokenizer, [item.row() for item in items], cfg["batch_size"], cfg["max_seq_len"])
        budgets = [answer_budget(tokenizer, item.reference, cfg["answer"]["ratio"], cfg["answer"]["extra"],
                                 cfg["answer"]["cap"]) for item in items]
        answers = generate(model, tokenizer, [item.messages for item in items], budgets, cfg["generate_batch"])
        log_vocab = math.log(max(2, len(tokenizer)))
    judged = [facts.is_right(answer, item.reference, item.question) for answer, item in zip(answers, items)]
    return {"model": plan.model, "dataset": plan.dataset, "source": source, "asked": len(items),
            "judged": sum(1 for right in judged if right is not None), "right": sum(1 for right in judged if right),
            "loss": None if scored is None else round(scored, 4), "log_vocab": round(log_vocab, 4),
            "near_chance": scored is not None and scored > MAX_LOSS_SHARE * log_vocab,
            "answers": [{"question": item.question, "reference": item.reference, "answer": answer, "right": right,
                         "facts": facts.facts_of(item.reference, item.question)}
                        for item, answer, right in zip(items, answers, judged)],
            "seconds": round(time.perf_counter() - started, 1)}


def base_line_text(result: dict, lang: str = "zh") -> str:
    """The base line in a sentence or two; the tokenizer warning first when the data reads as noise."""
    lines = []
    if result["near_chance"]:
        lines.append("⚠️ " + t("evaluation.baseline.near_chance", lang, loss=f"{result['loss']:.2f}",
                               log_vocab=f"{result['log_vocab']:.2f}", model=result["model"]))
    if result["judged"]:
        lines.append(t("evaluation.baseline.right", lang, right=result["right"], judged=result["judged"],
                       source=t(f"evaluation.baseline.source.{result['source']}", lang)))
    elif result["asked"]:
        lines.append(t("evaluation.baseline.no_facts", lang, asked=result["asked"]))
    if result["loss"] is not None:
        lines.append(t("evaluation.baseline.loss", lang, loss=f"{result['loss']:.2f}",
                       log_vocab=f"{result['log_vocab']:.2f}"))
    return "\n\n".join(lines)
