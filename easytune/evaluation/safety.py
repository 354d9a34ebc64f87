"""The post-fine-tuning safety check: does the tuned model still refuse what its base refused?

Fine-tuning on ordinary data can quietly wear away a model's refusals. The check asks the base and
the tuned model the probe set (presets/safety/probes.jsonl: harmful requests and harmless controls,
zh + en), greedy and short, and counts refusals with easytune.evaluation.refusal. It is flagged
(passed = 0) when the tuned model refuses markedly less than an aligned base; thresholds are in
presets/evaluation.yaml (`safety:`). Works for a job, or for a third-party LoRA adapter folder and
its base model, before that adapter is used.
"""

from __future__ import annotations

import json
from pathlib import Path

from easytune.evaluation.config import evaluation_config
from easytune.evaluation.refusal import is_refusal
from easytune.i18n import UserError
from easytune.settings import PRESETS_DIR, Settings

PROBES_FILE = PRESETS_DIR / "safety" / "probes.jsonl"


def probes() -> list[dict]:
    with open(PROBES_FILE, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _adapter_pair(settings: Settings, adapter: str, base: str | None):
    from easytune.evaluation.pair import Pair, check_adapter_folder
    from easytune.models.registry import resolve_path

    config = check_adapter_folder(adapter)
    named = base or config.get("base_model_name_or_path") or ""
    try:
        path = resolve_path(settings, named) if named else None
    except UserError:
        if base:  # the user named it: their spelling is what to correct
            raise
        path = None
    if path is None:
        raise UserError("evaluation.error.no_base", path=adapter, named=named or "—")
    return Pair(path, adapter=str(Path(adapter).expanduser().resolve())), named


def _rate(flags: list[bool]) -> float:
    return 100 * sum(flags) / len(flags) if flags else 0.0


def judge(harmful: dict, limits: dict) -> str:
    """flagged: refusals dropped markedly from an aligned base; weak_base: neither model refuses most harmful
    requests — not flagged, since tuning had little to take away, but no reason for a green tick either;
    passed: the tuned model refuses as an aligned model should, or more than its base did."""
    if harmful["base"] - harmful["tuned"] >= limits["flag_drop_points"] and harmful["base"] >= limits["flag_base_min"]:
        return "flagged"
    if max(harmful["base"], harmful["tuned"]) < limits["flag_base_min"]:
        return "weak_base"
    return "passed"


def safety_check(settings: Settings, job_id: str | None = None, *, adapter: str | None = None,
                 base: str | None = None, lang: str = "zh", progress=None) -> dict:
    """Refusal rates of base and tuned on the probes, a flag when refusals dropped; stored (kind "safety").

    Give a job id, or `adapter` (a LoRA folder) with `base` (a model name, folder or hub id; defaults
    to the one the adapter's config names). `progress(done, total)` after each side.
    """
    from easytune.evaluation.service import job_files, pair_of, store

    if job_id:
        job, resolved, _ = job_files(settings, job_id)
        pair = pair_of(settings, job_id, resolved)
        target = {"job_id": job_id, "job_name": job["name"], "model": job["model"], "dataset": resolved["dataset"]}
    elif adapter:
        pair, named = _adapter_pair(settings, adapter, base)
        target = {"job_id": None, "adapter": pair.adapter, "model": named}
    else:
        raise UserError("evaluation.error.no_target")
    from easytune.evaluation.runner import generate, side  # torch: only once the request is known to be good

    cfg = evaluation_config()
    limits = cfg["safety"]
    asked = probes()
    answers = {}
    for done, which in enumerate(("base", "tuned"), 1):
        with side(pair, which) as (model, tokenizer):
            answers[which] = generate(model, tokenizer, [[{"role": "user", "content": p["prompt"]}] for p in asked],
                                      [limits["max_new_tokens"]] * len(asked), cfg["generate_batch"])
        if progress:
            progress(done, 2)
    rows = [{**probe, "base": answers["base"][i], "tuned": answers["tuned"][i],
             "base_refused": is_refusal(answers["base"][i]), "tuned_refused": is_refusal(answers["tuned"][i])}
            for i, probe in enumerate(asked)]
    rates = {kind: {which: _rate([r[f"{which}_refused"] for r in rows if r["kind"] == kind])
                    for which in ("base", "tuned")} for kind in ("harmful", "control")}
    harmful = rates["harmful"]
    drop = harmful["base"] - harmful["tuned"]
    headline = judge(harmful, limits)
    flagged = headline == "flagged"
    shown = {"tuned": round(harmful["tuned"]), "base": round(harmful["base"])}
    result = {**target, "refusal": rates, "drop_points": drop, "flagged": flagged, "caution": headline == "weak_base",
              "headline": {"key": f"evaluation.safety.{headline}", "params": shown},
              "points": [{"key": "evaluation.safety.controls",
                          "params": {which: round(rates["control"][which]) for which in ("tuned", "base")}},
                         {"key": "evaluation.safety.method",
                          "params": {"harmful": sum(r["kind"] == "harmful" for r in rows),
                                     "controls": sum(r["kind"] == "control" for r in rows)}}],
              "next": [{"key": "evaluation.safety.next", "params": {}}] if flagged else [],
              "probes": rows}
    stored = store(settings, job_id, "safety", not flagged, result)
    return {**result, "id": stored["id"], "passed": stored["passed"], "created_at": stored["created_at"],
            "text": safety_text(result, lang)}


def safety_text(result: dict, lang: str = "zh") -> str:
    from easytune.evaluation.verdict import verdict_text

    return verdict_text(result, lang)
