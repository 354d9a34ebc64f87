"""The dashboard: what is here, what is running, how busy the machine is, and where to go next."""

from __future__ import annotations

import gradio as gr

from easytune.i18n import t
from easytune.overview import overview
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, fmt_bytes, fmt_time, showing


def cards_html(data: dict, lang: str) -> str:
    counts = data["counts"]
    cards = [(counts["datasets"], "ui.dash.datasets"), (counts["models"], "ui.dash.models"),
             (counts["jobs"], "ui.dash.jobs"), (counts["running"], "ui.dash.running"),
             (counts["exports"], "ui.dash.exports")]
    return '<div class="et-cards">' + "".join(
        f'<div class="et-card"><div class="et-card-n">{n}</div><div>{t(key, lang)}</div></div>'
        for n, key in cards) + "</div>"


def resources_markdown(res: dict, lang: str) -> str:
    lines = [t("ui.dash.cpu", lang, pct=f"{res['cpu_pct']:.0f}", cores=res["cpu_count"]),
             t("ui.dash.ram", lang, used=fmt_bytes(res["ram_used"]), total=fmt_bytes(res["ram_total"])),
             t("ui.dash.disk", lang, free=fmt_bytes(res["disk_free"]), total=fmt_bytes(res["disk_total"]))]
    for gpu in res["gpus"]:
        lines.append(t("ui.dash.gpu", lang, name=gpu["name"], pct=f"{gpu['util_pct']:.0f}",
                       used=fmt_bytes(gpu["memory_used_mb"] * 2**20), total=fmt_bytes(gpu["memory_total_mb"] * 2**20)))
    if not res["gpus"]:
        lines.append(t("ui.dash.no_gpu", lang))
    return "\n".join(f"- {line}" for line in lines)


def recent_rows(data: dict, lang: str) -> list[list]:
    return [[job["id"], job["name"], t("state." + job["state"], lang), f"{job['progress'] * 100:.0f}%",
             fmt_time(job["created_at"], lang)] for job in data["recent_jobs"]]


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.dash.title"})
    cards = gr.HTML(elem_id="et-dash-cards")
    with gr.Row():
        new_job = T.make(gr.Button, {"value": "ui.dash.new_job"}, variant="primary", elem_id="et-new-job")
        upload = T.make(gr.Button, {"value": "ui.dash.upload"})
        add_model = T.make(gr.Button, {"value": "ui.dash.add_model"})
    # the recent jobs take the page's width: five columns, none cut or wrapped mid-word
    recent = T.make(Table, {"label": "ui.dash.recent",
                                   "headers": ["ui.col.id", "ui.col.name", "ui.col.state", "ui.col.progress",
                                               "ui.col.created"]},
                    interactive=False, wrap=True, elem_id="et-dash-recent",
                    column_widths=["24%", "34%", "14%", "10%", "18%"])
    empty = gr.Markdown()
    T.make(gr.Markdown, {"value": "ui.dash.machine"})
    machine = gr.Markdown(elem_id="et-dash-machine")
    timer = gr.Timer(5.0)

    def refresh(lang):
        data = overview(settings)
        rows = recent_rows(data, lang)
        return (cards_html(data, lang), rows or None, "" if rows else t("ui.dash.empty", lang),
                resources_markdown(data["resources"], lang))

    outputs = [cards, recent, empty, machine]
    timer.tick(refresh, ctx.language, outputs)
    ctx.on_load.append((refresh, [ctx.language], outputs))
    ctx.shared["dashboard_refresh"] = (refresh, [ctx.language], outputs)
    ctx.on_language.append((refresh, [ctx.language], outputs))

    def wire():
        wizard_tabs = ctx.shared["wizard_tabs"]
        go_wizard = lambda: (gr.Tabs(selected="wizard"), gr.Tabs(selected="data"))  # noqa: E731
        new_job.click(go_wizard, None, [ctx.pages, wizard_tabs]).then(*showing(ctx, "wizard"))
        upload.click(go_wizard, None, [ctx.pages, wizard_tabs]).then(*showing(ctx, "wizard"))
        add_model.click(lambda: gr.Tabs(selected="models"), None, ctx.pages).then(*showing(ctx, "models"))

    ctx.later.append(wire)
