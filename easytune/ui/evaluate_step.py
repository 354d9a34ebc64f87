"""Step ④: did tuning help and what did it cost (verdict, safety, versions), chat base vs tuned, export.

Evaluation, safety check and export run in the request's worker thread with a progress bar; the
training stack is imported there on first use, never at start-up.
"""

from __future__ import annotations

import gradio as gr

from easytune import jobs
from easytune.export.formats import FORMATS as FORMAT_SPECS
from easytune.export.formats import NAMES as FORMATS
from easytune.export.formats import label_key
from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.ui.choices import job_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown, fmt_bytes, fmt_time
from easytune.ui.versions import versions_block

MISSED = ":missed"  # the next version's data: the job's own, with the questions it answered wrong (not a dataset id)
SESSION_TURNS = 20  # turns kept per browser session and side; older ones drop off the prompt


def finished_jobs(settings: Settings) -> list[tuple[str, str]]:
    return [(f"{row['id']} · {row['name']}", row["id"]) for row in jobs.list_jobs(settings, "COMPLETED")]


def pick_job(settings: Settings, current: str | None):
    """The finished jobs, with the wizard's current job picked when it is one of them. While the current job
    has not finished, none is picked: step ④ belongs to that job and must not show another job's results."""
    choices = finished_jobs(settings)
    ids = [value for _, value in choices]
    if current in ids:
        return gr.update(choices=choices, value=current)
    try:
        unfinished = current is not None and bool(jobs.get_job(settings, current))
    except UserError:  # deleted since
        unfinished = False
    return gr.update(choices=choices, value=None if unfinished or not ids else ids[0])


# ---- verdict and safety ----------------------------------------------------------------------------

def verdict_markdown(settings: Settings, job_id: str | None, lang: str) -> str:
    """The latest quality verdict and safety check of a job, as the verdict card."""
    if not job_id:
        return t("ui.eval.pick_job", lang)
    from easytune.evaluation.service import list_evaluations
    from easytune.evaluation.verdict import verdict_text

    latest = {}
    for row in list_evaluations(settings, job_id=job_id):  # newest first
        latest.setdefault(row["kind"], row)
    parts = []
    for kind, head, failed_icon, missing in (("quality", "ui.eval.verdict_head", "⚠", "ui.eval.not_evaluated"),
                                             ("safety", "ui.eval.safety_head", "⛔", "ui.eval.not_safety_checked")):
        row = latest.get(kind)
        if row is None:
            parts.append(t(missing, lang))
            continue
        icon = failed_icon if not row["passed"] else "⚠" if row["result"].get("caution") else "✓"
        text = verdict_text(row["result"], lang).replace("\n", "  \n")  # a sentence per line in Markdown
        parts.append(f"### {icon} {t(head, lang)}\n\n{text}")
        if kind == "quality":
            parts.append(samples_markdown(row["result"], lang))
    return "\n\n".join(parts)


def _cell(text: str, limit: int = 160) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:limit]


def samples_markdown(result: dict, lang: str) -> str:
    """Per bucket: the questions, the reference, both models' answers, and whether each stated the facts."""
    from easytune.evaluation.verdict import RIGHT_MARK, answers_label

    blocks = []
    for name, bucket in (result.get("buckets") or {}).items():
        samples = bucket.get("samples") or []
        if not samples:
            continue
        rows = [f"| {t('ui.eval.col_question', lang)} | {t('ui.eval.col_reference', lang)} | "
                f"{t('ui.eval.col_base', lang)} | {t('ui.eval.col_tuned', lang)} |", "|---|---|---|---|"]
        for sample in samples:
            facts = ", ".join(sample.get("facts") or [])
            instead = sample.get("tuned_instead")  # the answer of another taught question (service.mixed_up)
            note = f" ({_cell(t('ui.eval.instead', lang, question=instead[:80]))})" if instead else ""
            rows.append(f"| {_cell(sample['question'])} | {_cell(sample['reference'])}"
                        f"{f' ({_cell(facts, 60)})' if facts else ''} | "
                        f"{RIGHT_MARK[sample.get('base_right')]} {_cell(sample['base'])} | "
                        f"{RIGHT_MARK[sample.get('tuned_right')]} {_cell(sample['tuned'])}{note} |")
        blocks.append(f"<details><summary>{answers_label(name, bucket, lang)}</summary>\n\n" + "\n".join(rows)
                      + "\n\n</details>")
    return "\n\n".join(blocks)


