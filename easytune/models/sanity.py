"""Does a model folder work? One fixed question and one page of general text, before anyone trains it.

A model whose tokenizer does not match its weights still loads and still generates: it answers
"ĠTheĠcapitalĠofĠFrance…" or predicts text no better than chance (a loss near log(vocabulary), the
loss of a uniform guess). Both are caught here, from the folder as it lies on disk:

- clean text: the answer to a general question holds no byte-level or SentencePiece artefacts
  (Ġ, Ċ, ▁, <0x0A>, replacement characters);
- knows language: its loss on the shipped general reference text is far below log(vocabulary)
  (`max_loss_share` of it).

A model that fails is registered as broken with the reason, and the planner refuses to train it.
Runs in a subprocess of its own (`python -m easytune.models.sanity FOLDER`), so the app never
imports torch: `run_check` is the parent's side.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

from easytune.settings import PRESETS_DIR

QUESTION = "What is the capital of France?"
ARTEFACTS = re.compile(r"[ĠĊ▁\ufffd]|<0x[0-9A-Fa-f]{2}>")
# of log(vocabulary): trained models sit at 0.15–0.35 of it on plain text, a 1M-parameter toy at 0.6–0.85;
# a tokenizer that splits text unlike the weights expect, or untrained weights, at 1.0 or above
MAX_LOSS_SHARE = 0.9
REFERENCE_TOKENS = 512  # enough text for a stable loss, a second of work on a small model
ANSWER_TOKENS = 24


def _reference_text() -> str:
    return (PRESETS_DIR / "general_reference" / "en.txt").read_text(encoding="utf-8")


def _prompt(tokenizer) -> str:
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], tokenize=False,
                                             add_generation_prompt=True)
    return f"Question: {QUESTION}\nAnswer:"


def check_model(folder: str | Path, *, trust_remote_code: bool = False) -> dict:
    """{"ok", "reason" (message key or None), "answer", "loss", "log_vocab", "seconds"} of a model folder."""
    import torch

    from easytune.models.sources import load_safe, load_tokenizer

    started = time.monotonic()
    tokenizer = load_tokenizer(folder, trust_remote_code=trust_remote_code)
    model = load_safe(folder, trust_remote_code=trust_remote_code, dtype="auto").eval()
    with torch.inference_mode():
        ids = tokenizer(_reference_text(), return_tensors="pt").input_ids[:, :REFERENCE_TOKENS]
        loss = float(model(input_ids=ids, labels=ids).loss)
        prompt = tokenizer(_prompt(tokenizer), return_tensors="pt", add_special_tokens=not tokenizer.chat_template)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        output = model.generate(**prompt, max_new_tokens=ANSWER_TOKENS, do_sample=False, pad_token_id=pad)
    answer = tokenizer.decode(output[0, prompt.input_ids.shape[1]:], skip_special_tokens=True).strip()
    log_vocab = math.log(max(2, len(tokenizer)))
    reason = None
    if ARTEFACTS.search(answer):
        reason = "models.sanity_tokenizer"
    elif not math.isfinite(loss) or loss > MAX_LOSS_SHARE * log_vocab:
        reason = "models.sanity_chance"
    return {"ok": reason is None, "reason": reason, "answer": answer, "loss": round(loss, 4),
            "log_vocab": round(log_vocab, 4), "question": QUESTION, "seconds": round(time.monotonic() - started, 1)}


def run_check(folder: str | Path, *, trust_remote_code: bool = False) -> dict:
    """check_model in a subprocess; a folder that cannot even load is a failed check, not a crash."""
    command = [sys.executable, "-m", "easytune.models.sanity", str(folder)]
    if trust_remote_code:
        command.append("--trust-remote-code")
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"ok": False, "reason": "models.sanity_load", "error": done.stderr.strip()[-400:], "answer": "",
                "loss": None, "log_vocab": None, "question": QUESTION}


def main(argv: list[str]) -> int:
    from easytune.i18n import UserError

    try:
        result = check_model(argv[0], trust_remote_code="--trust-remote-code" in argv)
    except UserError as exc:
        result = {"ok": False, "reason": "models.sanity_load", "error": str(exc), "answer": "", "loss": None,
                  "log_vocab": None, "question": QUESTION}
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
