"""Models page: what can be trained on, the catalog, adding a model, its structure, and whether it fits."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from easytune.i18n import UserError, t
from easytune.models import registry, sources
from easytune.ui.choices import model_choices
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown, fmt_bytes

HEALTH_MARK = {"ok": "✓", "broken": "✗"}


def source_kind(kind: str, lang: str) -> str:
    """Where a model came from, in the user's words (a kind without words of its own shows as it is)."""
    from easytune.i18n import catalog

    key = f"ui.models.kind.{kind}"
    return t(key, lang) if key in catalog(lang) else kind


def tables(settings, lang: str):
    listing = registry.list_models(settings, lang)
    mine = [[f"{HEALTH_MARK.get(m.get('health'), '·')} {m['name']}", source_kind(m["source"], lang), m["path"]]
            for m in listing["models"]]
    mine += [[f"＋ {m['name']}", source_kind(m["store"], lang), m["ref"]]
             for m in listing["gguf_stores"] if not m["added"]]
    catalog = [["✓" if c["on_disk"] else "·", c["id"], c["params_b"], c.get("license", ""), c["good_for"]]
               for c in listing["catalog"]]
    return mine, catalog, [m["name"] for m in listing["models"]]


def info_markdown(info: dict, lang: str) -> str:
    lines = [t("ui.models.info", lang, arch=info["architecture"], params=f"{info['num_parameters']:,}",
               layers=info["num_layers"], hidden=info["hidden_size"], context=info["context_length"] or "?",
               dtype=info["dtype"] or "?", size=fmt_bytes(info["size_on_disk"]),
               template="✓" if info["has_chat_template"] else "✗")]
    for group, names in (info["linear_modules"] or {}).items():
        if names:
            lines.append(f"- **{group}**: `{', '.join(names)}`")
    return "\n".join(lines)


def verdict_markdown(result: dict, lang: str) -> str:
    judged = result["verdict"]
    icon = {"fits": "✓", "tight": "⚠"}.get(judged["status"], "✗")
    lines = [f"{icon} {t(judged['key'], lang, **judged['params'])}"]
    lines += [f"- {t(s['key'], lang, **s['params'])}" for s in judged["suggestions"]]
    return "\n".join(lines)


def download_text(status, lang: str) -> str:
    """One line for a running hub download (bytes done of the total, speed, the files being fetched) or a
    GGUF import (its stage)."""
    if status.stage:
        return t("models.import_progress", lang, hub_id=status.hub_id, pct=f"{100 * status.fraction:.0f}",
                 stage=t(f"models.import_stage.{status.stage}", lang))
    text = t("models.download_progress", lang, hub_id=status.hub_id, done=fmt_bytes(status.done),
             total=fmt_bytes(status.total), speed=fmt_bytes(status.speed), files=", ".join(status.current) or "…")
    if status.resumed:
        text += " · " + t("models.download_resumed", lang, kept=fmt_bytes(status.resumed))
    return text


def progress_bar(fraction: float) -> str:
    pct = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="et-progress" role="progressbar" aria-valuenow="{pct:.0f}" aria-valuemin="0" '
            f'aria-valuemax="100"><div style="width:{pct:.1f}%"></div></div>')


def add_model_steps(settings, lang: str, ref: str, name: str, trusted: bool, every: float = 0.3):
    """Register a folder or hub id, yielding (progress_bar_html, line, added_name) while it works.

    The registration runs in a thread of its own; this generator looks at its newest DownloadProgress
    every `every` seconds, so the page shows a live bar while the app stays free for other requests.
    The last item carries the outcome: the message (the error in the user's language when refused)
    and the name added (None when refused).
    """
    ref = (ref or "").strip()
    latest: list = [None]  # the newest DownloadProgress
    outcome: dict = {}

    def keep(status):
        latest[0] = status

    def work():
        try:
            outcome["added"] = registry.add_model(settings, ref, name=(name or "").strip() or None,
                                                  trust_remote_code=trusted, progress=keep)
        except Exception as exc:  # noqa: BLE001 - handed to the page below
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    if sources.is_hub_id(ref) and not Path(ref).expanduser().exists():
        yield progress_bar(0), t("models.download_preparing", lang, hub_id=ref), None
    shown = None
    while worker.is_alive():
        worker.join(every)
        if latest[0] is not shown and worker.is_alive():
            shown = latest[0]
            yield progress_bar(shown.fraction), download_text(shown, lang), None
    if isinstance(outcome.get("error"), UserError):
        yield "", error_markdown(outcome["error"], lang), None
        return
    if "error" in outcome:
        raise outcome["error"]
    added = outcome["added"]
    facts, warnings = registry.added_lines(added, lang)
    text = "\n\n".join([*facts, *(f"⚠️ {w}" for w in warnings)])
    yield "", text, added["model"]["name"]


