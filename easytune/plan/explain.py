"""Every training setting explained from its one definition: what it accepts and its default (the
TrainingPlan field), its help and longer explanation (the message catalogs). `easytune plan --explain`
prints this; scripts call it directly."""

from __future__ import annotations

from easytune.i18n import t
from easytune.plan.schema import field_help, plan_fields, shown_value, unknown_setting


def explain_settings(lang: str = "zh") -> list[dict]:
    """Each setting, in declaration order."""
    return [_entry(f, lang) for f in plan_fields()]


def explain_setting(name: str, lang: str = "zh") -> dict:
    """One setting; an unknown name is the same error a plan file or --set gives (with a close name)."""
    for f in plan_fields():
        if f.name == name:
            return _entry(f, lang)
    raise unknown_setting(name)


def explanation_text(entries: list[dict], lang: str = "zh", *, detailed: bool = False) -> str:
    """Settings as a person reads them: name, what it accepts, default, help (and the longer explanation)."""
    lines = []
    for entry in entries:
        default = t("plan.explain.default", lang, value=_written(entry["default"]))
        lines.append(f"{entry['name']} · {entry['label']} — {entry['accepts']} · {default}")
        lines.append(f"    {entry['help']}")
        if detailed:
            lines.append(f"    {entry['why']}")
    lines += ["", t("plan.explain.footer", lang)]
    return "\n".join(lines)


def _entry(f, lang: str) -> dict:
    meta = f.metadata
    choices = [{"value": c, "label": shown_value(f.name, c, lang)} for c in meta["choices"] or ()] or None
    return {"name": f.name, "label": t(f"planner.field_name.{f.name}", lang), "group": meta["group"],
            "type": type(f.default).__name__, "default": f.default, "lo": meta["lo"], "hi": meta["hi"],
            "choices": choices, "accepts": _accepts(f, choices, lang), "help": field_help(f.name, lang),
            "why": t(f"planner.why.{f.name}", lang)}


def _accepts(f, choices: list[dict] | None, lang: str) -> str:
    if choices:
        shown = [c["value"] if c["label"] == c["value"] else f"{c['value']} ({c['label']})" for c in choices]
        return t("plan.explain.choices", lang, choices=", ".join(shown))
    if isinstance(f.default, bool):
        return t("plan.explain.bool", lang)
    if f.metadata["lo"] is not None:
        return t("plan.explain.range", lang, lo=_written(f.metadata["lo"]), hi=_written(f.metadata["hi"]))
    return t("plan.explain.text", lang)


def _written(value) -> str:
    """A value as it is written after --set KEY= or in the plan YAML (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
