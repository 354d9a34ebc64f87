"""Step ②'s "Try several settings": a sweep of the plan on the page (easytune.sweep), run by the same driver as
`easytune sweep`, in a thread of the app; its trials table, its chart, and the best trained in full.

Handlers are thin: values in, one service call, updates out. The sweep's record is in SQLite, so the table
reads the same after a reload, and a sweep the app was running when it closed can be continued.
"""

from __future__ import annotations

import gradio as gr

from easytune import sweep
from easytune.i18n import UserError, t
from easytune.sweep.driver import values_text
from easytune.sweep.metric import METRICS
from easytune.sweep.record import DEFAULT_FRACTION, DEFAULT_TRIALS, MAX_TRIALS
from easytune.ui import charts, state
from easytune.ui.choices import job_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown

COLUMNS = ("trial", "state", "values", "metric", "val_loss", "cf", "job")


def sweep_choices(settings) -> list[tuple[str, str]]:
    return [(f"{row['id']} · {row['name']} · {row['done']}/{row['trials']}", row["id"])
            for row in sweep.list_sweeps(settings)]


def trial_rows(shown: dict, lang: str) -> list[list]:
    return [[f"{'★ ' if row['best'] else ''}{row['number'] + 1}",
             t(f"sweep.trial_state.{row['state']}", lang, at=row["pruned_at"]), values_text(row["params"]),
             "—" if row["metric"] is None else _number(shown["metric"], row["metric"]),
             "—" if row["val_loss"] is None else f"{row['val_loss']:.4f}",
             "—" if row["cf_pct"] is None else f"{row['cf_pct']:.1f}", row["job_id"] or "—"] for row in shown["rows"]]


def _number(metric: str, value: float) -> str:
    return f"{value * 100:.0f} %" if metric == "fact_accuracy" else f"{value:.4f}"


def status_markdown(shown: dict, lang: str) -> str:
    lines = [t("sweep.cli.head", lang, sweep=shown["id"], name=shown["name"],
                 state=t("sweep.state." + shown["state"], lang), done=shown["done"], trials=shown["trials"],
                 metric=t("sweep.metric." + shown["metric"], lang), pct=f"{shown['fraction'] * 100:.0f}")]
    if shown["best"]:
        lines.append(t("sweep.cli.best", lang, number=shown["best"]["number"] + 1,
                       values=values_text(shown["best"]["params"]), sweep=shown["id"]))
    else:
        lines.append(t(shown["no_best"], lang, sweep=shown["id"]))
    if shown["error"]:
        lines.append("⚠️ " + t(shown["error"]["key"], lang, **shown["error"]["params"]))
    return "\n\n".join(lines)


