"""The Jobs page's tracking: a job's metrics written for TensorBoard and MLflow (where they went, and the command
that shows them), and jobs side by side (the settings that differ, what each came to, the loss curves
overlaid). Both read the one service the CLI calls (easytune.tracking)."""

from __future__ import annotations

import gradio as gr

from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.ui.choices import job_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown

TOOLS = ("tensorboard", "mlflow")
COLORS = ("#22d3ee", "#f59e0b", "#a78bfa", "#34d399", "#f472b6", "#60a5fa", "#facc15", "#fb7185")


def export_text(settings: Settings, job_id: str | None, tools: list[str], lang: str) -> str:
    """Write the chosen tools' files in their usual places; say where, and how to look."""
    from easytune.tracking.service import USUAL, export_metrics

    if not job_id:
        return ""
    try:
        result = export_metrics(settings, job_id, **{tool: USUAL if tool in tools else None for tool in TOOLS})
    except UserError as exc:
        return error_markdown(exc, lang)
    lines = []
    if "tensorboard" in result:
        lines.append(t("tracking.ui.tensorboard_line", lang, **result["tensorboard"]))
    if "mlflow" in result:
        done = result["mlflow"]
        lines.append(t("tracking.ui.mlflow_line", lang, run=done["run_id"], experiment=done["experiment"],
                       path=done["path"], command=done["command"]))
    return t("tracking.ui.exported", lang, lines="\n\n".join(lines))


def compare_view(settings: Settings, job_ids: list[str] | None, lang: str) -> dict | None:
    """The table (headers, rows) and the loss curves of the picked jobs; None while fewer than two are picked."""
    from easytune.tracking.compare import compare_runs, comparison_table

    if len(job_ids or []) < 2:
        return None
    result = compare_runs(settings, job_ids)
    headers, rows = comparison_table(result, lang)
    return {"headers": headers, "rows": rows, "figure": loss_curves(result, lang)}


def loss_curves(result: dict, lang: str):
    """Each job's training loss (solid) and validation loss (dotted, with markers) in one colour per job."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for n, job in enumerate(result["jobs"]):
        color, curves = COLORS[n % len(COLORS)], result["series"][job["id"]]
        label = f"{job['id']} · {job['name']}"
        if curves["loss"]:
            steps, values = zip(*curves["loss"])
            fig.add_scatter(x=steps, y=values, mode="lines", name=t("tracking.ui.chart_loss", lang, job=label),
                            line={"color": color, "width": 2})
        if curves["val_loss"]:
            steps, values = zip(*curves["val_loss"])
            fig.add_scatter(x=steps, y=values, mode="lines+markers", line={"color": color, "width": 2, "dash": "dot"},
                            name=t("tracking.ui.chart_val_loss", lang, job=label))
    fig.update_layout(template="plotly_dark", height=360, title=t("tracking.ui.chart_title", lang),
                      xaxis_title=t("ui.chart.step", lang), yaxis_title=t("ui.chart.loss_axis", lang),
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 40, "r": 10, "t": 40, "b": 40},
                      paper_bgcolor="#111827", plot_bgcolor="#111827")
    return fig


def export_control(ctx: Ctx, job: gr.components.Component) -> None:
    """Under a picked job: which tools, a button, and where the files went."""
    with gr.Row():
        tools = ctx.T.make(gr.CheckboxGroup, {"label": "tracking.ui.tools"}, choices=[("TensorBoard", "tensorboard"),
                                                                                      ("MLflow", "mlflow")],
                           value=list(TOOLS), scale=3)
        go = ctx.T.make(gr.Button, {"value": "tracking.ui.export"}, size="sm", scale=1)
    said = gr.Markdown(elem_id="et-tracking-export")
    go.click(lambda lang, job_id, chosen: export_text(ctx.settings, job_id, chosen or [], lang),
             [ctx.language, job, tools], said)
    job.change(lambda: "", None, said)  # what was said was about the job picked before


def compare_block(ctx: Ctx):
    """Jobs picked side by side. Returns (fn(lang, picked), the picker, outputs): fn lists the jobs there are now
    and shows the picked ones, for the page's own triggers (page opened, language switched)."""
    ctx.T.make(gr.Markdown, {"value": "tracking.ui.compare_head"})
    picker = ctx.T.make(gr.Dropdown, {"label": "tracking.ui.compare_pick"}, choices=[], multiselect=True,
                        elem_id="et-compare-pick")
    hint = gr.Markdown()
    table = Table(visible=False, interactive=False, wrap=True, elem_id="et-compare-table")
    chart = gr.Plot(visible=False, show_label=False)

    def show(lang, job_ids):
        try:
            view = compare_view(ctx.settings, job_ids, lang)
        except UserError as exc:  # one was deleted meanwhile
            return error_markdown(exc, lang), gr.update(visible=False), gr.update(visible=False)
        if view is None:
            return t("tracking.ui.compare_hint", lang), gr.update(visible=False), gr.update(visible=False)
        import pandas as pd

        return ("", gr.update(value=pd.DataFrame(view["rows"], columns=view["headers"]), visible=True),
                gr.update(value=view["figure"], visible=True))

    def listed(lang, job_ids):
        known = job_choices(ctx.settings)
        ids = {value for _, value in known}
        kept = [job_id for job_id in job_ids or [] if job_id in ids]
        return gr.update(choices=known, value=kept), *show(lang, kept)

    picker.input(show, [ctx.language, picker], [hint, table, chart])  # (not when `listed` sets it)
    return listed, picker, [picker, hint, table, chart]
