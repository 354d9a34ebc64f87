"""The goal picked from the data when the user leaves it to EasyTune (`auto`, the default in the wizard and the CLI).

A question-answer set whose answers hold facts (numbers, names, dates, codes: easytune.evaluation.facts) is a
set of facts to teach: under "chat" a real model learns their style and not the facts (SmolLM2-135M-Instruct on a
shop's 20 facts, each taught by two questions: 1 of the 40 taught questions answered right after the chat plan,
38 of 40 after the domain plan; presets/intents.yaml), so such data gets the domain plan. Pairs of a better and
a worse answer get preference training, raw text continued pre-training, and every other conversation set the
chat plan.
"""

from __future__ import annotations

from pathlib import Path

from easytune.settings import Settings

AUTO = "auto"
FACT_SHARE = 0.5  # at least half the answers must hold a fact to check, or accuracy says little
ROWS_LOOKED_AT = 200
ROWS_READ = 2000  # of each file, at most: the wizard plans again at every change, whatever the data's size
BY_KIND = {"preference": "preference", "kto": "preference", "text": "pretrain"}


def answers_with_facts(data, seed: int) -> tuple[int, int]:
    """(answers holding a fact to check, answers looked at) among up to ROWS_LOOKED_AT rows of a resolved
    question-answer dataset (easytune.datasets.resolve_dataset); (0, 0) for any other kind (preference pairs and
    raw text hold no single answer)."""
    from easytune.evaluation.buckets import items_of, read_jsonl, sample
    from easytune.evaluation.facts import facts_of

    if data.kind != "sft":
        return 0, 0
    rows = [row for path in (data.train_file, data.val_file) if path for row in read_jsonl(Path(path), ROWS_READ)]
    items = [item for item in items_of(sample(rows, ROWS_LOOKED_AT, seed)) if item.reference is not None]
    return sum(1 for item in items if facts_of(item.reference, item.question)), len(items)


def mostly_facts(held: int, looked: int) -> bool:
    return bool(looked) and held >= FACT_SHARE * looked


def answers_carry_facts(settings: Settings, dataset: str, seed: int) -> bool:
    """Do most of the data's answers hold a fact to check?"""
    from easytune.datasets import resolve_dataset

    return mostly_facts(*answers_with_facts(resolve_dataset(settings, dataset), seed))


def suggested_task(settings: Settings, dataset: str, seed: int) -> dict:
    """{"task", "key", "params"}: the goal for this data, and the message saying why."""
    from easytune.datasets import resolve_dataset

    data = resolve_dataset(settings, dataset)
    if data.kind in BY_KIND:
        return {"task": BY_KIND[data.kind], "key": f"planner.task_auto.{BY_KIND[data.kind]}", "params": {}}
    held, looked = answers_with_facts(data, seed)
    task = "domain" if mostly_facts(held, looked) else "chat"
    return {"task": task, "key": f"planner.task_auto.{task}", "params": {"held": held, "looked": looked}}