def comparison_figure(settings: Settings, job_id: str | None, lang: str):
    """ROUGE-L on the seen and unseen questions for every evaluated job of the same dataset; shown once there
    are two to compare."""
    return gr.update(value=(fig := _comparison(settings, job_id, lang)), visible=fig is not None)


def _comparison(settings: Settings, job_id: str | None, lang: str):
    if not job_id:
        return None
    from easytune.evaluation.service import compare_jobs

    rows = compare_jobs(settings, jobs.get_job(settings, job_id)["dataset"])
    if len(rows) < 2:
        return None
    import plotly.graph_objects as go

    fig = go.Figure()
    for bucket, color in (("seen", "#22d3ee"), ("unseen", "#f59e0b"), ("general", "#f472b6")):
        values = [row[f"{bucket}_match"] for row in rows]
        if any(v is not None for v in values):
            fig.add_bar(x=[f"{row['job_id']} · lr {row['learning_rate']:g}" for row in rows], y=values,
                        name=t(f"ui.eval.bucket.{bucket}", lang), marker_color=color)
    fig.update_layout(template="plotly_dark", barmode="group", height=280, yaxis_title="ROUGE-L",
                      margin={"l": 40, "r": 10, "t": 30, "b": 40}, paper_bgcolor="#111827", plot_bgcolor="#111827")
    return fig


def chat_targets(settings: Settings, job_id: str | None, lang: str):
    """The job itself, then its verified exports that answer alone (not an adapter: the job is that already)."""
    from easytune.export.service import list_exports

    if not job_id:
        return gr.update(choices=[], value=None)
    ready = [e for e in list_exports(settings, job_id)
             if e["state"] == "READY" and e["format"] in FORMAT_SPECS and FORMAT_SPECS[e["format"]].answers_alone]
    choices = [(t("ui.eval.chat_job", lang), job_id)] + [(t(f"ui.eval.format.{e['format']}", lang), e["path"])
                                                          for e in ready]
    return gr.update(choices=choices, value=job_id)


def comparison_rows(settings: Settings, job_id: str | None, lang: str):
    """Every evaluated job of the same dataset side by side: settings that differ, what it learned, what it lost."""
    from easytune.evaluation.service import compare_jobs

    rows = compare_jobs(settings, jobs.get_job(settings, job_id)["dataset"]) if job_id else []
    pct = lambda v: f"{v * 100:.0f}%" if v is not None else "—"  # noqa: E731
    signed = lambda v: f"{v:+.0f}%" if v is not None else "—"  # noqa: E731
    table = [[r["job_id"], t(f"ui.eval.verdict.{r['verdict']}", lang), f"{r['learning_rate']:g}", r["epochs"],
              pct(r["seen_match"]), pct(r["unseen_match"]), signed(r["general_loss_pct"]), signed(r["cf_pct"])]
             for r in rows]
    return gr.update(value=table or None, visible=len(table) >= 2)


def exports_rows(settings: Settings, job_id: str | None, lang: str) -> list[list]:
    from easytune.export.service import list_exports

    rows = list_exports(settings, job_id) if job_id else []
    return [[e["format"], t("ui.eval.export_state." + e["state"], lang), fmt_bytes(e["size_bytes"]),
             f"{e['tokens_per_s']:.0f}" if e["tokens_per_s"] else "—", "✓" if e["verified"] else "—", e["path"],
             fmt_time(e["created_at"], lang)] for e in rows]


# ---- the builder -----------------------------------------------------------------------------------

