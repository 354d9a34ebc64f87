"""Jobs page: every job with its state, a filter, the details of one, its versions, what can be done with it and
its metrics written for TensorBoard and MLflow; jobs compared side by side."""

from __future__ import annotations

import gradio as gr

from easytune import jobs
from easytune.i18n import UserError, t
from easytune.jobs.events import ACTIVE_STATES, TERMINAL_STATES
from easytune.ui.choices import job_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, action_bar, fmt_time, showing
from easytune.ui.tracking_view import compare_block, export_control
from easytune.ui.versions import versions_block

STATES = ("all", *ACTIVE_STATES, *TERMINAL_STATES)


def job_rows(settings, state: str, lang: str) -> list[list]:
    rows = jobs.list_jobs(settings, None if state == "all" else state)
    return [[j["id"], j["name"], t("state." + j["state"], lang), f"{j['progress'] * 100:.0f}%",
             fmt_time(j["created_at"], lang)] for j in rows]


def detail_markdown(settings, job_id: str, lang: str) -> str:
    from easytune.ui.wizard import error_text

    job = jobs.get_job(settings, job_id)
    series = jobs.metrics(settings, job_id)
    last = lambda name: f"{series[name][-1][1]:.4f}" if series.get(name) else "—"  # noqa: E731
    lines = [f"### {job['name']}",
             t("ui.jobs.detail", lang, id=job["id"], state=t("state." + job["state"], lang), model=job["model"],
               dataset=job["dataset"], created=fmt_time(job["created_at"], lang), loss=last("loss"),
               val=last("val_loss"), folder=job["job_dir"])]
    if job["error"]:
        lines.append(f"**{t('ui.monitor.why', lang)}** {error_text(job['error'], lang)}")
    return "\n\n".join(lines)


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.jobs.title"})
    state = T.make(gr.Dropdown, {"label": "ui.jobs.filter",
                                 "choices": [("ui.jobs.all" if s == "all" else f"state.{s}", s) for s in STATES]},
                   value="all")
    table = T.make(Table, {"headers": ["ui.col.id", "ui.col.name", "ui.col.state", "ui.col.progress",
                                              "ui.col.created"]},
                   interactive=False, wrap=True, elem_id="et-jobs-table",
                   column_widths=["24%", "34%", "14%", "10%", "18%"])  # none cut, none running off the table
    empty = gr.Markdown()
    selected = gr.State(None)
    with gr.Group(visible=False) as detail:
        info = gr.Markdown(elem_id="et-job-detail")
        monitor = T.make(gr.Button, {"value": "ui.jobs.open"}, variant="primary", size="sm")
        action_bar(ctx, selected)
        export_control(ctx, selected)
        show_versions, versions_in, versions_out = versions_block(ctx, selected)
    compare_jobs, picked, compare_out = compare_block(ctx)
    timer = gr.Timer(5.0)

    def refresh(lang, state_):
        rows = job_rows(settings, state_, lang)
        return rows or None, "" if rows else t("ui.jobs.empty", lang)

    def opened(lang, state_, job_id, chosen):
        """The list, the picked job's versions and the jobs to compare as they are now (the page opened, the
        language switched)."""
        return *refresh(lang, state_), *show_versions(lang, job_id), *compare_jobs(lang, chosen)

    def show(lang, job_id):
        if not job_id:
            return gr.update(visible=False), ""
        try:
            return gr.update(visible=True), detail_markdown(settings, job_id, lang)
        except UserError:  # deleted meanwhile
            return gr.update(visible=False), ""

    listing = [table, empty]
    state.change(refresh, [ctx.language, state], listing)
    timer.tick(lambda lang, state_, job_id: (*refresh(lang, state_), *show_versions(lang, job_id, chart_too=False)),
               [ctx.language, state, selected], listing + versions_out)
    table.select(_pick, table, selected)
    selected.change(show, [ctx.language, selected], [detail, info])
    selected.change(show_versions, versions_in, versions_out)
    ctx.on_load.append((refresh, [ctx.language, state], listing))
    ctx.on_load.append((compare_jobs, [ctx.language, picked], compare_out))
    whole_page = (opened, [ctx.language, state, selected, picked], listing + versions_out + compare_out)
    ctx.shared["jobs_refresh"] = whole_page
    ctx.on_language.append(whole_page)

    def wire():
        monitor.click(lambda j: (gr.update(choices=job_choices(settings), value=j), gr.Tabs(selected="wizard"),
                                 gr.Tabs(selected="monitor")),
                      selected, [ctx.shared["job"], ctx.pages, ctx.shared["wizard_tabs"]]).then(*showing(ctx, "wizard"))

    ctx.later.append(wire)


def _pick(evt: gr.SelectData, rows):
    return rows.iloc[evt.index[0], 0] if evt.index is not None else None
