"""Step ④: did tuning help and what did it cost (verdict, safety), chat base vs tuned, export."""

from __future__ import annotations

import gradio as gr

from easytune import chat, jobs
from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.ui.texts import Ctx, error_markdown


def finished_jobs(settings: Settings) -> list[tuple[str, str]]:
    return [(f"{row['id']} · {row['name']}", row["id"]) for row in jobs.list_jobs(settings, "COMPLETED")]


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.eval.intro"})
    eval_job = T.make(gr.Dropdown, {"label": "ui.eval.job"}, choices=finished_jobs(settings), elem_id="et-eval-job")
    question = T.make(gr.Textbox, {"label": "ui.eval.question", "placeholder": "ui.eval.placeholder"},
                      lines=2, elem_id="et-question")
    ask = T.make(gr.Button, {"value": "ui.eval.ask"}, variant="primary", elem_id="et-ask")
    with gr.Row():
        tuned_answer = T.make(gr.Textbox, {"label": "ui.eval.tuned"}, lines=4, interactive=False,
                              elem_id="et-tuned-answer")
        base_answer = T.make(gr.Textbox, {"label": "ui.eval.base"}, lines=4, interactive=False)
    ask_error = gr.Markdown(elem_classes=["et-error"])

    def on_ask(new_lang, job_id, text):
        try:
            if not job_id:
                raise UserError("chat.error.no_job")
            tuned = chat.ask_job(settings, job_id, text)
            base = chat.ask_base(settings, jobs.get_job(settings, job_id)["model"], text)
            silent = t("ui.eval.no_answer", new_lang)  # the model ended its turn at once
            return tuned or silent, base or silent, ""
        except UserError as exc:
            return "", "", error_markdown(exc, new_lang)

    ask.click(on_ask, [ctx.language, eval_job, question], [tuned_answer, base_answer, ask_error])
    question.submit(on_ask, [ctx.language, eval_job, question], [tuned_answer, base_answer, ask_error])
    ctx.shared["eval_job"] = eval_job


def pick_job(settings: Settings, current: str | None):
    """The finished jobs, with the wizard's current job picked when it is one of them."""
    choices = finished_jobs(settings)
    ids = [value for _, value in choices]
    return gr.update(choices=choices, value=current if current in ids else (ids[0] if ids else None))