def build(ctx: Ctx, plan_inputs: list, plan_of) -> None:
    """The panel, in step ②. `plan_inputs` (model, dataset, the form) and `plan_of` make the plan on the page;
    "Train the best in full" puts the new job in the monitor's picker and opens the monitor."""
    settings, T = ctx.settings, ctx.T
    listed = sweep_choices(settings)
    with T.make(gr.Accordion, {"label": "ui.sweep.title"}, open=False, elem_id="et-sweep"):
        T.make(gr.Markdown, {"value": "ui.sweep.intro"})
        with gr.Row():
            trials = T.make(gr.Number, {"label": "ui.sweep.trials"}, value=DEFAULT_TRIALS, minimum=1,
                            maximum=MAX_TRIALS, precision=0, elem_id="et-sweep-trials")
            metric = T.make(gr.Radio, {"label": "ui.sweep.metric",
                                       "choices": [(f"ui.sweep.metric.{m}", m) for m in METRICS]}, value="auto")
            fraction = T.make(gr.Slider, {"label": "ui.sweep.fraction", "info": "ui.sweep.fraction_info"},
                              minimum=0.05, maximum=1.0, step=0.05, value=DEFAULT_FRACTION)
        vary = T.make(gr.CheckboxGroup, {"label": "ui.sweep.vary", "info": "ui.sweep.vary_info", "choices": lambda lg: [
            (f"{t('planner.field_name.' + name, lg)} · {name}", name) for name in sweep.variable_settings()]},
            value=list(sweep.DEFAULT_VARY), elem_id="et-sweep-vary")
        start = T.make(gr.Button, {"value": "ui.sweep.start"}, variant="primary", elem_id="et-sweep-start")
        message = gr.Markdown(elem_id="et-sweep-message")
        with gr.Row():
            picked = T.make(gr.Dropdown, {"label": "ui.sweep.pick"}, choices=listed,
                            value=listed[0][1] if listed else None, scale=4, elem_id="et-sweep-pick")
            stop = T.make(gr.Button, {"value": "ui.sweep.stop"}, variant="stop", size="sm", scale=1)
            resume = T.make(gr.Button, {"value": "ui.sweep.continue"}, size="sm", scale=1)
        status = gr.Markdown(elem_id="et-sweep-status")
        table = T.make(Table, {"headers": [f"ui.sweep.col.{c}" for c in COLUMNS]}, interactive=False,
                       wrap=True, elem_id="et-sweep-table",
                       column_widths=["7%", "15%", "30%", "10%", "10%", "10%", "18%"])
        plot = gr.Plot(show_label=False, elem_id="et-sweep-plot")
        train = T.make(gr.Button, {"value": "ui.sweep.train_best"}, variant="primary", interactive=False,
                       elem_id="et-sweep-train")
    timer = gr.Timer(3.0)
    seen = gr.State(None)

    def show(lang, sweep_id, last_seen):
        if not sweep_id:
            return t("ui.sweep.none", lang), None, None, gr.update(interactive=False), None
        try:
            shown = sweep.show_sweep(settings, sweep_id)
        except UserError as exc:
            return error_markdown(exc, lang), None, None, gr.update(interactive=False), None
        key = (sweep_id, lang, shown["state"], [(r["state"], r["metric"], r["job_id"]) for r in shown["rows"]])
        if key == last_seen:  # nothing new: leave the panel alone
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), last_seen
        return (status_markdown(shown, lang), trial_rows(shown, lang) or None, charts.sweep_figure(shown, lang),
                gr.update(interactive=shown["best"] is not None), key)

    def on_start(lang, n, varied, compare, share, *values):
        try:
            created = sweep.create_sweep(settings, plan_of(values[0], values[1], values[2:]), trials=int(n or 0),
                                         vary=varied, metric=compare, fraction=share)
            sweep.start_in_background(settings, created["id"], lang)
        except UserError as exc:
            return error_markdown(exc, lang), gr.skip()
        return t("ui.sweep.started", lang, sweep=created["id"]), gr.update(choices=sweep_choices(settings),
                                                                           value=created["id"])

    def on_stop(lang, sweep_id):
        if not sweep_id:
            return gr.skip()
        try:
            sweep.stop_sweep(settings, sweep_id)
        except UserError as exc:
            return error_markdown(exc, lang)
        return t("ui.sweep.stopped", lang, sweep=sweep_id)

    def on_resume(lang, sweep_id):
        if not sweep_id:
            return gr.skip()
        try:
            sweep.start_in_background(settings, sweep_id, lang)
        except UserError as exc:
            return error_markdown(exc, lang)
        return t("ui.sweep.started", lang, sweep=sweep_id)

    def on_train(lang, tab_id, sweep_id):
        try:
            launched = sweep.train_best(settings, sweep_id, lang)
        except UserError as exc:
            raise gr.Error(exc.message(lang)) from None
        state.remember(settings, tab_id, job=launched["id"], step="monitor")
        return gr.update(choices=job_choices(settings), value=launched["id"]), gr.Tabs(selected="monitor")

    language = ctx.language
    outputs = [status, table, plot, train, seen]
    start.click(on_start, [language, trials, vary, metric, fraction, *plan_inputs], [message, picked],
                api_name="wizard_sweep")
    picked.change(show, [language, picked, gr.State(None)], outputs)
    timer.tick(show, [language, picked, seen], outputs)
    stop.click(on_stop, [language, picked], message)
    resume.click(on_resume, [language, picked], message)
    ctx.later.append(lambda: train.click(on_train, [language, ctx.tab, picked],
                                         [ctx.shared["job"], ctx.shared["wizard_tabs"]]))
    ctx.on_language.append((show, [language, picked, gr.State(None)], outputs))
    def relisted(current):  # the sweeps as they are now; the one picked stays picked, else the newest
        choices = sweep_choices(settings)
        ids = [value for _, value in choices]
        return gr.update(choices=choices, value=current if current in ids else next(iter(ids), None))

    ctx.on_load.append((relisted, [picked], picked))
