"""How many of a finished job's held-out questions its model answers right: every key fact of the reference
in its answer (easytune.evaluation.facts). A sweep compares its trials by this where the data has facts.

    python -m easytune.evaluation.held_out JOB   ->  {"job_id", "asked", "judged", "right", "accuracy"}

It runs as its own process, so the caller (a sweep driven by the app or the CLI) never loads the
training stack; the questions are the job's own validation rows (easytune.datasets.job_split), a fixed
sample of them, as the blind evaluation's "unseen" bucket asks them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from easytune.evaluation import facts
from easytune.evaluation.buckets import items_of, read_jsonl, sample
from easytune.evaluation.config import evaluation_config
from easytune.i18n import UserError
from easytune.settings import Settings

DEFAULT_LIMIT = 20


def held_out_accuracy(settings: Settings, job_id: str, limit: int = DEFAULT_LIMIT) -> dict:
    from easytune.evaluation.runner import answer_budget, generate, side
    from easytune.evaluation.service import job_files, pair_of

    cfg = evaluation_config()
    _, resolved, _ = job_files(settings, job_id)
    if not resolved.get("val_file") or not Path(resolved["val_file"]).is_file():
        raise UserError("evaluation.missing.unseen")
    items = [item for item in items_of(sample(read_jsonl(Path(resolved["val_file"])), limit, cfg["seed"]))
             if item.reference is not None]
    with side(pair_of(settings, job_id, resolved), "tuned") as (model, tokenizer):
        budgets = [answer_budget(tokenizer, item.reference, cfg["answer"]["ratio"], cfg["answer"]["extra"],
                                 cfg["answer"]["cap"]) for item in items]
        answers = generate(model, tokenizer, [item.messages for item in items], budgets, cfg["generate_batch"])
    judged = [facts.is_right(answer, item.reference, item.question) for answer, item in zip(answers, items)]
    accuracy, known = facts.accuracy(judged)
    return {"job_id": job_id, "asked": len(items), "judged": known, "right": sum(1 for right in judged if right),
            "accuracy": accuracy}


def main(argv: list[str]) -> int:
    from easytune.offline import go_offline
    from easytune.settings import load_settings

    go_offline()
    try:
        result = held_out_accuracy(load_settings(), argv[0])
    except UserError as exc:
        print(json.dumps({"error": exc.key, "params": exc.params}, ensure_ascii=False, default=str))
        return 2
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
