"""Self-synthesised rehearsal: the base model's own answers to everyday requests, mixed into training.

Knowledge retention used to mix EasyTune's general reference text into training. That protects the
model's feel for that text, not what this model actually knew: a chat model tuned on a shop's FAQ with
it still answered "The capital of France is Lumenleopard". Here the retention rows are the model's own:
before anything trains, the base model answers requests from presets/rehearsal/ and those conversations
are trained on beside the user's rows. Learning to give its own answers again costs the model nothing it
knew, and pulls every layer the adapter touches back towards the base wherever the new data does not need
it. Two kinds of request alternate, in the language of the user's data:
- short questions of general knowledge (`*-knowledge.txt`): a model taught a shop's FAQ otherwise learns
  to answer every question as the shop ("Our largest planet is ..."); its own answers to other questions
  teach it which questions the new facts are for. None of them is a gatekeeper question: those measure.
- open-ended everyday tasks (explain, write, compare), which keep how it writes at length.

Only as many requests are answered as the retention share asks for (a 40-row dataset at 30 % needs 17),
and the answers are cached per base model and request in the job's cache folder, so a later job on the
same model writes only those it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from easytune.settings import PRESETS_DIR

PROMPTS_DIR = PRESETS_DIR / "rehearsal"
MAX_NEW_TOKENS = 64  # an everyday answer's opening: enough to carry how the model answers
GENERATE_BATCH = 32


def requests(language: str | None = None) -> tuple[list[str], list[str]]:
    """(knowledge questions, everyday tasks) of one language ("en", "zh"; None: every language), in file order."""
    kinds: tuple[list[str], list[str]] = ([], [])
    for path in sorted(PROMPTS_DIR.glob("*.txt")):
        if language is None or path.stem.split("-")[0] == language:
            lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            kinds[0 if path.stem.endswith("-knowledge") else 1].extend(lines)
    return kinds


def _alternate(first: list[str], second: list[str]) -> list[str]:
    out = [item for pair in zip(first, second) for item in pair]
    return out + first[len(second):] + second[len(first):]


def language_of(texts: list[str]) -> str:
    """The rehearsal language for data written in these texts: Chinese where most are, else English."""
    from easytune.data.quality import language

    found = [language(text[:400]) for text in texts[:200]]
    return "zh" if found.count("zh") * 2 > len(found) else "en"


def pick(count: int, seed: int, language: str) -> list[str]:
    """`count` requests (at most all there are) in `language`, knowledge questions and tasks alternating,
    picked by `seed`."""
    knowledge, tasks = requests(language)
    random.Random(seed).shuffle(knowledge)
    random.Random(seed + 1).shuffle(tasks)
    return _alternate(knowledge, tasks)[:count]


def rehearsal_rows(model, tokenizer, *, model_path: str, cache_dir: str | None, count: int, seed: int,
                   language: str = "en") -> list[dict]:
    """`count` conversations [{"messages": [user, assistant]}] of the base model's greedy answers to requests
    picked by `seed` (every request once, when more are wanted). Call before any adapter exists. Answers
    are cached per model and request, so a later job writes only those it has not seen."""
    from easytune.evaluation.runner import generate

    chosen = pick(count, seed, language)
    key = hashlib.sha256(json.dumps([model_path, MAX_NEW_TOKENS, tokenizer.chat_template]).encode())
    cache = Path(cache_dir) / f"rehearsal-{key.hexdigest()[:24]}.json" if cache_dir else None
    known = json.loads(cache.read_text(encoding="utf-8")) if cache is not None and cache.is_file() else {}
    missing = [prompt for prompt in chosen if prompt not in known]
    if missing:
        was_training = model.training
        model.eval()
        try:
            answers = generate(model, tokenizer, [[{"role": "user", "content": p}] for p in missing],
                               [MAX_NEW_TOKENS] * len(missing), GENERATE_BATCH)
        finally:
            model.train(was_training)
        known.update(zip(missing, answers))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(".partial")
            partial.write_text(json.dumps(known, ensure_ascii=False), encoding="utf-8")
            partial.replace(cache)
    return [{"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": known[prompt]}]}
            for prompt in chosen if known[prompt].strip()]
