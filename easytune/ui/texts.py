"""What every page builder shares: the settings, the language-following texts, and the navigation."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from easytune.i18n import t
from easytune.settings import Settings


class Texts:
    """Components whose texts follow the language switch: each is made and re-labelled from keys."""

    def __init__(self, lang: str):
        self.lang = lang
        self.items: list[tuple[gr.components.Component, dict]] = []

    def make(self, cls, texts: dict, **kwargs):
        component = cls(**self._render(texts, self.lang), **kwargs)
        self.items.append((component, texts))
        return component

    @staticmethod
    def _render(texts: dict, lang: str) -> dict:
        """{attr: key} → {attr: text}; `choices` holds [(key, value), …] and gets translated labels;
        `headers` holds a list of keys; a callable is asked for the language's own value."""
        out = {}
        for attr, key in texts.items():
            if callable(key):
                out[attr] = key(lang)
            elif attr == "choices":
                out[attr] = [(t(k, lang), v) for k, v in key]
            elif attr == "headers":
                out[attr] = [t(k, lang) for k in key]
            else:
                out[attr] = t(key, lang)
        return out

    @property
    def components(self):
        return [component for component, _ in self.items]

    def updates(self, lang: str):
        return [gr.update(**self._render(texts, lang)) for _, texts in self.items]


@dataclass
class Ctx:
    """Handed to each page builder. `on_language` and `on_load` collect (fn, inputs, outputs) to run when the
    language changes or the page loads, so each page keeps its own refresh logic."""

    settings: Settings
    T: Texts
    language: gr.Radio
    pages: gr.Tabs
    tab: gr.Textbox  # this browser tab's id, for what each tab keeps of its own (ui/state.py)
    nav: dict = field(default_factory=dict)  # the side menu's button per page
    on_language: list = field(default_factory=list)
    on_load: list = field(default_factory=list)
    shared: dict = field(default_factory=dict)  # components one page offers another (e.g. the wizard's dataset)
    later: list = field(default_factory=list)  # wiring that needs components of pages built afterwards


def showing(ctx: Ctx, page: str):
    """`.then(*showing(ctx, page))` after anything that opens `page`: the side menu marks where the user is."""
    return (lambda: [gr.update(variant="primary" if name == page else "secondary") for name in ctx.nav],
            None, list(ctx.nav.values()))


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def fmt_time(stamp: float | None, lang: str) -> str:
    """Dates per locale: 2026年11月23日 14:05 in Chinese, 2026-11-23 14:05 in English."""
    import time

    if not stamp:
        return "—"
    local = time.localtime(stamp)
    return time.strftime("%Y年%m月%d日 %H:%M" if lang == "zh" else "%Y-%m-%d %H:%M", local)


def mapping_from_table(pairs) -> dict[str, str]:
    """{role: field} from an editable two-column table; empty rows are ignored (the import checks roles)."""
    rows = pairs.values.tolist() if pairs is not None else []
    return {str(role).strip(): str(field).strip() for role, field in rows if str(role).strip() and str(field).strip()}


def error_markdown(exc, lang: str) -> str:
    return f"⚠️ {exc.message(lang)}"


def action_choices(settings: Settings, job_id: str | None, lang: str, skip: tuple[str, ...] = ()):
    """The actions a job offers now (jobs.available_actions), as translated radio choices; `skip`: those the
    page offers with a button of their own."""
    from easytune import jobs

    if not job_id:
        return gr.update(choices=[], value=None)
    actions = [a for a in jobs.available_actions(settings, jobs.get_job(settings, job_id)) if a not in skip]
    return gr.update(choices=[(t(f"ui.jobs.action.{a}", lang), a) for a in actions],
                     value=actions[0] if actions else None)


def action_bar(ctx: Ctx, job: gr.components.Component, skip: tuple[str, ...] = ()):
    """A row offering what can be done with the job in `job` now (but `skip`); returns (actions, button,
    message). After an action the job component shows the job the user should look at next (a clone, say)."""
    from easytune import jobs
    from easytune.i18n import UserError

    T, settings = ctx.T, ctx.settings
    with gr.Row():
        actions = T.make(gr.Radio, {"label": "ui.jobs.actions"}, choices=[], scale=4, elem_classes=["et-actions"])
        go = T.make(gr.Button, {"value": "ui.jobs.do"}, size="sm", scale=1)
    message = gr.Markdown()

    def on_go(lang, job_id, action):
        if not job_id or not action:
            return gr.skip(), ""
        try:
            result = jobs.perform(settings, job_id, action)
        except UserError as exc:
            return gr.skip(), error_markdown(exc, lang)
        if action == "delete":
            return None, t("ui.jobs.deleted", lang, job=job_id)
        state = t("state." + result["state"], lang)
        if result.get("queue_position"):
            state += " · " + t("ui.jobs.position", lang, position=result["queue_position"])
        return result["id"], t("ui.jobs.done", lang, job=result["id"], state=state)

    go.click(on_go, [ctx.language, job, actions], [job, message]).then(
        lambda lang, j: action_choices(settings, j, lang, skip), [ctx.language, job], actions)
    job.change(lambda lang, j: action_choices(settings, j, lang, skip), [ctx.language, job], actions)
    return actions, go, message