def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.eval.intro"})
    eval_job = T.make(gr.Dropdown, {"label": "ui.eval.job"}, choices=finished_jobs(settings), elem_id="et-eval-job")

    # -- verdict
    with gr.Row():
        evaluate = T.make(gr.Button, {"value": "ui.eval.evaluate"}, variant="primary", elem_id="et-evaluate")
        safety = T.make(gr.Button, {"value": "ui.eval.safety"}, elem_id="et-safety")
    questions = T.make(gr.Dropdown, {"label": "ui.eval.questions", "info": "ui.eval.questions_info"},
                       choices=[(t("ui.eval.questions_held_out", T.lang), "")], value="",  # (the datasets: on load)
                       elem_id="et-eval-questions")
    verdict = gr.Markdown(elem_id="et-verdict", elem_classes=["et-verdict"])
    comparison = gr.Plot(elem_id="et-compare", visible=False, show_label=False)  # the figure has its own title
    headers = ["ui.col.job", "ui.eval.col.verdict", "ui.eval.col.lr", "ui.eval.col.epochs", "ui.eval.bucket.seen",
               "ui.eval.bucket.unseen", "ui.eval.col.general_loss", "ui.eval.col.cf"]
    compare_table = T.make(Table, {"headers": headers}, interactive=False, visible=False,
                           elem_id="et-compare-table")
    show_versions, versions_in, versions_out = versions_block(ctx, eval_job)  # this model's earlier and later versions

    # -- chat, base and tuned side by side
    T.make(gr.Markdown, {"value": "ui.eval.chat_head"})
    chat_target = T.make(gr.Dropdown, {"label": "ui.eval.chat_target", "info": "ui.eval.chat_target_info"},
                         choices=[], elem_id="et-chat-target")
    with gr.Row():
        tuned_chat = T.make(gr.Chatbot, {"label": "ui.eval.tuned"}, height=300, elem_id="et-tuned-chat")
        base_chat = T.make(gr.Chatbot, {"label": "ui.eval.base"}, height=300, elem_id="et-base-chat")
    with gr.Row():
        question = T.make(gr.Textbox, {"label": "ui.eval.question", "placeholder": "ui.eval.placeholder"},
                          lines=2, scale=5, elem_id="et-question")
        with gr.Column(scale=1, min_width=120):
            ask = T.make(gr.Button, {"value": "ui.eval.ask"}, variant="primary", elem_id="et-ask")
            clear = T.make(gr.Button, {"value": "ui.eval.clear"}, size="sm")
    with T.make(gr.Accordion, {"label": "ui.eval.settings"}, open=False):
        system = T.make(gr.Textbox, {"label": "ui.eval.system", "placeholder": "ui.eval.system_hint"}, lines=2)
        with gr.Row():
            temperature = T.make(gr.Slider, {"label": "ui.eval.temperature", "info": "ui.eval.temperature_info"},
                                 minimum=0, maximum=1.5, step=0.05, value=0.0)
            top_p = T.make(gr.Slider, {"label": "ui.eval.top_p"}, minimum=0.05, maximum=1, step=0.05, value=0.9)
            max_tokens = T.make(gr.Slider, {"label": "ui.eval.max_tokens"}, minimum=16, maximum=1024, step=16,
                                value=256)
    with T.make(gr.Accordion, {"label": "ui.eval.feedback_head"}, open=False, elem_id="et-feedback"):
        T.make(gr.Markdown, {"value": "ui.eval.feedback_intro"})
        correction = T.make(gr.Textbox, {"label": "ui.eval.correction"}, lines=2, elem_id="et-correction")
        with gr.Row():
            thumbs_up = T.make(gr.Button, {"value": "ui.eval.good"}, size="sm")
            thumbs_down = T.make(gr.Button, {"value": "ui.eval.bad"}, size="sm")
            to_dataset = T.make(gr.Button, {"value": "ui.eval.to_dataset"}, size="sm")
            labelled = T.make(gr.Checkbox, {"label": "ui.eval.feedback_labelled",
                                            "info": "ui.eval.feedback_labelled_info"}, value=False)
        with gr.Row():
            improve_data = T.make(gr.Dropdown, {"label": "ui.eval.improve_data", "info": "ui.eval.improve_data_info"},
                                  choices=[(t("ui.eval.improve_feedback", T.lang), "")], value="", scale=2,
                                  elem_id="et-improve-data")
            continual = T.make(gr.Checkbox, {"label": "ui.eval.improve_continual",
                                             "info": "ui.eval.improve_continual_info"}, value=False,
                               elem_id="et-improve-continual")
            replay = T.make(gr.Slider, {"label": "ui.eval.improve_replay", "info": "ui.eval.improve_replay_info"},
                            minimum=0, maximum=0.5, step=0.05, value=0, elem_id="et-improve-replay")
        improve_advice = gr.Markdown(elem_id="et-improve-advice")
        improve = T.make(gr.Button, {"value": "ui.eval.improve"}, variant="primary", size="sm", elem_id="et-improve")
    chat_error = gr.Markdown(elem_classes=["et-error"])

    # -- export
    T.make(gr.Markdown, {"value": "ui.eval.export_head"})
    with gr.Row():
        fmt = T.make(gr.Radio, {"label": "ui.eval.format", "info": "ui.eval.format_info",
                                "choices": [(label_key(f), f) for f in FORMATS]},
                     value=FORMATS[0], scale=3, elem_id="et-format")
        with gr.Column(scale=1):
            confirm_unsafe = T.make(gr.Checkbox, {"label": "ui.eval.confirm_unsafe"}, value=False)
            export = T.make(gr.Button, {"value": "ui.eval.export"}, variant="primary", elem_id="et-export")
    export_result = gr.Markdown(elem_id="et-export-result")
    exports = T.make(Table, {"headers": ["ui.col.format", "ui.col.state", "ui.col.size", "ui.col.speed",
                                                "ui.col.verified", "ui.col.path", "ui.col.created"]},
                     interactive=False, wrap=True, elem_id="et-exports")

    history = gr.State([])  # [(question, tuned answer, base answer)] of this browser session

    # ---- handlers ----
    def show_job(lang, job_id):
        """Everything step ④ shows belongs to this job: the last job's messages and answers are cleared."""
        return (verdict_markdown(settings, job_id, lang), comparison_figure(settings, job_id, lang),
                comparison_rows(settings, job_id, lang), exports_rows(settings, job_id, lang) or None, [], [], [],
                chat_targets(settings, job_id, lang), "", "", "", False)

    def questions_choices(lang, current=""):
        """The held-out rows of the job, or any imported dataset as the user's own test questions (the choice
        kept across a language switch)."""
        from easytune.datasets import list_datasets

        rows = list_datasets(settings)
        return gr.update(choices=[(t("ui.eval.questions_held_out", lang), "")] + [(r["name"], r["id"]) for r in rows],
                         value=current if current in {r["id"] for r in rows} else "")

    def on_evaluate(lang, job_id, test_questions, progress=gr.Progress()):
        from easytune.evaluation.service import evaluate_job

        if not job_id:
            return t("ui.eval.pick_job", lang), gr.skip(), gr.skip()
        from easytune.evaluation.progress import Eta

        desc, eta = t("ui.eval.evaluating", lang), Eta()
        progress(0, desc=desc)
        try:
            evaluate_job(settings, job_id, lang=lang, questions=test_questions or None,
                         progress=lambda done, total: progress(done / total,
                                                               desc=f"{desc} · {eta.text(done, total, lang)}"))
        except UserError as exc:
            return error_markdown(exc, lang), gr.skip(), gr.skip()
        return (verdict_markdown(settings, job_id, lang), comparison_figure(settings, job_id, lang),
                comparison_rows(settings, job_id, lang))

    def on_safety(lang, job_id, progress=gr.Progress()):
        from easytune.evaluation.safety import safety_check

        if not job_id:
            return t("ui.eval.pick_job", lang)
        desc = t("ui.eval.checking", lang)
        progress(0, desc=desc)
        try:
            safety_check(settings, job_id, lang=lang, progress=lambda done, total: progress(done / total, desc=desc))
        except UserError as exc:
            return error_markdown(exc, lang)
        return verdict_markdown(settings, job_id, lang)

    def on_ask(lang, job_id, tuned_target, text, turns, system_, temp, top_p_, max_new):
        """Stream the tuned answer, then the base model's to the same conversation."""
        from easytune import chat

        if not job_id:
            yield gr.skip(), gr.skip(), gr.skip(), t("chat.error.no_job", lang), gr.skip()
            return
        turns = list(turns or [])[-SESSION_TURNS:]
        base_model = jobs.get_job(settings, job_id)["model"]
        silent = t("ui.eval.no_answer", lang)
        answers = {}
        try:
            for side, target in (("tuned", tuned_target or job_id), ("base", base_model)):
                messages = []
                for q, tuned_a, base_a in turns:
                    messages += [{"role": "user", "content": q},
                                 {"role": "assistant", "content": tuned_a if side == "tuned" else base_a}]
                messages.append({"role": "user", "content": text})
                stream = chat.stream_answer(settings, target, messages, system=system_ or None, temperature=temp,
                                            top_p=top_p_, max_new_tokens=int(max_new))
                for partial in stream:
                    answers[side] = partial
                    yield (*_views(turns, text, answers.get("tuned", ""), answers.get("base", "")), "", gr.skip())
                answers[side] = stream.text or silent
        except UserError as exc:
            yield gr.skip(), gr.skip(), gr.skip(), error_markdown(exc, lang), gr.skip()
            return
        turns.append((text, answers["tuned"], answers["base"]))
        yield (*_views(turns[:-1], text, answers["tuned"], answers["base"]), "", turns)

    def _views(turns, text, tuned_a, base_a):
        tuned, base = [], []
        for q, ta, ba in turns:
            tuned += [{"role": "user", "content": q}, {"role": "assistant", "content": ta}]
            base += [{"role": "user", "content": q}, {"role": "assistant", "content": ba}]
        tuned += [{"role": "user", "content": text}, {"role": "assistant", "content": tuned_a}]
        base += [{"role": "user", "content": text}, {"role": "assistant", "content": base_a}]
        return tuned, base, gr.update(value="")

    def on_feedback(lang, job_id, turns, rating, corrected, system_):
        from easytune.feedback import record_feedback

        if not turns:
            return t("ui.eval.feedback_nothing", lang)
        q, answer, _ = turns[-1]
        try:
            record_feedback(settings, job_id, q, answer, rating, correction=corrected or None, system=system_ or None)
        except UserError as exc:
            return error_markdown(exc, lang)
        return t("ui.eval.feedback_saved", lang)

    def on_to_dataset(lang, job_id, labelled_):
        """This job's feedback only: answers of different models are not mixed into one dataset silently.
        Labelled: every rating teaches (KTO), not only the good answers and the corrections."""
        from easytune.feedback import job_feedback_dataset

        if not job_id:
            return t("ui.eval.pick_job", lang)
        try:
            result = job_feedback_dataset(settings, job_id, labelled_)
        except UserError as exc:
            return error_markdown(exc, lang)
        return t("ui.eval.feedback_dataset", lang, name=result["dataset"]["name"], rows=result["dataset"]["rows"],
                 job=job_id)

    def improve_choices(lang, job_id):
        """What the next version can train on: this job's feedback, its data with the questions it missed, or any
        dataset."""
        from easytune.datasets import list_datasets

        own = [(t("ui.eval.improve_feedback", lang), ""), (t("ui.eval.improve_missed", lang), MISSED)]
        return gr.update(choices=own + [(row["name"], row["id"]) for row in list_datasets(settings)], value="")

    def on_improve_data(lang, job_id, dataset):
        """New data that teaches something other than what the earlier versions learned: say so, and offer
        continual learning and replay, which keep what they taught."""
        from easytune.jobs import continual_advice

        if not job_id or not dataset or dataset == MISSED:  # (its own data again, with the questions it missed)
            return "", gr.skip(), gr.skip()
        try:
            advice = continual_advice(settings, job_id, dataset)
        except UserError as exc:
            return error_markdown(exc, lang), gr.skip(), gr.skip()
        if not advice["differs"]:
            return "", gr.skip(), gr.skip()
        from easytune.jobs import NEW_TASK_DEFAULTS as defaults

        return (t("ui.eval.improve_differs", lang, pct=round(100 * advice["shared_words"])),
                defaults.get("continual", gr.skip()), defaults.get("replay_ratio", gr.skip()))

    def on_improve(lang, job_id, labelled_, dataset, continual_, replay_):
        """The flywheel: version N+1 trained from this job's adapter on its feedback (as a dataset) or on the
        dataset picked; the monitor then follows the new version."""
        from easytune.evaluation.missed import improve_from_missed, made_text
        from easytune.feedback import improve_from_feedback
        from easytune.jobs import next_version

        if not job_id:
            return t("ui.eval.pick_job", lang), gr.skip(), gr.skip()
        changes = {"continual": bool(continual_), "replay_ratio": float(replay_ or 0)}
        try:
            if dataset == MISSED:
                improved = improve_from_missed(settings, job_id, changes)
                job, made = improved["job"], improved["dataset"]
                said = made_text(made, lang) + " " + t("ui.eval.improving_data", lang, job=job["id"])
            elif dataset:
                job = next_version(settings, job_id, dataset, changes)
                said = t("ui.eval.improving_data", lang, job=job["id"])
            else:
                improved = improve_from_feedback(settings, job_id, labelled_, changes)
                job = improved["job"]
                said = t("ui.eval.improving", lang, job=job["id"], rows=improved["dataset"]["rows"])
        except UserError as exc:
            return error_markdown(exc, lang), gr.skip(), gr.skip()
        gr.Info(said)  # the page moves on to the monitor: said there too, not only in this step
        return said, gr.update(choices=job_choices(settings), value=job["id"]), gr.Tabs(selected="monitor")

    def on_export(lang, job_id, fmt_, confirmed, progress=gr.Progress()):
        from easytune.export.service import export_job

        if not job_id:
            return t("ui.eval.pick_job", lang), gr.skip(), gr.skip()
        report = lambda fraction, key: progress(fraction, desc=t(key, lang) if key else "")  # noqa: E731
        try:
            row = export_job(settings, job_id, fmt_, confirm_unsafe=confirmed, progress=report, lang=lang)
        except UserError as exc:
            return error_markdown(exc, lang), exports_rows(settings, job_id, lang) or None, gr.skip()
        text = t("ui.eval.exported", lang, format=t(f"ui.eval.format.{fmt_}", lang), path=row["path"],
                 size=fmt_bytes(row["size_bytes"]),
                 speed=f"{row['tokens_per_s']:.0f}" if row.get("tokens_per_s") else "—")
        return text, exports_rows(settings, job_id, lang) or None, chat_targets(settings, job_id, lang)

    lang_in = ctx.language
    job_outputs = [verdict, comparison, compare_table, exports, tuned_chat, base_chat, history, chat_target,
                   export_result, chat_error, correction, confirm_unsafe]
    eval_job.change(show_job, [lang_in, eval_job], job_outputs)
    eval_job.change(show_versions, versions_in, versions_out)
    eval_job.change(questions_choices, lang_in, questions)
    evaluate.click(on_evaluate, [lang_in, eval_job, questions], [verdict, comparison, compare_table]).then(
        show_versions, versions_in, versions_out)  # the new verdict goes beside the other versions'
    safety.click(on_safety, [lang_in, eval_job], verdict)
    ask_inputs = [lang_in, eval_job, chat_target, question, history, system, temperature, top_p, max_tokens]
    ask_outputs = [tuned_chat, base_chat, question, chat_error, history]
    ask.click(on_ask, ask_inputs, ask_outputs)
    question.submit(on_ask, ask_inputs, ask_outputs)
    clear.click(lambda: ([], [], []), None, [tuned_chat, base_chat, history])
    thumbs_up.click(lambda lg, j, h, s: on_feedback(lg, j, h, 1, None, s), [lang_in, eval_job, history, system],
                    chat_error)
    thumbs_down.click(lambda lg, j, h, c, s: on_feedback(lg, j, h, -1, c, s),
                      [lang_in, eval_job, history, correction, system], chat_error)
    to_dataset.click(on_to_dataset, [lang_in, eval_job, labelled], chat_error)
    eval_job.change(improve_choices, [lang_in, eval_job], improve_data)
    improve_data.change(on_improve_data, [lang_in, eval_job, improve_data], [improve_advice, continual, replay])
    ctx.later.append(lambda: improve.click(on_improve, [lang_in, eval_job, labelled, improve_data, continual, replay],
                                           [chat_error, ctx.shared["job"], ctx.shared["wizard_tabs"]]).then(
        show_versions, versions_in, versions_out))  # the new version joins the table
    export.click(on_export, [lang_in, eval_job, fmt, confirm_unsafe], [export_result, exports, chat_target])
    ctx.on_language.append((lambda lg, j: show_job(lg, j)[:4], [lang_in, eval_job], job_outputs[:4]))
    ctx.on_language.append((show_versions, versions_in, versions_out))
    ctx.on_language.append((improve_choices, [lang_in, eval_job], improve_data))
    ctx.on_language.append((questions_choices, [lang_in, questions], questions))
    ctx.on_load.append((questions_choices, [lang_in, questions], questions))
    ctx.shared.update(eval_job=eval_job, eval_versions=(show_versions, versions_in, versions_out))
