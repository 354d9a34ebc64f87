"""Plain-language suggestions drawn from an import report: message keys with parameters, never prose."""

from __future__ import annotations

# Field names that leave no doubt about their role; anything else is shown to the user to confirm.
_STANDARD = {
    "prompt": ("instruction", "prompt", "question", "query"),
    "input": ("input",),
    "response": ("output", "response", "answer", "completion"),
    "system": ("system",),
    "history": ("history",),
    "messages": ("messages", "conversations"),
    "tools": ("tools",),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
    "label": ("label",),
    "text": ("text",),
    "role": ("role", "from"),
    "content": ("content", "value"),
}


def _s(key: str, level: str = "info", **params) -> dict:
    return {"key": "data.suggest." + key, "level": level, "params": params}


def suggestions(report: dict) -> list[dict]:
    out: list[dict] = []
    usable = report["rows_usable"]
    total = report["rows_total"]
    rejected = report["rows_rejected"]
    quality = report["quality"]
    shape = report["shape"]
    mapping = report.get("mapping") or {}

    if (
        report.get("mapping_source") == "auto"
        and mapping
        and any(src.strip().lower() not in _STANDARD.get(role, ()) for role, src in mapping.items())
    ):
        pretty = ", ".join(
            f"{role} ← {src}" for role, src in mapping.items() if role not in ("role", "content")
        )
        out.append(_s("confirm_mapping", mapping=pretty))
    if shape == "mixed":
        out.append(_s("mixed_shapes", "warning", shapes=", ".join(sorted(report["shapes"]))))
    if shape == "text":
        out.append(_s("text_pretraining"))

    dropped = report.get("rows_dropped_duplicates", 0)
    rows = usable + dropped
    if usable and usable < 100:
        out.append(_s("few_rows", "warning", n=usable))
    elif usable < 1000 and shape != "text":
        out.append(_s("some_rows", n=usable))

    if rejected - dropped > 0:
        bad = rejected - dropped
        pct = round(100 * bad / total, 1) if total else 0.0
        out.append(_s("rejected_rows", "warning" if pct >= 5 else "info", n=bad, pct=pct))
    if report.get("blank_skipped"):
        out.append(_s("blank_skipped", n=report["blank_skipped"]))

    dup = quality["duplicates"]
    if dropped:
        out.append(_s("duplicates_dropped", n=dropped))
    elif dup["exact"] + dup["near"]:
        out.append(
            _s(
                "duplicates",
                "warning" if dup["pct"] >= 5 else "info",
                exact=dup["exact"],
                near=dup["near"],
                pct=dup["pct"],
            )
        )

    pii = quality["pii"]
    if pii["rows"]:
        if pii["masked"]:
            out.append(_s("pii_masked", rows=pii["rows"], **pii["counts"]))
        else:
            out.append(_s("pii_found", "warning", rows=pii["rows"], **pii["counts"]))
    if pii.get("kept"):
        out.append(_s("pii_kept", values=", ".join(pii["kept"])))

    frequent = [n for n, k in quality["placeholders"]["names"].items() if k >= max(3, rows * 0.05)]
    if frequent:
        names = ", ".join("{{" + n + "}}" for n in frequent[:5])
        out.append(_s("placeholders", "warning", rows=quality["placeholders"]["rows"], names=names))

    short = quality["short_answers"]
    if short["count"] and short["pct"] >= 10:
        out.append(
            _s("short_answers", "warning", n=short["count"], pct=short["pct"], chars=short["threshold"])
        )

    tokens = quality.get("tokens")
    if tokens and tokens.get("context_len") and tokens["over_context"]:
        key = "over_context_estimated" if tokens["estimated"] else "over_context"
        out.append(
            _s(
                key,
                "warning" if tokens["over_context_pct"] >= 5 else "info",
                n=tokens["over_context"],
                pct=tokens["over_context_pct"],
                limit=tokens["context_len"],
            )
        )

    langs = quality["languages"]
    ranked = sorted(langs.items(), key=lambda kv: kv[1]["rows"], reverse=True)
    if rows and len(ranked) > 1 and ranked[1][1]["pct"] >= 10:
        out.append(
            _s("language_mix", zh=langs["zh"]["pct"], en=langs["en"]["pct"], other=langs["other"]["pct"])
        )

    labels = quality.get("kto_labels")
    if labels:
        n = labels["true"] + labels["false"]
        minority = min(labels["true"], labels["false"])
        if n and minority / n < 0.2:
            out.append(_s("kto_imbalance", "warning", good=labels["true"], bad=labels["false"]))

    split = report["splits"]
    if report.get("val_ratio", 0) > 0 and usable >= 2 and split["val"] < 20:
        out.append(_s("small_val", n=split["val"]))
    return out
