"""An import report in plain words (Markdown), for the CLI and the app alike."""

from __future__ import annotations

from easytune.data.ingest import describe
from easytune.i18n import t

SHOWN_REJECTED = 20


def role_name(role: str, lang: str) -> str:
    """A mapping role in the user's words ("问题 / 指令" for prompt); a key that is not a role shows as it is."""
    from easytune.i18n import catalog

    key = f"data.role.{role}"
    return t(key, lang) if key in catalog(lang) else role


def where(entry: dict, lang: str) -> str:
    """Where a rejected row is: its line, or, in a JSON array, the record's number and the line it starts on
    (the number alone reads like a line number and sends the user to the wrong place)."""
    if entry.get("source_line") is not None:
        return t("datasets.summary.record", lang, record=entry["line"], line=entry["source_line"])
    return t("datasets.summary.line", lang, line=entry["line"])


def report_markdown(report: dict, lang: str, duplicate_of: str | None = None) -> str:
    blocks = []
    if duplicate_of:
        blocks.append(t("datasets.summary.same_file", lang, id=duplicate_of))
    blocks.append(t("datasets.summary.detected", lang, container=report["container"],
                    encoding=report["encoding"] or "—", shape=report["shape"]))
    if report["mapping"]:
        mapping = ", ".join(f"{role_name(role, lang)} ← {field}" for role, field in report["mapping"].items())
        blocks.append(t("datasets.summary.mapping", lang, mapping=mapping))
    blocks.append(t("datasets.summary.rows", lang, total=report["rows_total"], usable=report["rows_usable"],
                    rejected=report["rows_rejected"], train=report["splits"]["train"], val=report["splits"]["val"]))
    if report["rejected"]:
        items = [f"- {where(e, lang)}: {describe(e, lang)}" for e in report["rejected"][:SHOWN_REJECTED]]
        if report["rows_rejected"] > SHOWN_REJECTED:
            items.append(t("datasets.summary.more_rejected", lang, n=report["rows_rejected"] - SHOWN_REJECTED))
        blocks.append("\n".join([t("datasets.summary.rejected_head", lang), *items]))
    if report["suggestions"]:
        items = [f"- {describe(s, lang)}" for s in report["suggestions"]]
        blocks.append("\n".join([t("datasets.summary.suggestions_head", lang), *items]))
    return "\n\n".join(blocks)
