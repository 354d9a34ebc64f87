"""The four-step wizard: ① data and model → ② goal and settings → ③ training → ④ evaluate and export.

Handlers are thin: values in, one service call, updates out. Where the user is (step, model, data,
intent, job) is kept in SQLite (easytune.ui.state), so a reload or a second browser picks up there.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import fields
from html import escape
from pathlib import Path

import gradio as gr

from easytune import datasets, jobs
from easytune.data.readers import listed_extensions
from easytune.i18n import UserError, t
from easytune.jobs.events import ACTIVE_STATES
from easytune.plan import planner
from easytune.plan.schema import TrainingPlan, field_help, shown_value
from easytune.plan.service import make_plan
from easytune.plan.task_choice import AUTO
from easytune.settings import PRESETS_DIR, Settings
from easytune.ui import charts, evaluate_step, manage_models, state, sweep_panel
from easytune.ui.choices import job_choices, model_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, Texts, action_bar, action_choices, error_markdown, mapping_from_table

STEPS = ("data", "plan", "monitor", "evaluate")
# While a job runs its chart is drawn again at most this often (s): each drawing costs this process and the
# browser CPU time the training on the same cores would otherwise have (python -m easytune.ui.bench_watching)
CHART_EVERY_S = 10.0
# How often the monitor looks for news (s): every tick is a round trip of the page's, about 0.15 CPU s of the
# browser's, so a job that is not running (ended, paused, none) is looked at less often; any change of job,
# state or language, and a job just started (the job picked), is shown at once.
TICK_S = {"active": 2.0, "idle": 10.0}
FORM_FIELDS = [f for f in fields(TrainingPlan) if f.metadata["group"] != "data"]
UPLOAD_TYPES = listed_extensions()  # the file types the import's readers name
LOG_LEVELS = ("all", "info", "warning", "error")


def demo_plan() -> TrainingPlan:
    """The built-in run: the tiny model on the demo FAQ, tuned to finish in about a minute on a laptop."""
    return TrainingPlan.load(PRESETS_DIR / "demo.yaml")


def plan_from_form(model: str, dataset: str, values) -> TrainingPlan:
    return TrainingPlan(model=model, dataset=dataset, **{f.name: v for f, v in zip(FORM_FIELDS, values)})


def error_text(error: str | None, lang: str) -> str:
    if not error:
        return ""
    data = json.loads(error)
    return t(data["key"], lang, **data.get("params", {}))


def dataset_choices(settings: Settings) -> list[tuple[str, str]]:
    imported = [(f"{row['name']} ({row['rows']})", row["id"]) for row in datasets.list_datasets(settings)]
    return imported + [(name, name) for name in datasets.demo_names()]


# ---- the stepper ---------------------------------------------------------------------------------

def steps_done(settings: Settings, job_id: str | None) -> set[str]:
    """A step is done when what it produces exists: data chosen, a job started, a job finished, an export."""
    done = {"data"}
    if job_id:
        done.add("plan")
        row = jobs.get_job(settings, job_id)
        if row["state"] == "COMPLETED":
            done.add("monitor")
            from easytune.store import open_db

            if open_db(settings.db_path).execute("select 1 from exports where job_id = ? and state = 'READY'",
                                                 [job_id]).fetchone():
                done.add("evaluate")
    return done


def stepper(done: set[str], lang: str) -> list:
    """The step tabs marked ✓ when done, and a line saying what comes next."""
    labels = [gr.update(label=("✓ " if step in done else "") + t("ui.step." + step, lang)) for step in STEPS]
    upcoming = next((s for s in STEPS if s not in done), None)
    hint = t("ui.stepper.next", lang, step=t("ui.step." + upcoming, lang)) if upcoming else t("ui.stepper.all", lang)
    return [*labels, hint]


# ---- step 3 texts --------------------------------------------------------------------------------

def _eta(settings: Settings, job: dict) -> str | None:
    left = jobs.time_left(settings, job)
    return None if left is None else f"{int(left // 60)}:{int(left % 60):02d}"


def status_markdown(settings: Settings, job_id: str | None, lang: str) -> str:
    if not job_id:
        return t("ui.monitor.empty", lang)
    job = jobs.get_job(settings, job_id)
    series = jobs.metrics(settings, job_id)
    last = lambda name: series[name][-1][1] if series.get(name) else None  # noqa: E731
    steps = len(series.get("loss", []))
    head = f"### {t('state.' + job['state'], lang)} · {job['progress'] * 100:.0f}%"
    eta = _eta(settings, job)
    if eta:
        head += " · " + t("ui.monitor.eta", lang, eta=eta)
    lines = [head,
             t("ui.monitor.numbers", lang, step=steps, total=job["total_steps"] or "?",
               loss=f"{last('loss'):.4f}" if last("loss") is not None else "—",
               val=f"{last('val_loss'):.4f}" if last("val_loss") is not None else "—",
               speed=f"{last('tokens_per_s'):.0f}" if last("tokens_per_s") is not None else "—")]
    if last("lr") is not None:
        lines.append(t("ui.monitor.lr", lang, lr=f"{last('lr'):.2e}"))
    if series.get("cf_pct"):
        lines.append(t("ui.monitor.cf", lang, pct=f"{last('cf_pct'):.1f}", nats=f"{last('cf_score'):.3f}"))
    if series.get("reward_margin"):  # preference training (DPO)
        val_margin, accuracy = last("val_reward_margin"), last("val_reward_accuracy")
        lines.append(t("ui.monitor.reward", lang, margin=f"{last('reward_margin'):+.3f}",
                       val_margin=f"{val_margin:+.3f}" if val_margin is not None else "—",
                       accuracy=f"{accuracy * 100:.0f}" if accuracy is not None else "—"))
    for warning in jobs.warnings(settings, job):
        icon = {"error": "⛔", "warning": "⚠️"}.get(warning["level"], "ℹ️")
        lines.append(f"> {icon} **{t(warning['key'], lang, **warning['params'])}** {t(warning['action'], lang)}")
    if job["error"]:
        lines.append(f"**{t('ui.monitor.why', lang)}** {error_text(job['error'], lang)}")
    if job["state"] == "COMPLETED":
        lines.append(t("ui.monitor.done", lang))
    return "\n\n".join(lines)


def log_lines(settings: Settings, job_id: str | None, lang: str, level: str = "all", search: str = "") -> list[str]:
    if not job_id:
        return []
    out = []
    for event in jobs.logged_events(settings, job_id):
        data = event["data"]
        if level != "all" and (data.get("level") or "info") != level:
            continue
        line = jobs.event_text(data, lang)
        if search and search.lower() not in line.lower():
            continue
        out.append(line)
    return out


def log_file(settings: Settings, job_id: str, lang: str, level: str = "all", search: str = "") -> Path:
    """The log as shown (same level and search), as plain text for the download button."""
    job = jobs.get_job(settings, job_id)  # the file is named by the job's own id, never by what was sent
    path = settings.folder("downloads") / f"{job['id']}-log.txt"
    path.write_text("\n".join(log_lines(settings, job_id, lang, level, search)) + "\n", encoding="utf-8")
    return path


def log_html(lines: list[str], lang: str, search: str = "") -> str:
    """The log panel: every line escaped (a log line is text, never markup) and each case-insensitive
    match of `search` in <mark>."""
    if not lines:
        return f"<p>{escape(t('ui.monitor.log_none', lang, search=search))}</p>" if search else ""
    pattern = re.compile(re.escape(search), re.IGNORECASE) if search else None
    shown = []
    for line in lines:
        pieces, start = [], 0
        for match in pattern.finditer(line) if pattern else ():
            pieces += [escape(line[start:match.start()]), f"<mark>{escape(match.group())}</mark>"]
            start = match.end()
        shown.append("".join(pieces) + escape(line[start:]))
    return ('<pre class="et-log" style="white-space: pre-wrap; margin: 0; font-size: .85em">'
            + "\n".join(shown) + "</pre>")


def progress_html(settings: Settings, job_id: str | None) -> str:
    pct = jobs.get_job(settings, job_id)["progress"] * 100 if job_id else 0
    return (f'<div class="et-progress" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0" '
            f'aria-valuemax="100"><div style="width:{pct:.1f}%"></div></div>')


# ---- step 2 texts --------------------------------------------------------------------------------

def plan_summary(proposal, lang: str) -> str:
    """The plan as a short list: each value with its one-sentence reason, which expands to the longer
    explanation; ✎ marks a value the user set. HTML inside the Markdown (whose sanitiser keeps classes, not
    data- attributes), so the expand needs no script."""
    report = proposal.to_dict(lang)
    lines = []
    minutes = proposal.estimates.get("minutes")
    if minutes is not None:
        lines += [t("ui.plan.estimate", lang, minutes=f"{minutes:.1f}", steps=proposal.estimates.get("steps", "?")),
                  ""]
    if proposal.task_text(lang):
        lines += [f'<p class="et-task-chosen">{escape(proposal.task_text(lang))}</p>', ""]
    items = []
    for name, entry in report["reasons"].items():
        if name in ("model", "dataset"):
            continue
        label = t("planner.field_name." + name, lang) if _has_name(name) else name
        mark = " ✎" if name in proposal.user_set else ""
        items.append(f'<li class="et-field-{name}"><details><summary><strong>{escape(label)}</strong>{mark} = '
                     f"<code>{escape(shown_value(name, getattr(proposal.plan, name), lang))}</code> — "
                     f"{escape(entry['text'])}</summary>"
                     f"<p>{escape(entry['why'])}</p></details></li>")
    lines.append('<ul class="et-plan-list">' + "".join(items) + "</ul>")  # one line: one HTML block
    lines += [f"\n> ⚠️ {w['text']}" for w in report["warnings"]]  # a blank line apart: one line each
    return "\n".join(lines)


# ---- the builder ---------------------------------------------------------------------------------

def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    lang = T.lang
    plan = demo_plan()
    demos = datasets.demo_names()

    hint = gr.Markdown(t("ui.stepper.next", lang, step=t("ui.step.plan", lang)), elem_id="et-stepper")
    with gr.Tabs(selected="data") as tabs:
        # ---- 1 data and model ----
        with T.make(gr.Tab, {"label": "ui.step.data"}, id="data") as data_tab:
            T.make(gr.Markdown, {"value": "ui.data.intro"})
            with gr.Row():
                with gr.Column():
                    model = T.make(gr.Dropdown, {"label": "ui.data.model", "info": "ui.data.model_info"},
                                   choices=model_choices(settings), value=plan.model, elem_id="et-model")
                    fit = gr.Markdown(elem_id="et-fit")
                    check_fit = T.make(gr.Button, {"value": "ui.data.check_fit"}, size="sm")
                    with T.make(gr.Accordion, {"label": "models.add_here"}, open=False):
                        model_adding, model_added = manage_models.add_panel(ctx, "et-wizard-model", "wizard_add_model")
                dataset = T.make(gr.Dropdown, {"label": "ui.data.dataset", "info": "ui.data.dataset_info"},
                                 choices=dataset_choices(settings),
                                 value=plan.dataset if plan.dataset in demos else demos[0], elem_id="et-dataset")
            upload = T.make(gr.File, {"label": "ui.data.upload"}, file_types=UPLOAD_TYPES, file_count="single",
                            elem_id="et-upload", height=120)
            import_report = gr.Markdown(elem_id="et-import-report")
            with gr.Group(visible=False) as cleanup:  # offered when the report found something to fix
                T.make(gr.Markdown, {"value": "ui.data.fixes_note"})
                with gr.Row():
                    drop_dups = gr.Checkbox(value=True, elem_id="et-drop-dups")
                    mask_pii = gr.Checkbox(value=True, elem_id="et-mask-pii")
                    reimport = T.make(gr.Button, {"value": "ui.data.reimport"}, size="sm")
                keep = T.make(gr.Textbox, {"label": "ui.data.keep_values", "info": "ui.data.keep_values_info"},
                              lines=1, elem_id="et-keep-values")
            with gr.Group(visible=False) as fixer:  # when the columns could not be told apart
                T.make(gr.Markdown, {"value": "ui.ds.mapping_help"})
                fix_mapping = T.make(Table, {"headers": ["ui.ds.role", "ui.ds.field"]}, interactive=True,
                                     column_count=(2, "fixed"), datatype=["str", "str"], elem_id="et-fix-mapping")
                fix_import = T.make(gr.Button, {"value": "ui.data.import_mapped"}, variant="primary", size="sm")
            # columns sized to the table, so a long answer wraps inside it instead of running off its edge
            preview = T.make(Table, {"label": "ui.data.preview"}, interactive=False, wrap=True,
                             max_height=360, column_widths=["35%", "65%"], elem_id="et-preview")
            tokens_text = gr.Markdown(elem_id="et-tokens")
            # drawn when opened: the chart costs the app a plotting library the first page otherwise does without
            with T.make(gr.Accordion, {"label": "ui.data.tokens_chart"}, open=False,
                        elem_id="et-tokens-chart") as tokens_chart:
                tokens_plot = gr.Plot(elem_id="et-tokens-plot", show_label=False)  # the figure has its own title
            chart_open, lengths = gr.State(False), gr.State(None)  # the chart is drawn from the lengths measured
            to_plan = T.make(gr.Button, {"value": "ui.next"}, variant="primary")

        # ---- 2 configuration ----
        with T.make(gr.Tab, {"label": "ui.step.plan"}, id="plan") as plan_tab:
            T.make(gr.Markdown, {"value": "ui.plan.intro"})
            intents = planner.choices()
            with gr.Row():
                task = T.make(gr.Radio, {"label": "ui.plan.task", "info": "ui.plan.task_info",
                                         "choices": [(c["label"], c["id"]) for c in intents["tasks"]]},
                              value=AUTO, elem_id="et-task")
                level = T.make(gr.Radio, {"label": "ui.plan.level", "info": "ui.plan.level_info",
                                          "choices": [(c["label"], c["id"]) for c in intents["levels"]]},
                               value="L2", elem_id="et-level")
            summary = gr.Markdown(elem_id="et-plan-summary")
            with T.make(gr.Accordion, {"label": "ui.plan.expert"}, open=False, elem_id="et-expert"):
                T.make(gr.Markdown, {"value": "ui.plan.expert_intro"})
                form = [_field_input(f, getattr(plan, f.name), T) for f in FORM_FIELDS]
            plan_error = gr.Markdown(elem_classes=["et-error"])
            with gr.Row():
                yaml_view = T.make(gr.Code, {"label": "ui.plan.yaml"}, language="yaml", interactive=False)
                with gr.Column():
                    T.make(gr.Markdown, {"value": "ui.plan.command"})
                    download = T.make(gr.DownloadButton, {"label": "ui.plan.download"}, value=None)
            with gr.Row():
                measure_base = T.make(gr.Button, {"value": "evaluation.baseline.button"}, size="sm", scale=1,
                                      elem_id="et-baseline")
                base_text = gr.Markdown(elem_id="et-baseline-result")
            start = T.make(gr.Button, {"value": "ui.plan.start"}, variant="primary", elem_id="et-start")
            sweep_panel.build(ctx, [model, dataset, *form], plan_from_form)

        # ---- 3 monitoring ----
        with T.make(gr.Tab, {"label": "ui.step.monitor"}, id="monitor") as monitor_tab:
            with gr.Row():
                job = T.make(gr.Dropdown, {"label": "ui.monitor.job"}, choices=job_choices(settings),
                             value=next(iter(job_choices(settings)), (None, None))[1], scale=4, elem_id="et-job")
                stop = T.make(gr.Button, {"value": "ui.monitor.stop"}, variant="stop", scale=1, visible=False)
            progress = gr.HTML(progress_html(settings, None), elem_id="et-progress")
            status = gr.Markdown(elem_id="et-status")
            job_actions, _, _ = action_bar(ctx, job, skip=("stop",))  # Stop has its own button, while it applies
            plot = gr.Plot(elem_id="et-loss-plot", show_label=False)
            reward_plot = gr.Plot(elem_id="et-reward-plot", visible=False, show_label=False)  # preference training
            with gr.Row():
                log_level = T.make(gr.Radio, {"label": "ui.monitor.log_level",
                                              "choices": [(f"ui.monitor.level.{lv}", lv) for lv in LOG_LEVELS]},
                                   value="all", scale=2)
                log_search = T.make(gr.Textbox, {"label": "ui.monitor.log_search"}, scale=2)
                log_download = T.make(gr.DownloadButton, {"label": "ui.monitor.log_download"}, value=None, scale=1)
            logs = T.make(gr.HTML, {"label": "ui.monitor.logs"}, show_label=True, container=True, padding=True,
                          max_height=260, autoscroll=True, elem_id="et-logs")
            to_eval = T.make(gr.Button, {"value": "ui.next"}, variant="primary")

        # ---- 4 evaluate and export ----
        with T.make(gr.Tab, {"label": "ui.step.evaluate"}, id="evaluate") as eval_tab:
            evaluate_step.build(ctx)
    timer = gr.Timer(TICK_S["active"])  # the monitor's pace: slower while its job is not running (refresh)
    seen = gr.State(None)
    restored = gr.State(False)  # the page has been put back where the user left it
    recommended = gr.State({})  # the planner's own values: what the expert form is compared against
    ctx.shared.update(dataset=dataset, model=model, wizard_tabs=tabs, job=job, upload=upload,
                      wizard_model_added=model_adding)

    # ---- handlers ----
    def show_plan(new_lang, model_name, dataset_name, *values):
        try:
            current = plan_from_form(model_name, dataset_name, values)
        except UserError as exc:
            return gr.skip(), error_markdown(exc, new_lang), gr.skip()
        text = current.to_yaml(new_lang)
        folder = settings.folder("plans") / hashlib.sha256(text.encode()).hexdigest()[:12]
        folder.mkdir(exist_ok=True)  # one folder per distinct plan: concurrent pages never clash
        path = folder / "plan.yaml"
        path.write_text(text, encoding="utf-8")
        return text, "", gr.update(value=str(path))

    def on_intent(new_lang, model_name, dataset_name, task_id, level_id, tab_id):
        """The planner's plan for this intent: every field set, each with its reason."""
        try:
            proposal = make_plan(settings, model=model_name, dataset=dataset_name, task=task_id, level=level_id)
        except UserError as exc:
            return [gr.skip()] * len(form) + [error_markdown(exc, new_lang), gr.skip()]
        state.remember(settings, tab_id, model=model_name, dataset=dataset_name, task=task_id, level=level_id)
        values = {f.name: getattr(proposal.plan, f.name) for f in FORM_FIELDS}
        return [gr.update(value=v) for v in values.values()] + [plan_summary(proposal, new_lang), values]

    def on_expert_change(new_lang, model_name, dataset_name, task_id, level_id, proposed, *values):
        """A value the user changed is kept, marked ✎ with the recommendation beside it, and checked."""
        if not proposed:
            return gr.skip()
        changed = {f.name: v for f, v in zip(FORM_FIELDS, values) if f.name in proposed and v != proposed[f.name]}
        try:
            proposal = make_plan(settings, model=model_name, dataset=dataset_name, task=task_id, level=level_id,
                                 overrides=changed or None)
        except UserError as exc:
            return error_markdown(exc, new_lang)
        return plan_summary(proposal, new_lang)

    def show_preview(dataset_name, new_lang):
        rows = datasets.preview_rows(settings, dataset_name)
        return gr.update(value=[[r["user"], r["assistant"]] for r in rows],
                         headers=[t("ui.data.col_user", new_lang), t("ui.data.col_assistant", new_lang)])

    def show_tokens(new_lang, model_name, dataset_name, drawn):
        """The lengths told in a sentence, and drawn as a chart where the user has opened it."""
        try:
            result = datasets.token_lengths(settings, dataset_name, model_name)
        except UserError as exc:
            return error_markdown(exc, new_lang), None, None
        numbers = {k: result[k] for k in ("p50", "p90", "max")}
        head = f"**{t('ui.data.tokens_title', new_lang, model=model_name)}**\n\n"
        if result["context"]:
            text = t("ui.data.tokens_summary", new_lang, over=result["over_context"], pct=result["over_context_pct"],
                     context=result["context"], **numbers)
        else:
            text = t("ui.data.tokens_summary_no_context", new_lang, **numbers)
        return head + text, draw_tokens(result, new_lang) if drawn else None, result

    def draw_tokens(result, new_lang):
        return charts.token_histogram(result, new_lang) if result else None

    def on_fit(new_lang, model_name):
        from easytune.models.registry import fit as fit_check

        try:
            result = fit_check(settings, model_name, method="lora", seq_len=512, batch=4)
        except UserError as exc:
            return error_markdown(exc, new_lang)
        judged = result["verdict"]
        icon = {"fits": "✓", "tight": "⚠"}.get(judged["status"], "✗")
        lines = [f"{icon} {t(judged['key'], new_lang, **judged['params'])}"]
        lines += [f"- {t(s['key'], new_lang, **s['params'])}" for s in judged["suggestions"]]
        return "\n".join(lines)

    def cleanup_offer(report: dict, new_lang: str):
        """Checkboxes for what the report found: duplicates to leave out, personal data to mask."""
        quality = report.get("quality") or {}
        dups = (quality.get("duplicates") or {}).get("exact", 0) + (quality.get("duplicates") or {}).get("near", 0)
        pii = (quality.get("pii") or {}).get("rows", 0) if not (quality.get("pii") or {}).get("masked") else 0
        dups = 0 if report.get("rows_dropped_duplicates") else dups
        return (gr.update(visible=bool(dups or pii)),
                gr.update(visible=bool(dups), label=t("ui.data.drop_dups", new_lang, n=dups)),
                gr.update(visible=bool(pii), label=t("ui.data.mask_pii", new_lang, n=pii)),
                gr.update(visible=bool(pii)))

    def on_upload(new_lang, tab_id, file, pairs=None, progress=gr.Progress()):
        """Import; when the columns cannot be told apart, offer the mapping to fill in by hand."""
        if file is None:
            return [gr.skip()] * 8
        mapping = mapping_from_table(pairs)
        report_progress = lambda done, total: progress(done / max(1, total), desc=t("ui.data.importing", new_lang))  # noqa: E731
        try:
            result = datasets.add_dataset(settings, file, mapping=mapping or None, progress=report_progress)
        except UserError as exc:
            if exc.key == "data.unknown_columns":
                columns = [c.strip() for c in str(exc.params.get("columns", "")).split(",") if c.strip()]
                columns += ["", ""]
                guess = [["prompt", columns[0]], ["response", columns[1]]]
                return error_markdown(exc, new_lang), gr.skip(), gr.update(visible=True), guess, *[gr.skip()] * 4
            return error_markdown(exc, new_lang), *[gr.skip()] * 7
        return _imported(result, new_lang, tab_id)

    def _imported(result, new_lang, tab_id):
        from easytune.data.summary import report_markdown

        state.remember(settings, tab_id, dataset=result["dataset"]["id"])  # a reload finds the data just brought
        return (report_markdown(result["report"], new_lang, result["duplicate_of"]),
                gr.update(choices=dataset_choices(settings), value=result["dataset"]["id"]),
                gr.update(visible=False), gr.skip(), *cleanup_offer(result["report"], new_lang))

    def on_reimport(new_lang, tab_id, dataset_id, drop, mask, kept, progress=gr.Progress()):
        report_progress = lambda done, total: progress(done / max(1, total), desc=t("ui.data.importing", new_lang))  # noqa: E731
        values = tuple(v.strip() for v in re.split(r"[,，;；\n]", kept or "") if v.strip())
        try:
            result = datasets.reimport_dataset(settings, dataset_id, drop_duplicates=drop, mask_pii=mask,
                                               keep_values=values, progress=report_progress)
        except UserError as exc:
            return error_markdown(exc, new_lang), *[gr.skip()] * 7
        return _imported(result, new_lang, tab_id)

    def on_baseline(new_lang, model_name, dataset_name, *values):
        from easytune.evaluation.baseline import base_line, base_line_text

        yield t("evaluation.baseline.running", new_lang)
        try:
            result = base_line(settings, plan_from_form(model_name, dataset_name, values))
        except UserError as exc:
            yield error_markdown(exc, new_lang)
            return
        shown = [f"- {'✓' if a['right'] else '✗' if a['right'] is False else '·'} {a['question']} → "
                 f"{a['answer'][:160]}" for a in result["answers"][:6]]
        yield "\n\n".join([base_line_text(result, new_lang), "\n".join(shown)])

    def on_start(new_lang, tab_id, model_name, dataset_name, *values):
        try:
            launched = jobs.launch(settings, plan_from_form(model_name, dataset_name, values))
        except UserError as exc:
            raise gr.Error(exc.message(new_lang)) from None
        state.remember(settings, tab_id, job=launched["id"], step="monitor")
        return (gr.update(choices=job_choices(settings), value=launched["id"]), gr.Tabs(selected="monitor"))

    def refresh(new_lang, job_id, last_seen, log_filter, search):
        """The monitor brought up to date: at once for another job, language or state; while a job runs, its
        chart at most every CHART_EVERY_S and its log when it has new lines. Each redraw costs this process
        and the browser CPU time that training, on the same cores, would otherwise have."""
        unchanged = [gr.skip()] * (len(STEPS) + 4)
        if not job_id:
            return (t("ui.monitor.empty", new_lang), gr.skip(), gr.update(visible=False), "",
                    progress_html(settings, None), last_seen, *unchanged[:-1], gr.Timer(TICK_S["idle"]))
        job_row = jobs.get_job(settings, job_id)
        series = jobs.metrics(settings, job_id)
        key = (job_id, new_lang, job_row["state"], sum(len(v) for v in series.values()), log_filter, search)
        last_key, drawn_key, drawn_at, last_log = last_seen or (None, None, 0.0, None)
        now = time.monotonic()
        moved = key[:3] != (last_key or ())[:3]  # another job, language or state: steps and actions change
        draw = key[:4] != drawn_key and (key[:3] != (drawn_key or ())[:3] or now - drawn_at >= CHART_EVERY_S)
        if key == last_key and not draw:  # nothing new, or nothing the chart may show yet
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), last_seen, *unchanged
        active = job_row["state"] in ACTIVE_STATES
        marks = [*stepper(steps_done(settings, job_id), new_lang),
                 action_choices(settings, job_id, new_lang, skip=("stop",)), gr.update(visible=active),
                 gr.Timer(TICK_S["active" if active else "idle"])] if moved else unchanged
        losses = rewards = gr.skip()
        if draw:
            losses = charts.loss_figure(series, new_lang, active=active)
            drawn = charts.reward_figure(series, new_lang)
            rewards = gr.update(value=drawn, visible=True) if drawn else gr.update(visible=False)
        logs = log_html(log_lines(settings, job_id, new_lang, log_filter, search or ""), new_lang, search or "")
        seen = (key, key[:4] if draw else drawn_key, now if draw else drawn_at, hash(logs))
        return (status_markdown(settings, job_id, new_lang), losses, rewards,
                gr.skip() if hash(logs) == last_log else logs, progress_html(settings, job_id), seen, *marks)

    def on_log_download(new_lang, job_id, log_filter, search):
        if not job_id:
            return gr.skip()
        return gr.update(value=str(log_file(settings, job_id, new_lang, log_filter, search or "")))

    def on_stop(new_lang, job_id):
        if job_id:
            jobs.stop_job(settings, job_id)
        return status_markdown(settings, job_id, new_lang)

    def on_step(step, new_lang, job_id, restored, tab_id):
        if restored:  # (a page still loading selects its first tab itself: that is not the user's step)
            state.remember(settings, tab_id, step=step)
        return stepper(steps_done(settings, job_id), new_lang)

    def restore(new_lang, tab_id):
        """Put the wizard back where this tab left it (SQLite, not the browser)."""
        saved = state.recall(settings, tab_id)
        known_jobs = dict((v, k) for k, v in job_choices(settings))
        job_id = saved.get("job") if saved.get("job") in known_jobs else next(iter(known_jobs), None)
        models, sets = model_choices(settings), dataset_choices(settings)  # as they are now, not at start-up
        step = saved.get("step") if saved.get("step") in STEPS else "data"

        def pick(choices, saved_value):
            return gr.update(choices=choices, value=saved_value) if saved_value in {v for _, v in choices} else (
                gr.update(choices=choices))

        return (True, pick(models, saved.get("model")), pick(sets, saved.get("dataset")),
                gr.update(value=saved.get("task")) if saved.get("task") else gr.skip(),
                gr.update(value=saved.get("level")) if saved.get("level") else gr.skip(),
                gr.update(choices=job_choices(settings), value=job_id),
                gr.Tabs(selected=step), *stepper(steps_done(settings, job_id), new_lang))

    language, tab_in = ctx.language, ctx.tab
    plan_inputs = [language, model, dataset, *form]
    measure_base.click(on_baseline, plan_inputs, base_text, concurrency_id="base-line", concurrency_limit=1,
                       api_name="wizard_baseline")
    plan_outputs = [yaml_view, plan_error, download]
    intent_inputs = [language, model, dataset, task, level, tab_in]
    intent_outputs = [*form, summary, recommended]
    monitor_inputs = [language, job, seen, log_level, log_search]
    step_outputs = [data_tab, plan_tab, monitor_tab, eval_tab, hint]
    monitor_outputs = [status, plot, reward_plot, logs, progress, seen, *step_outputs, job_actions, stop, timer]

    def replan(event):
        """Plan again; Start waits meanwhile, saying so, so a run never starts from a half-updated form."""
        return event.then(lambda lg: gr.update(interactive=False, value=t("ui.plan.planning", lg)), language,
                          start).then(on_intent, intent_inputs, intent_outputs).then(
            lambda lg: gr.update(interactive=True, value=t("ui.plan.start", lg)), language, start)

    ctx.on_language.append((show_preview, [dataset, language], preview))
    tokens_inputs = [language, model, dataset, chart_open]
    tokens_outputs = [tokens_text, tokens_plot, lengths]
    ctx.on_language.append((show_tokens, tokens_inputs, tokens_outputs))
    ctx.on_language.append((lambda lg, j: stepper(steps_done(settings, j), lg), [language, job], step_outputs))
    for component in (model, dataset, task, level):
        replan(component.change(lambda: None, None, None))
    for component in form:
        component.input(on_expert_change, [language, model, dataset, task, level, recommended, *form], summary)
        component.change(show_plan, plan_inputs, plan_outputs)
    dataset.change(show_preview, [dataset, language], preview)
    dataset.input(lambda d, tab_id: state.remember(settings, tab_id, dataset=d), [dataset, tab_in], None)
    model.input(lambda m, tab_id: state.remember(settings, tab_id, model=m), [model, tab_in], None)
    for component in (dataset, model):
        component.change(show_tokens, tokens_inputs, tokens_outputs)
    tokens_chart.expand(lambda: True, None, chart_open).then(draw_tokens, [lengths, language], tokens_plot)
    tokens_chart.collapse(lambda: False, None, chart_open)
    model.input(on_fit, [language, model], fit)
    model_adding.then(lambda added, current: gr.update(choices=model_choices(settings), value=added or current),
                      [model_added, model], model)  # a model just added is picked
    check_fit.click(on_fit, [language, model], fit)
    import_outputs = [import_report, dataset, fixer, fix_mapping, cleanup, drop_dups, mask_pii, keep]
    upload.upload(on_upload, [language, tab_in, upload], import_outputs)
    fix_import.click(on_upload, [language, tab_in, upload, fix_mapping], import_outputs)
    reimport.click(on_reimport, [language, tab_in, dataset, drop_dups, mask_pii, keep], import_outputs)
    replan(to_plan.click(lambda: gr.Tabs(selected="plan"), None, tabs))
    start.click(on_start, [language, tab_in, *plan_inputs[1:]], [job, tabs])
    timer.tick(refresh, monitor_inputs, monitor_outputs)
    job.change(refresh, [language, job, gr.State(None), log_level, log_search], monitor_outputs)
    job.input(lambda j, tab_id: state.remember(settings, tab_id, job=j), [job, tab_in], None)
    for control in (log_level, log_search):
        control.change(refresh, [language, job, gr.State(None), log_level, log_search], monitor_outputs)
    log_download.click(on_log_download, [language, job, log_level, log_search], log_download)
    stop.click(on_stop, [language, job], status)
    eval_job = ctx.shared["eval_job"]
    # the same job picked again is no change, yet its versions may have moved on: step ④ shows them anew
    to_eval.click(lambda: gr.Tabs(selected="evaluate"), None, tabs).then(
        lambda j: evaluate_step.pick_job(settings, j), job, eval_job).then(*ctx.shared["eval_versions"])
    eval_tab.select(lambda j: evaluate_step.pick_job(settings, j), job, eval_job).then(*ctx.shared["eval_versions"])
    ctx.shared["wizard_refresh"] = ctx.shared["eval_versions"]  # opened from the menu (the monitor has its own timer)
    for tab, step in ((data_tab, "data"), (plan_tab, "plan"), (monitor_tab, "monitor"), (eval_tab, "evaluate")):
        tab.select(lambda lg, j, done, tab_id, step=step: on_step(step, lg, j, done, tab_id),
                   [language, job, restored, tab_in], step_outputs)
    replan(plan_tab.select(lambda: None, None, None))
    ctx.on_load.append((restore, [language, tab_in], [restored, model, dataset, task, level, job, tabs, *step_outputs]))
    ctx.on_load.append((show_plan, plan_inputs, plan_outputs))
    ctx.on_load.append((show_preview, [dataset, language], preview))
    ctx.on_load.append((show_tokens, tokens_inputs, tokens_outputs))
    ctx.on_load.append((lambda j: evaluate_step.pick_job(settings, j), [job], eval_job))


def _has_name(name: str) -> bool:
    from easytune.i18n import catalog

    return f"planner.field_name.{name}" in catalog("en")


def _field_input(f, value, T: Texts):
    """One expert-form input, generated from the TrainingPlan field: its type, range and help, labelled in the
    user's words with the YAML name beside it, its choices in the user's words too."""
    texts = {"info": lambda lang, name=f.name: field_help(name, lang),
             "label": lambda lang, name=f.name: f"{t('planner.field_name.' + name, lang)} · {name}"}
    meta = f.metadata
    if meta["choices"]:
        texts["choices"] = lambda lang, name=f.name, choices=meta["choices"]: [
            (shown_value(name, c, lang), c) for c in choices]
        return T.make(gr.Dropdown, texts, value=value)
    if isinstance(value, bool):
        return T.make(gr.Checkbox, texts, value=value)
    if isinstance(value, (int, float)):
        return T.make(gr.Number, texts, value=value, minimum=meta["lo"], maximum=meta["hi"],
                      precision=0 if isinstance(value, int) else None)
    return T.make(gr.Textbox, texts, value=value)
