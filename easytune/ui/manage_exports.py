"""Exports page: every exported model, verified or why not, where it is, downloading or removing one, and
adding a GGUF export to LM Studio or Ollama where they are on this machine."""

from __future__ import annotations

import gradio as gr

from easytune.i18n import UserError, t
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown, fmt_bytes, fmt_time


def export_rows(settings, lang: str) -> list[list]:
    from easytune.export.service import list_exports

    return [[e["id"], e["job_id"], t(f"ui.eval.format.{e['format']}", lang),
             t("ui.eval.export_state." + e["state"], lang), fmt_bytes(e["size_bytes"]), "✓" if e["verified"] else "—",
             e["path"], fmt_time(e["created_at"], lang)] for e in list_exports(settings)]


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.exports.title"})
    table = T.make(Table, {"headers": ["ui.col.id", "ui.col.job", "ui.col.format", "ui.col.state", "ui.col.size",
                                              "ui.col.verified", "ui.col.path", "ui.col.created"]},
                   interactive=False, wrap=True, elem_id="et-exports-table")
    empty = gr.Markdown()
    selected = gr.State(None)
    with gr.Row():
        chosen = gr.Markdown(elem_id="et-export-chosen")
        sure = T.make(gr.Checkbox, {"label": "ui.ds.sure"}, value=False)
        remove = T.make(gr.Button, {"value": "ui.exports.remove"}, variant="stop", size="sm")
        download = T.make(gr.Button, {"value": "ui.exports.download"}, size="sm", elem_id="et-export-download")
    prepared = T.make(gr.File, {"label": "ui.exports.file"}, visible=False, interactive=False,
                      elem_id="et-export-file")  # its link downloads it
    with gr.Row():
        T.make(gr.Markdown, {"value": "ui.exports.apps_info"})
        to_lmstudio = T.make(gr.Button, {"value": "ui.exports.add_lmstudio"}, size="sm", visible=False,
                             elem_id="et-export-lmstudio")
        to_ollama = T.make(gr.Button, {"value": "ui.exports.add_ollama"}, size="sm", visible=False,
                           elem_id="et-export-ollama")
    message = gr.Markdown(elem_classes=["et-error"])

    def refresh(lang):
        from easytune.export.apps import available_apps

        rows = export_rows(settings, lang)
        apps = available_apps()  # a button only for an app this machine has
        return (rows or None, "" if rows else t("ui.exports.empty", lang),
                gr.update(visible=bool(apps["lmstudio"])), gr.update(visible=bool(apps["ollama"])))

    def pick(evt: gr.SelectData, rows):
        return rows.iloc[evt.index[0], 0] if evt.index is not None else None

    def on_remove(lang, export_id, confirmed):
        from easytune.export.service import remove_export

        if not export_id:
            return t("ui.exports.pick", lang), False
        if not confirmed:
            return t("ui.ds.confirm_first", lang), False
        try:
            row = remove_export(settings, export_id)
        except UserError as exc:
            return error_markdown(exc, lang), False
        return t("ui.exports.removed", lang, path=row["path"]), False

    def on_add(lang, export_id, app):
        from easytune.export.apps import add_to_app

        if not export_id:
            return t("ui.exports.pick", lang)
        try:
            done = add_to_app(settings, export_id, app)
        except UserError as exc:
            return error_markdown(exc, lang)
        if app == "ollama":
            return t("export.cli.added_ollama", lang, name=done["name"], run=f"`{done['run']}`")
        if done["already"]:
            return t("export.cli.added_lmstudio_already", lang, path=done["path"])
        return t("export.cli.added_lmstudio", lang, path=done["path"],
                 how=t("export.cli.linked" if done["linked"] else "export.cli.copied", lang))

    def on_download(lang, export_id):
        """The chosen export as one file (a zip for a folder), offered as a link: made when asked, since
        zipping a merged model takes a while."""
        from easytune.export.download import download_file

        if not export_id:
            return gr.update(visible=False), t("ui.exports.pick", lang)
        try:
            return gr.update(value=str(download_file(settings, export_id)), visible=True), ""
        except UserError as exc:
            return gr.update(visible=False), error_markdown(exc, lang)

    table.select(pick, table, selected)
    download.click(on_download, [ctx.language, selected], [prepared, message])
    to_lmstudio.click(lambda lang, e: on_add(lang, e, "lmstudio"), [ctx.language, selected], message)
    to_ollama.click(lambda lang, e: on_add(lang, e, "ollama"), [ctx.language, selected], message)
    # one handler, so a file made for the previous choice is hidden before the new choice shows
    selected.change(lambda e: (f"`{e}`" if e else "", gr.update(value=None, visible=False)), selected,
                    [chosen, prepared])
    listed = [table, empty, to_lmstudio, to_ollama]
    remove.click(on_remove, [ctx.language, selected, sure], [message, sure]).then(refresh, ctx.language, listed)
    ctx.on_load.append((refresh, [ctx.language], listed))
    ctx.on_language.append((refresh, [ctx.language], listed))
    ctx.shared["exports_refresh"] = (refresh, [ctx.language], listed)
