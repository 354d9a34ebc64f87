"""The Gradio Blocks app: the four-step wizard. Handlers are thin: values in, one service call, updates out.

Nothing here imports the training stack; charts import plotly on first use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields

import gradio as gr

from easytune import chat, datasets, health, jobs
from easytune.i18n import UserError, normalize_lang, t
from easytune.plan import planner
from easytune.plan.schema import TrainingPlan
from easytune.plan.service import make_plan
from easytune.settings import PRESETS_DIR, Settings, load_settings
from easytune.ui import charts
from easytune.ui.theme import CSS, FORCE_DARK_JS, THEME

LAUNCH_OPTIONS = {"theme": THEME, "css": CSS, "js": FORCE_DARK_JS}
STEPS = ("data", "plan", "monitor", "evaluate")
FORM_FIELDS = [f for f in fields(TrainingPlan) if f.metadata["group"] != "data"]
_monitors: dict = {}


class Texts:
    """Components whose texts follow the language switch: each is made and re-labelled from keys."""

    def __init__(self, lang: str):
        self.lang = lang
        self.items: list[tuple[gr.components.Component, dict[str, str]]] = []

    def make(self, cls, texts: dict, **kwargs):
        component = cls(**self._render(texts, self.lang), **kwargs)
        self.items.append((component, texts))
        return component

    @staticmethod
    def _render(texts: dict, lang: str) -> dict:
        """{attr: key} → {attr: text}; `choices` holds [(key, value), …] and gets translated labels."""
        return {attr: [(t(k, lang), v) for k, v in key] if attr == "choices" else t(key, lang)
                for attr, key in texts.items()}

    @property
    def components(self):
        return [component for component, _ in self.items]

    def updates(self, lang: str):
        return [gr.update(**self._render(texts, lang)) for _, texts in self.items]


def demo_plan() -> TrainingPlan:
    """The built-in run: the tiny model on the demo FAQ, tuned to finish in about a minute on a laptop."""
    return TrainingPlan.load(PRESETS_DIR / "demo.yaml")


def plan_from_form(model: str, dataset: str, values) -> TrainingPlan:
    return TrainingPlan(model=model, dataset=dataset, **{f.name: v for f, v in zip(FORM_FIELDS, values)})


def _error_text(error: str | None, lang: str) -> str:
    if not error:
        return ""
    data = json.loads(error)
    return t(data["key"], lang, **data.get("params", {}))


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    from easytune.models.registry import registered

    return [("easytune-tiny", "easytune-tiny")] + [(row["name"], row["name"]) for row in registered(settings)]


def dataset_choices(settings: Settings) -> list[tuple[str, str]]:
    imported = [(f"{row['name']} ({row['rows']})", row["id"]) for row in datasets.list_datasets(settings)]
    return imported + [(name, name) for name in datasets.demo_names()]


def job_choices(settings: Settings, finished_only: bool = False) -> list[tuple[str, str]]:
    rows = jobs.list_jobs(settings, "COMPLETED" if finished_only else None)
    return [(f"{row['id']} · {row['name']}", row["id"]) for row in rows]


def status_markdown(settings: Settings, job_id: str | None, lang: str) -> str:
    if not job_id:
        return t("ui.monitor.empty", lang)
    job = jobs.get_job(settings, job_id)
    series = jobs.metrics(settings, job_id)
    last = lambda name: series[name][-1][1] if series.get(name) else None  # noqa: E731
    lines = [f"### {t('state.' + job['state'], lang)} · {job['progress'] * 100:.0f}%",
             t("ui.monitor.numbers", lang, step=len(series.get("loss", [])), total=job["total_steps"] or "?",
               loss=f"{last('loss'):.4f}" if last("loss") is not None else "—",
               val=f"{last('val_loss'):.4f}" if last("val_loss") is not None else "—",
               speed=f"{last('tokens_per_s'):.0f}" if last("tokens_per_s") is not None else "—")]
    if series.get("cf_pct"):
        lines.append(t("ui.monitor.cf", lang, pct=f"{last('cf_pct'):+.1f}", nats=f"{last('cf_score'):+.3f}"))
    for warning in health.assess(series, job["total_steps"]):
        icon = {"error": "⛔", "warning": "⚠️"}.get(warning["level"], "ℹ️")
        lines.append(f"> {icon} **{t(warning['key'], lang, **warning['params'])}** {t(warning['action'], lang)}")
    if job["error"]:
        lines.append(f"**{t('ui.monitor.why', lang)}** {_error_text(job['error'], lang)}")
    if job["state"] == "COMPLETED":
        lines.append(t("ui.monitor.done", lang))
    return "\n\n".join(lines)


def log_text(settings: Settings, job_id: str | None, lang: str) -> str:
    if not job_id:
        return ""
    return "\n".join(jobs.event_text(event["data"], lang) for event in jobs.events(settings, job_id))


def build_app(settings: Settings | None = None) -> gr.Blocks:
    settings = settings or load_settings()
    if settings.db_path not in _monitors:  # one follower per home, however often the app is built
        _monitors[settings.db_path] = jobs.Monitor(settings).start()
    lang = normalize_lang(settings.language)
    T = Texts(lang)
    plan = demo_plan()
    demos = datasets.demo_names()
    upload_types = [".json", ".jsonl", ".csv", ".tsv", ".txt", ".xlsx", ".parquet"]

    with gr.Blocks(title="EasyTune", fill_width=True, analytics_enabled=False) as demo:
        with gr.Row(elem_id="et-header"):
            T.make(gr.Markdown, {"value": "ui.header"})
            language = gr.Radio([("中文", "zh"), ("English", "en")], value=lang, show_label=False,
                                container=False, elem_id="et-lang", scale=0, min_width=180)
        with gr.Tabs(selected="data") as tabs:
            # ---- 1 data and model ----
            with T.make(gr.Tab, {"label": "ui.step.data"}, id="data"):
                T.make(gr.Markdown, {"value": "ui.data.intro"})
                with gr.Row():
                    model = T.make(gr.Dropdown, {"label": "ui.data.model", "info": "ui.data.model_info"},
                                   choices=model_choices(settings), value=plan.model)
                    dataset = T.make(gr.Dropdown, {"label": "ui.data.dataset", "info": "ui.data.dataset_info"},
                                     choices=dataset_choices(settings),
                                     value=plan.dataset if plan.dataset in demos else demos[0])
                upload = T.make(gr.File, {"label": "ui.data.upload"}, file_types=upload_types, file_count="single",
                                elem_id="et-upload", height=120)
                import_report = gr.Markdown(elem_id="et-import-report")
                preview = T.make(gr.Dataframe, {"label": "ui.data.preview"}, interactive=False, wrap=True,
                                 max_height=360)
                to_plan = T.make(gr.Button, {"value": "ui.next"}, variant="primary")

            # ---- 2 configuration ----
            with T.make(gr.Tab, {"label": "ui.step.plan"}, id="plan") as plan_tab:
                T.make(gr.Markdown, {"value": "ui.plan.intro"})
                intents = planner.choices()
                with gr.Row():
                    task = T.make(gr.Radio, {"label": "ui.plan.task", "info": "ui.plan.task_info",
                                             "choices": [(c["label"], c["id"]) for c in intents["tasks"]]},
                                  value="chat", elem_id="et-task")
                    level = T.make(gr.Radio, {"label": "ui.plan.level", "info": "ui.plan.level_info",
                                              "choices": [(c["label"], c["id"]) for c in intents["levels"]]},
                                   value="L2", elem_id="et-level")
                summary = gr.Markdown(elem_id="et-plan-summary")
                with T.make(gr.Accordion, {"label": "ui.plan.expert"}, open=False):
                    form = [_field_input(f, getattr(plan, f.name), lang, T) for f in FORM_FIELDS]
                plan_error = gr.Markdown(elem_classes=["et-error"])
                with gr.Row():
                    yaml_view = T.make(gr.Code, {"label": "ui.plan.yaml"}, language="yaml", interactive=False)
                    with gr.Column():
                        T.make(gr.Markdown, {"value": "ui.plan.command"})
                        download = T.make(gr.DownloadButton, {"label": "ui.plan.download"}, value=None)
                start = T.make(gr.Button, {"value": "ui.plan.start"}, variant="primary", elem_id="et-start")

            # ---- 3 monitoring ----
            with T.make(gr.Tab, {"label": "ui.step.monitor"}, id="monitor"):
                with gr.Row():
                    job = T.make(gr.Dropdown, {"label": "ui.monitor.job"}, choices=job_choices(settings),
                                 value=next(iter(job_choices(settings)), (None, None))[1], scale=4)
                    stop = T.make(gr.Button, {"value": "ui.monitor.stop"}, variant="stop", scale=1)
                status = gr.Markdown(elem_id="et-status")
                plot = gr.Plot(elem_id="et-loss-plot")
                logs = T.make(gr.Textbox, {"label": "ui.monitor.logs"}, lines=8, max_lines=8, interactive=False,
                              autoscroll=True)
                to_eval = T.make(gr.Button, {"value": "ui.next"}, variant="primary")

            # ---- 4 evaluate ----
            with T.make(gr.Tab, {"label": "ui.step.evaluate"}, id="evaluate") as eval_tab:
                T.make(gr.Markdown, {"value": "ui.eval.intro"})
                eval_job = T.make(gr.Dropdown, {"label": "ui.eval.job"}, choices=job_choices(settings, True),
                                  elem_id="et-eval-job")
                question = T.make(gr.Textbox, {"label": "ui.eval.question", "placeholder": "ui.eval.placeholder"},
                                  lines=2, elem_id="et-question")
                ask = T.make(gr.Button, {"value": "ui.eval.ask"}, variant="primary", elem_id="et-ask")
                with gr.Row():
                    tuned_answer = T.make(gr.Textbox, {"label": "ui.eval.tuned"}, lines=4, interactive=False,
                                          elem_id="et-tuned-answer")
                    base_answer = T.make(gr.Textbox, {"label": "ui.eval.base"}, lines=4, interactive=False)
                ask_error = gr.Markdown(elem_classes=["et-error"])
        timer = gr.Timer(2.0)
        seen = gr.State(None)

        # ---- handlers ----
        def on_language(new_lang):
            return T.updates(new_lang)

        def show_plan(new_lang, model_name, dataset_name, *values):
            try:
                current = plan_from_form(model_name, dataset_name, values)
            except UserError as exc:
                return gr.skip(), f"⚠️ {exc.message(new_lang)}", gr.skip()
            text = current.to_yaml(new_lang)
            folder = settings.folder("plans") / hashlib.sha256(text.encode()).hexdigest()[:12]
            folder.mkdir(exist_ok=True)  # one folder per distinct plan: concurrent pages never clash
            path = folder / "plan.yaml"
            path.write_text(text, encoding="utf-8")
            return text, "", gr.update(value=str(path))

        def on_intent(new_lang, model_name, dataset_name, task_id, level_id):
            """The planner's plan for this intent: every field set, each with its reason."""
            try:
                proposal = make_plan(settings, model=model_name, dataset=dataset_name, task=task_id, level=level_id)
            except UserError as exc:
                return [gr.skip()] * len(form) + [f"⚠️ {exc.message(new_lang)}"]
            report = proposal.to_dict(new_lang)
            lines = [f"- **{name}** = `{getattr(proposal.plan, name)}` — {entry['text']}"
                     for name, entry in report["reasons"].items() if name not in ("model", "dataset")]
            lines += [f"> ⚠️ {w['text']}" for w in report["warnings"]]
            minutes = proposal.estimates.get("minutes")
            if minutes is not None:
                lines.insert(0, t("ui.plan.estimate", new_lang, minutes=f"{minutes:.1f}",
                                  steps=proposal.estimates.get("steps", "?")))
            return [gr.update(value=getattr(proposal.plan, f.name)) for f in FORM_FIELDS] + ["\n".join(lines)]

        def show_preview(dataset_name, new_lang):
            rows = datasets.preview_rows(settings, dataset_name)
            return gr.update(value=[[r["user"], r["assistant"]] for r in rows],
                             headers=[t("ui.data.col_user", new_lang), t("ui.data.col_assistant", new_lang)])

        def on_upload(new_lang, file):
            if file is None:
                return gr.skip(), gr.skip()
            try:
                result = datasets.add_dataset(settings, file)
            except UserError as exc:
                return f"⚠️ {exc.message(new_lang)}", gr.skip()
            from easytune.data.summary import report_markdown

            return (report_markdown(result["report"], new_lang, result["duplicate_of"]),
                    gr.update(choices=dataset_choices(settings), value=result["dataset"]["id"]))

        def on_start(new_lang, model_name, dataset_name, *values):
            try:
                launched = jobs.launch(settings, plan_from_form(model_name, dataset_name, values))
            except UserError as exc:
                raise gr.Error(exc.message(new_lang)) from None
            return (gr.update(choices=job_choices(settings), value=launched["id"]), gr.Tabs(selected="monitor"))

        def refresh(new_lang, job_id, last_seen):
            if not job_id:
                return t("ui.monitor.empty", new_lang), gr.skip(), "", last_seen
            job_row = jobs.get_job(settings, job_id)
            series = jobs.metrics(settings, job_id)
            key = (job_id, new_lang, job_row["state"], sum(len(v) for v in series.values()))
            if key == last_seen:  # nothing new: leave the page alone
                return gr.skip(), gr.skip(), gr.skip(), last_seen
            return (status_markdown(settings, job_id, new_lang), charts.loss_figure(series, new_lang),
                    log_text(settings, job_id, new_lang), key)

        def on_stop(new_lang, job_id):
            if job_id:
                jobs.stop_job(settings, job_id)
            return status_markdown(settings, job_id, new_lang)

        def on_ask(new_lang, job_id, text):
            try:
                if not job_id:
                    raise UserError("chat.error.no_job")
                tuned = chat.ask_job(settings, job_id, text)
                base = chat.ask_base(settings, jobs.get_job(settings, job_id)["model"], text)
                silent = t("ui.eval.no_answer", new_lang)  # the model ended its turn at once
                return tuned or silent, base or silent, ""
            except UserError as exc:
                return "", "", f"⚠️ {exc.message(new_lang)}"

        def eval_choices():
            choices = job_choices(settings, True)
            return gr.update(choices=choices, value=choices[0][1] if choices else None)

        plan_inputs = [language, model, dataset, *form]
        plan_outputs = [yaml_view, plan_error, download]
        intent_inputs = [language, model, dataset, task, level]
        intent_outputs = [*form, summary]

        def replan(event):
            """Plan again; Start waits meanwhile, so a run never starts from a half-updated form."""
            return event.then(lambda: gr.update(interactive=False), None, start).then(
                on_intent, intent_inputs, intent_outputs).then(lambda: gr.update(interactive=True), None, start)

        replan(language.change(on_language, language, T.components)).then(
            show_preview, [dataset, language], preview)
        for component in (model, dataset, task, level):
            replan(component.change(lambda: None, None, None))
        for component in form:
            component.change(show_plan, plan_inputs, plan_outputs)
        dataset.change(show_preview, [dataset, language], preview)
        upload.upload(on_upload, [language, upload], [import_report, dataset])
        replan(to_plan.click(lambda: gr.Tabs(selected="plan"), None, tabs))
        start.click(on_start, plan_inputs, [job, tabs])
        timer.tick(refresh, [language, job, seen], [status, plot, logs, seen])
        job.change(refresh, [language, job, gr.State(None)], [status, plot, logs, seen])
        stop.click(on_stop, [language, job], status)
        to_eval.click(lambda: gr.Tabs(selected="evaluate"), None, tabs).then(eval_choices, None, eval_job)
        eval_tab.select(eval_choices, None, eval_job)
        ask.click(on_ask, [language, eval_job, question], [tuned_answer, base_answer, ask_error])
        question.submit(on_ask, [language, eval_job, question], [tuned_answer, base_answer, ask_error])
        replan(plan_tab.select(lambda: None, None, None))
        demo.load(show_plan, plan_inputs, plan_outputs).then(show_preview, [dataset, language], preview).then(
            eval_choices, None, eval_job)
    return demo


def _field_input(f, value, lang: str, T: Texts):
    """One expert-form input, generated from the TrainingPlan field: its type, range and help."""
    texts = {"info": f"plan.field.{f.name}"}
    meta = f.metadata
    if meta["choices"]:
        return T.make(gr.Dropdown, texts, label=f.name, choices=list(meta["choices"]), value=value)
    if isinstance(value, bool):
        return T.make(gr.Checkbox, texts, label=f.name, value=value)
    if isinstance(value, (int, float)):
        return T.make(gr.Number, texts, label=f.name, value=value, minimum=meta["lo"], maximum=meta["hi"],
                      precision=0 if isinstance(value, int) else None)
    return T.make(gr.Textbox, texts, label=f.name, value=value)

