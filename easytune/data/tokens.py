"""Token lengths of a dataset measured with the chosen model's own tokenizer, and how many rows will not
fit its context.

Uses the `tokenizers` library on tokenizer.json (fast, and no torch in the app process); a model that
ships only a slow tokenizer falls back to transformers. Chat markup is not rendered: each turn adds
TURN_MARKUP tokens (role and end markers, e.g. ChatML's `<|im_start|>user\\n … <|im_end|>\\n`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from easytune.i18n import UserError

TURN_MARKUP = 5
SAMPLE_ROWS = 20_000  # enough for stable percentiles; bigger sets are read in order up to this many


def _encoder(model_path: str):
    folder = Path(model_path)
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return lambda texts: [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]
    try:
        from easytune.models.sources import load_tokenizer

        slow = load_tokenizer(model_path)
    except (OSError, ValueError) as exc:
        raise UserError("data.tokens.no_tokenizer", model=model_path) from exc
    return lambda texts: [len(ids) for ids in slow(texts, add_special_tokens=False)["input_ids"]]


def _texts(row: dict) -> list[str]:
    """The pieces of one canonical row that the model reads (for a preference pair: the longer side)."""
    parts = [row["system"]] if row.get("system") else []
    parts += [str(m.get("content") or "") for m in row.get("messages") or []]
    if "prompt" in row:
        parts.append(str(row["prompt"]))
    if "chosen" in row:
        answers = [row.get("chosen"), row.get("rejected")]
        parts.append(max((a if isinstance(a, str) else json.dumps(a, ensure_ascii=False) for a in answers if a),
                         key=len, default=""))
    if "text" in row:
        parts.append(str(row["text"]))
    return parts


def percentile(sorted_values: list[int], q: float) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0


def measure(train_file: str | Path, model_path: str, context: int | None, limit: int = SAMPLE_ROWS) -> dict:
    encode = _encoder(model_path)
    lengths, sampled = [], False
    with open(train_file, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= limit:
                sampled = True
                break
            parts = _texts(json.loads(line))
            lengths.append(sum(encode(parts)) + TURN_MARKUP * len(parts) if parts else 0)
    ordered = sorted(lengths)
    bins: dict[int, int] = {}
    for n in lengths:
        lo = 2 ** int(math.log2(n)) if n > 0 else 0
        bins[lo] = bins.get(lo, 0) + 1
    over = sum(n > context for n in lengths) if context else 0
    return {"rows": len(lengths), "sampled": sampled, "context": context, "mean": sum(lengths) / max(1, len(lengths)),
            "p50": percentile(ordered, 0.5), "p90": percentile(ordered, 0.9), "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else 0, "over_context": over,
            "over_context_pct": round(100 * over / max(1, len(lengths)), 1),
            "histogram": [{"lo": lo, "hi": max(1, lo * 2), "count": bins[lo]} for lo in sorted(bins)],
            "lengths": lengths}


def context_length(model_path: str) -> int | None:
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    data = json.loads(config.read_text(encoding="utf-8"))
    data = data.get("text_config", data)  # multimodal configs nest the language model's settings
    return data.get("max_position_embeddings") or data.get("n_positions") or data.get("seq_length")
