"""The versions of one model side by side (the flywheel's lineage): a table, which version has the best verdict,
and a chart of their figures — all read from jobs.versions(), shown on the Jobs page and in step ④."""

from __future__ import annotations

import gradio as gr

from easytune import jobs
from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.ui.table import Table
from easytune.ui.texts import Ctx

HEADERS = ["ui.versions.col.version", "ui.col.name", "ui.col.state", "ui.versions.col.data", "ui.eval.col.verdict",
           "ui.versions.col.facts_seen", "ui.versions.col.facts_unseen", "ui.eval.col.cf"]
BUCKETS = ("seen", "unseen")  # the questions it was trained on, the held-out ones


def facts_right(version: dict, bucket: str) -> float | None:
    """The share of the tuned model's answers stating every fact (0…1); None where none could be judged."""
    tuned = (version["buckets"].get(bucket) or {}).get("tuned") or {}
    return tuned.get("facts") if tuned.get("facts_judged") else None


def version_rows(listed: list[dict], current: str | None, lang: str) -> list[list]:
    """One row per version, first to last; the version the user is looking at says so."""
    pct = lambda v: f"{v * 100:.0f}%" if v is not None else "—"  # noqa: E731
    rows = []
    for v in listed:
        label = jobs.version_label(v["version"], lang)
        rows.append([t("ui.versions.current", lang, version=label) if v["id"] == current else label, v["name"],
                     t("state." + v["state"], lang), v["dataset"],
                     t(f"ui.eval.verdict.{v['verdict']}", lang) if v["verdict"] else "—",
                     *(pct(facts_right(v, bucket)) for bucket in BUCKETS),
                     f"{v['cf_pct']:.1f}%" if v["cf_pct"] is not None else "—"])
    return rows


def versions_figure(listed: list[dict], lang: str):
    """Facts right on trained and held-out questions (bars) and the forgetting score (dotted, right axis),
    version by version; None while fewer than two versions have a figure to compare."""
    series = {bucket: [facts_right(v, bucket) for v in listed] for bucket in BUCKETS}
    cf = [v["cf_pct"] for v in listed]
    measured = [i for i in range(len(listed)) if any(s[i] is not None for s in (*series.values(), cf))]
    if len(measured) < 2:
        return None
    import plotly.graph_objects as go

    x = [jobs.version_label(v["version"], lang) for v in listed]
    fig = go.Figure()
    for bucket, color in zip(BUCKETS, ("#22d3ee", "#f59e0b")):
        if any(value is not None for value in series[bucket]):
            fig.add_bar(x=x, y=[None if value is None else value * 100 for value in series[bucket]],
                        name=t(f"ui.eval.bucket.{bucket}", lang), marker_color=color)
    if any(value is not None for value in cf):
        fig.add_scatter(x=x, y=cf, mode="lines+markers", name=t("ui.chart.cf", lang), yaxis="y2",
                        line={"color": "#f472b6", "width": 2, "dash": "dot"})
        fig.update_layout(yaxis2={"title": t("ui.chart.cf_axis", lang), "overlaying": "y", "side": "right",
                                  "showgrid": False})
    fig.update_layout(template="plotly_dark", barmode="group", height=300, title=t("ui.versions.chart", lang),
                      yaxis_title=t("ui.versions.facts_axis", lang), legend={"orientation": "h", "y": -0.2},
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, paper_bgcolor="#111827", plot_bgcolor="#111827")
    return fig


def versions_view(settings: Settings, job_id: str | None, lang: str) -> dict | None:
    """The table rows, the best line and the figure of the job's lineage; None for a job that is the only
    version of its model (nothing to compare) or no longer exists."""
    if not job_id:
        return None
    try:
        listed = jobs.versions(settings, job_id)
    except UserError:  # deleted meanwhile
        return None
    if len(listed) < 2:
        return None
    return {"rows": version_rows(listed, job_id, lang), "best": jobs.best_line(listed, lang),
            "figure": versions_figure(listed, lang)}


def versions_block(ctx: Ctx, job: gr.components.Component):
    """The versions of the job in `job`, hidden while it has none but itself. Returns (fn, inputs, outputs)
    that shows them now, for the page's own triggers (a job picked, a new version started, the language)."""
    with gr.Column(visible=False) as box:
        ctx.T.make(gr.Markdown, {"value": "ui.versions.head"})
        table = ctx.T.make(Table, {"headers": HEADERS}, interactive=False, wrap=True,
                           elem_classes=["et-versions"])
        best = gr.Markdown()
        chart = gr.Plot(visible=False, show_label=False)  # the figure has its own title

    def show(lang, job_id, chart_too=True):
        """chart_too=False for a page's periodic refresh: the states move on, a redrawn chart would flicker."""
        view = versions_view(ctx.settings, job_id, lang)
        if view is None:
            return gr.update(visible=False), None, "", gr.update(value=None, visible=False)
        figure = view["figure"]
        return (gr.update(visible=True), view["rows"], view["best"],
                gr.update(value=figure, visible=figure is not None) if chart_too else gr.skip())

    return show, [ctx.language, job], [box, table, best, chart]
