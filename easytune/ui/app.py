"""The Gradio Blocks app: a side menu over the pages — dashboard, the four-step wizard, datasets, models,
jobs, exports — and a language switch that relabels everything. Each page lives in its own module.

Nothing here imports the training stack; charts import plotly on first use.
"""

from __future__ import annotations

import gradio as gr

from easytune import jobs
from easytune.i18n import normalize_lang, t
from easytune.settings import Settings, load_settings
from easytune.ui import dashboard, manage_data, manage_exports, manage_jobs, manage_models, state, wizard
from easytune.ui.texts import Ctx, Texts, showing
from easytune.ui.theme import CSS, FORCE_DARK_JS, THEME

LAUNCH_OPTIONS = {"theme": THEME, "css": CSS, "js": FORCE_DARK_JS}
PAGES = (("dashboard", dashboard.build), ("wizard", wizard.build), ("datasets", manage_data.build),
         ("models", manage_models.build), ("jobs", manage_jobs.build), ("exports", manage_exports.build))
_monitors: dict = {}


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or load_settings()
    if settings.db_path not in _monitors:  # one follower per home, however often the app is built
        _monitors[settings.db_path] = jobs.Monitor(settings).start()
    lang = normalize_lang(settings.language)
    T = Texts(lang)

    with gr.Blocks(title="EasyTune", fill_width=True, analytics_enabled=False) as demo:
        with gr.Row(elem_id="et-header"):
            T.make(gr.Markdown, {"value": "ui.header"})
            language = T.make(gr.Radio, {"label": "ui.language"}, choices=[("中文", "zh"), ("English", "en")],
                              value=lang, show_label=False, container=False, elem_id="et-lang", scale=0,
                              min_width=180)  # (the label is what a screen reader says)
            # Gradio's own words (drop zones, table menus) take the language when the page loads (page_language.py)
            reload_page = T.make(gr.Button, {"value": "ui.language_reload"}, size="sm", visible=False, scale=0,
                                 elem_id="et-lang-reload")
        with gr.Sidebar(open=True, elem_id="et-nav", width=200):
            nav = {page: T.make(gr.Button, {"value": f"ui.nav.{page}"}, size="sm", elem_id=f"et-nav-{page}",
                                variant="primary" if page == "wizard" else "secondary")
                   for page, _ in PAGES}
        tab = gr.Textbox(visible=False)  # this browser tab's id: its own place in the wizard (ui/state.py)
        with gr.Tabs(selected="wizard", elem_id="et-pages") as pages:
            ctx = Ctx(settings=settings, T=T, language=language, pages=pages, tab=tab, nav=nav)
            for page, build in PAGES:
                with T.make(gr.Tab, {"label": f"ui.nav.{page}"}, id=page):
                    build(ctx)
        for wire in ctx.later:
            wire()

        for page, button in nav.items():
            shown = button.click(lambda page=page: gr.Tabs(selected=page), None, pages).then(*showing(ctx, page))
            if f"{page}_refresh" in ctx.shared:  # a page opened from the menu shows the database as it is now
                shown.then(*ctx.shared[f"{page}_refresh"])

        relabel = language.change(T.updates, language, T.components)
        for fn, inputs, outputs in ctx.on_language:
            relabel = relabel.then(fn, inputs, outputs)
        def choose_language(lg):
            state.remember(settings, lang=lg)
            return gr.Button(t("ui.language_reload", lg), visible=True)  # (said in the new language itself)

        language.input(choose_language, language, reload_page)
        reload_page.click(None, js="() => { location.reload(); }")

        def first_language(tab_id, browser_lang):
            """The user's own choice if they made one, else the browser's language."""
            saved = state.recall(settings).get("lang")
            return tab_id, saved or normalize_lang(browser_lang)

        browser_lang = gr.Textbox(visible=False)
        loaded = demo.load(first_language, [tab, browser_lang], [tab, language],
                           js=f"() => [({state.TAB_ID_JS})(), navigator.language || '']")
        for fn, inputs, outputs in ctx.on_load:
            loaded = loaded.then(fn, inputs, outputs)
    _events_left_out_of_api_docs(demo)
    return demo


def _events_left_out_of_api_docs(demo: gr.Blocks) -> None:
    """Gradio documents each event of a page as an API endpoint, and writes those documents into the page
    itself: 2 MB for this app's events, downloaded and parsed before anything shows. The app's API is
    `easytune serve`; the events stay callable as before (the page calls them), just not documented."""
    for fn in demo.fns.values():
        if fn.api_visibility == "public":
            fn.api_visibility = "undocumented"
