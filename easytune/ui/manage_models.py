"""Models page: what can be trained on, the catalog, adding a model, its structure, and whether it fits."""

from __future__ import annotations

import gradio as gr

from easytune.i18n import UserError, t
from easytune.models import registry
from easytune.ui.texts import Ctx, error_markdown, fmt_bytes


def tables(settings, lang: str):
    listing = registry.list_models(settings, lang)
    mine = [[m["name"], m["source"], m["path"]] for m in listing["models"]]
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


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.models.title"})
    mine = T.make(gr.Dataframe, {"label": "ui.models.mine", "headers": ["ui.col.name", "ui.col.source", "ui.col.path"]},
                  interactive=False, wrap=True, elem_id="et-models-mine")
    with T.make(gr.Accordion, {"label": "ui.models.catalog"}, open=False):
        catalog = T.make(gr.Dataframe, {"headers": ["ui.col.on_disk", "ui.col.id", "ui.col.params_b",
                                                    "ui.col.license", "ui.col.good_for"]},
                         interactive=False, wrap=True)
    with gr.Row():
        with gr.Column():
            T.make(gr.Markdown, {"value": "ui.models.add_title"})
            source = T.make(gr.Textbox, {"label": "ui.models.source", "placeholder": "ui.models.source_hint"},
                            elem_id="et-model-source")
            name = T.make(gr.Textbox, {"label": "ui.models.name"})
            trust = T.make(gr.Checkbox, {"label": "ui.models.trust", "info": "ui.models.trust_info"}, value=False)
            add = T.make(gr.Button, {"value": "ui.models.add"}, variant="primary", elem_id="et-model-add")
        with gr.Column():
            T.make(gr.Markdown, {"value": "ui.models.check_title"})
            chosen = T.make(gr.Dropdown, {"label": "ui.models.pick"}, choices=[], elem_id="et-model-pick")
            with gr.Row():
                method = T.make(gr.Radio, {"label": "ui.models.method"}, choices=["lora", "qlora", "full"],
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

    def on_add(lang, ref, new_name, trusted):
        try:
            added = registry.add_model(settings, ref.strip(), name=new_name.strip() or None, trust_remote_code=trusted)
        except UserError as exc:
            return (error_markdown(exc, lang), *refresh(lang))
        warnings = [f"⚠️ {t(w['key'], lang, **w['params'])}" for w in added["source"]["warnings"]]
        text = "\n\n".join([t("cli.models.added", lang, name=added["model"]["name"], path=added["model"]["path"]),
                            *warnings])
        return (text, *refresh(lang, added["model"]["name"]))

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
    add.click(on_add, [ctx.language, source, name, trust], [result, *listing])
    inspect.click(on_inspect, [ctx.language, chosen], result)
    check.click(on_check, [ctx.language, chosen, method, seq_len, batch, checkpointing], result)
    remove.click(on_remove, [ctx.language, chosen, sure], [result, *listing]).then(lambda: False, None, sure)
    ctx.on_load.append((refresh, [ctx.language], listing))
    ctx.on_language.append((refresh, [ctx.language, chosen], listing))

    def wire():
        from easytune.ui.wizard import model_choices

        add.click(lambda: gr.update(choices=model_choices(settings)), None, ctx.shared["model"])

    ctx.later.append(wire)
