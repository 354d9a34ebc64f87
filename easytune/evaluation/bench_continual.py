"""Task after task on a real model: does a new version keep what the first one taught? A benchmark that prints
the figures.

    python -m easytune.evaluation.bench_continual [--model NAME_OR_GGUF] [--json FILE]

Task A is the first ten facts of the facts benchmark's shop (presets/benchmarks/facts_en.jsonl), task B the
other ten. Version 1 trains on A through the default "domain knowledge" plan; then version 2 trains on B from
it (`easytune jobs next`) four ways: training on from version 1 (plain), with a fifth of its rows replayed
from A (replay_ratio 0.2), with continual learning (the earlier adapter frozen, the new one kept orthogonal
to it), and with both (what a new version gets by default when its data teaches something new). Each model
is asked A's and B's taught questions and the general questions with answer keys, and judged by the facts in
its answers (easytune.evaluation.facts).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from easytune.evaluation.bench_facts import ask, finished, probes, read_facts, run

WAYS = {"plain": {"continual": False, "replay_ratio": 0.0}, "replay": {"continual": False, "replay_ratio": 0.2},
        "continual": {"continual": True, "replay_ratio": 0.0}, "both": {"continual": True, "replay_ratio": 0.2}}


def version_two(settings, first: str, data: Path, changes: dict) -> tuple[dict, float]:
    from easytune import datasets, jobs

    dataset = datasets.add_dataset(settings, data, name=data.stem)["dataset"]
    started = time.monotonic()
    job = finished(settings, jobs.next_version(settings, first, dataset["id"], changes))
    return job, time.monotonic() - started


def asked_of(settings, job: dict, sets: dict, which: str = "tuned") -> dict:
    from easytune.evaluation.runner import side
    from easytune.evaluation.service import pair_of
    from easytune.jobs.folder import JobFolder

    with side(pair_of(settings, job["id"], JobFolder(job["job_dir"]).resolved()), which) as (model, tokenizer):
        return {name: ask(model, tokenizer, questions) for name, questions in sets.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a registered name, folder or GGUF file (default: the suite's real model)")
    parser.add_argument("--json", help="also write every answer to this file")
    args = parser.parse_args()
    from easytune import jobs
    from easytune.evaluation.bench_facts import training_rows
    from easytune.settings import load_settings

    home = Path(tempfile.mkdtemp(prefix="easytune-bench-continual-"))
    facts = read_facts()
    task_a, task_b = facts[:10], facts[10:]
    first = run(args.model, {}, home, facts=task_a)
    print(f"version 1 on task A: {first['state']}, {first['train_s']:.0f} s", flush=True)
    settings = load_settings(home=home)
    model = first["model"]
    v1 = next(job for job in jobs.list_jobs(settings) if job["state"] == "COMPLETED")
    b_file = home / "task_b.jsonl"
    b_file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in training_rows(task_b)),
                      encoding="utf-8")
    sets = {"A": probes(task_a)["taught"], "B": probes(task_b)["taught"], "general": probes(task_a)["general"]}
    rows = {"base": asked_of(settings, v1, sets, "base"), "v1 (task A)": asked_of(settings, v1, sets)}
    times = {"v1 (task A)": first["train_s"]}
    for way, changes in WAYS.items():
        job, seconds = version_two(settings, v1["id"], b_file, changes)
        name = f"v2 on B, {way}"
        times[name] = seconds
        rows[name] = asked_of(settings, job, sets) if job["state"] == "COMPLETED" else {}
        print(f"{name}: {job['state']}, {seconds:.0f} s", flush=True)
    print(f"\nmodel {model}; facts right (taught questions), general questions with answer keys")
    print(f"{'':<22}{'task A':>10}{'task B':>10}{'general':>10}{'training':>10}")
    for name, answered in rows.items():
        cells = [f"{sum(a['right'] for a in answered[s])}/{len(answered[s])}" if s in answered else "-"
                 for s in ("A", "B", "general")]
        took = f"{times[name]:.0f} s" if name in times else ""
        print(f"{name:<22}{cells[0]:>10}{cells[1]:>10}{cells[2]:>10}{took:>10}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