def add_panel(ctx: Ctx, elem_prefix: str, api_name: str):
    """Adding a model, as the Models page and step ① offer it: source, name, custom-code choice, Add,
    a live bar while a hub download runs, and Cancel (which keeps what was fetched; adding again continues).

    Returns (event, added): `event` ends once the model is added or refused, `added` holds its name
    (None when refused); callers chain their refreshes onto the event.
    """
    from easytune.models.hub_download import cancel_download

    settings, T = ctx.settings, ctx.T
    source = T.make(gr.Textbox, {"label": "ui.models.source", "placeholder": "ui.models.source_hint"},
                    elem_id=f"{elem_prefix}-source")
    name = T.make(gr.Textbox, {"label": "ui.models.name"}, elem_id=f"{elem_prefix}-name")
    trust = T.make(gr.Checkbox, {"label": "ui.models.trust", "info": "ui.models.trust_info"}, value=False)
    with gr.Row():
        add = T.make(gr.Button, {"value": "ui.models.add"}, variant="primary", elem_id=f"{elem_prefix}-add")
        cancel = T.make(gr.Button, {"value": "models.cancel_button"}, variant="stop", visible=False,
                        elem_id=f"{elem_prefix}-cancel")
    bar = gr.HTML("", elem_id=f"{elem_prefix}-progress")
    result = gr.Markdown(elem_id=f"{elem_prefix}-result")
    running = gr.State("")  # the hub id being downloaded, for Cancel (the box may be edited meanwhile)
    added = gr.State(None)

    def on_add(lang, ref, new_name, trusted):
        yield from add_model_steps(settings, lang, ref, new_name, trusted)

    def on_cancel(lang, hub_id, typed):
        hub_id = hub_id or (typed or "").strip()
        if cancel_download(hub_id):
            gr.Info(t("models.cancel_sent", lang, hub_id=hub_id))
        else:
            gr.Warning(t("models.nothing_to_cancel", lang, hub_id=hub_id or "—"))

    event = add.click(lambda ref: ((ref or "").strip(), gr.update(visible=True), gr.update(interactive=False)),
                      source, [running, cancel, add]).then(
        on_add, [ctx.language, source, name, trust], [bar, result, added], show_progress="hidden",
        concurrency_limit=4, concurrency_id="model-downloads", api_name=api_name).then(
        lambda: (gr.update(visible=False), gr.update(interactive=True)), None, [cancel, add])
    cancel.click(on_cancel, [ctx.language, running, source], None, api_name=f"{api_name}_cancel")
    return event, added


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.models.title"})
    mine = T.make(Table, {"label": "ui.models.mine", "headers": ["ui.col.name", "ui.col.source", "ui.col.path"]},
                  interactive=False, wrap=True, elem_id="et-models-mine")
    with T.make(gr.Accordion, {"label": "ui.models.catalog"}, open=False):
        catalog = T.make(Table, {"headers": ["ui.col.on_disk", "ui.col.id", "ui.col.params_b",
                                                    "ui.col.license", "ui.col.good_for"]},
                         interactive=False, wrap=True)
    with gr.Row():
        with gr.Column():
            T.make(gr.Markdown, {"value": "ui.models.add_title"})
            adding, added = add_panel(ctx, "et-model", "add_model")
        with gr.Column():
            T.make(gr.Markdown, {"value": "ui.models.check_title"})
            chosen = T.make(gr.Dropdown, {"label": "ui.models.pick"}, choices=[], elem_id="et-model-pick")
            with gr.Row():
                method = T.make(gr.Radio, {"label": "ui.models.method", "choices": [
                    (f"ui.models.method.{m}", m) for m in ("lora", "qlora", "full")]},
                                value="lora")
                seq_len = T.make(gr.Number, {"label": "ui.models.seq_len"}, value=1024, precision=0, minimum=16)
                batch = T.make(gr.Number, {"label": "ui.models.batch"}, value=4, precision=0, minimum=1)
            checkpointing = T.make(gr.Checkbox, {"label": "ui.models.checkpointing"}, value=False)
            with gr.Row():
                inspect = T.make(gr.Button, {"value": "ui.models.inspect"}, size="sm")
                check = T.make(gr.Button, {"value": "ui.models.check"}, size="sm", elem_id="et-model-check")
                sure = T.make(gr.Checkbox, {"label": "ui.ds.sure"}, value=False)
                remove = T.make(gr.Button, {"value": "ui.models.remove"}, variant="stop", size="sm")
    result = gr.Markdown(elem_id="et-model-result")
    with T.make(gr.Accordion, {"label": "ui.models.adapter_title"}, open=False):
        T.make(gr.Markdown, {"value": "ui.models.adapter_intro"})
        with gr.Row():
            adapter = T.make(gr.Textbox, {"label": "ui.models.adapter_folder"}, scale=3)
            check_adapter = T.make(gr.Button, {"value": "ui.eval.safety"}, scale=1)
        adapter_result = gr.Markdown()

    def refresh(lang, current=None):
        rows, catalog_rows, names = tables(settings, lang)
        return rows, catalog_rows, gr.update(choices=names, value=current if current in names else names[0])

    def on_inspect(lang, ref):
        try:
            return info_markdown(registry.model_info(settings, ref), lang)
        except UserError as exc:
            return error_markdown(exc, lang)

    def on_check(lang, ref, method_, seq, batch_, ckpt):
        try:
            return verdict_markdown(registry.fit(settings, ref, method=method_, seq_len=int(seq), batch=int(batch_),
                                                 grad_checkpointing=ckpt), lang)
        except UserError as exc:
            return error_markdown(exc, lang)

    def on_remove(lang, ref, confirmed):
        if not confirmed:
            return (t("ui.ds.confirm_first", lang), *refresh(lang, ref))
        try:
            row = registry.remove_model(settings, ref)
        except UserError as exc:
            return (error_markdown(exc, lang), *refresh(lang, ref))
        return (t("cli.models.removed", lang, name=row["name"]), *refresh(lang))

    def on_check_adapter(lang, folder, base, progress=gr.Progress()):
        from easytune.evaluation.safety import safety_check, safety_text

        desc = t("ui.eval.checking", lang)
        try:
            checked = safety_check(settings, adapter=folder.strip(), base=base or None, lang=lang,
                                   progress=lambda done, total: progress(done / total, desc=desc))
        except UserError as exc:
            return error_markdown(exc, lang)
        return ("✓ " if checked["passed"] else "⛔ ") + safety_text(checked, lang).replace("\n", "  \n")

    listing = [mine, catalog, chosen]
    check_adapter.click(on_check_adapter, [ctx.language, adapter, chosen], adapter_result)
    adding.then(lambda lang, new, current: refresh(lang, new or current), [ctx.language, added, chosen], listing)
    inspect.click(on_inspect, [ctx.language, chosen], result)
    check.click(on_check, [ctx.language, chosen, method, seq_len, batch, checkpointing], result)
    remove.click(on_remove, [ctx.language, chosen, sure], [result, *listing]).then(lambda: False, None, sure)
    ctx.on_load.append((refresh, [ctx.language], listing))
    ctx.shared["models_refresh"] = (refresh, [ctx.language], listing)
    ctx.on_language.append((refresh, [ctx.language, chosen], listing))

    def wire():
        """A model added here appears in step ①'s picker; one added in step ① appears in the lists here."""
        adding.then(lambda: gr.update(choices=model_choices(settings)), None, ctx.shared["model"])
        if "wizard_model_added" in ctx.shared:
            ctx.shared["wizard_model_added"].then(refresh, [ctx.language, chosen], listing)

    ctx.later.append(wire)
