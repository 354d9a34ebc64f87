"""Datasets page: find, page through, read as conversations, fix the mapping, rename, download, delete."""

from __future__ import annotations

import math

import gradio as gr

from easytune import datasets
from easytune.data.shapes import SHAPES
from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.ui.table import Table
from easytune.ui.texts import Ctx, error_markdown, fmt_bytes, fmt_time, mapping_from_table, showing

PAGE_SIZE = 20
SORTS = ("created_at desc", "created_at", "name", "rows desc")


def table_page(settings: Settings, search: str, shape: str, sort: str, page: int, lang: str):
    rows = datasets.list_datasets(settings, search or None, None if shape == "all" else shape, sort)
    pages = max(1, math.ceil(len(rows) / PAGE_SIZE))
    page = min(max(1, int(page or 1)), pages)
    shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
    table = [[r["id"], r["name"], r["shape"], r["kind"] or "", r["rows"], r["rows_rejected"] or 0,
              fmt_bytes(r["size_bytes"]), fmt_time(r["created_at"], lang)] for r in shown]
    info = t("ui.ds.page", lang, page=page, pages=pages, total=len(rows)) if rows else t("ui.ds.empty", lang)
    return table, page, info


def conversation(row: dict) -> list[dict]:
    """A canonical row as chat messages: SFT turns, a preference pair (both answers), or raw text."""
    out = []
    if row.get("system"):
        out.append({"role": "assistant", "content": f"⚙️ {row['system']}"})
    for message in row.get("messages") or []:
        role = "user" if message["role"] == "user" else "assistant"
        out.append({"role": role, "content": str(message.get("content", ""))})
    if "chosen" in row:
        out.append({"role": "assistant", "content": f"👍 {_text(row['chosen'])}"})
        out.append({"role": "assistant", "content": f"👎 {_text(row.get('rejected', ''))}"})
    if "text" in row and not out:
        out.append({"role": "assistant", "content": row["text"]})
    return out


def _text(value) -> str:
    if isinstance(value, list):  # a preference answer given as messages
        return "\n".join(str(m.get("content", "")) for m in value if isinstance(m, dict))
    return str(value)


def build(ctx: Ctx) -> None:
    settings, T = ctx.settings, ctx.T
    T.make(gr.Markdown, {"value": "ui.ds.title"})
    with gr.Row():
        search = T.make(gr.Textbox, {"label": "ui.ds.search"}, scale=3, elem_id="et-ds-search")
        shape = T.make(gr.Dropdown, {"label": "ui.ds.shape", "choices": lambda lang: [
            (t("ui.ds.shape_all", lang), "all"), *[(s, s) for s in SHAPES]]}, value="all", scale=1)
        sort = T.make(gr.Dropdown, {"label": "ui.ds.sort", "choices": [(f"ui.ds.sort.{i}", s) for i, s in
                                                                     enumerate(SORTS)]}, value=SORTS[0], scale=1)
    table = T.make(Table, {"headers": ["ui.col.id", "ui.col.name", "ui.col.shape", "ui.col.kind", "ui.col.rows",
                                              "ui.col.rejected", "ui.col.size", "ui.col.created"]},
                   interactive=False, wrap=True, elem_id="et-ds-table")
    with gr.Row():
        prev_page = T.make(gr.Button, {"value": "ui.ds.prev"}, size="sm", scale=0, min_width=90)
        page = T.make(gr.Number, {"label": "ui.ds.page_number"}, value=1, precision=0, minimum=1, show_label=False,
                      container=False, scale=0, min_width=70)
        next_page = T.make(gr.Button, {"value": "ui.ds.next"}, size="sm", scale=0, min_width=90)
        page_info = gr.Markdown()
    selected = gr.State(None)
    with gr.Group(visible=False) as detail:
        heading = gr.Markdown(elem_id="et-ds-detail")
        with gr.Row():
            with gr.Column(scale=3):
                with gr.Row():
                    split = T.make(gr.Radio, {"label": "ui.ds.split", "choices": [("ui.ds.split.train", "train"),
                                                                                ("ui.ds.split.val", "val")]},
                                   value="train", scale=2)
                    row_no = T.make(gr.Number, {"label": "ui.ds.row"}, value=1, precision=0, minimum=1, scale=1)
                talk = T.make(gr.Chatbot, {"label": "ui.ds.conversation"}, height=320, elem_id="et-ds-chat")
            with gr.Column(scale=2):
                new_name = T.make(gr.Textbox, {"label": "ui.ds.rename"})
                rename = T.make(gr.Button, {"value": "ui.ds.rename_do"}, size="sm")
                use = T.make(gr.Button, {"value": "ui.ds.use"}, variant="primary", size="sm")
                download = T.make(gr.DownloadButton, {"label": "ui.ds.download"}, value=None, size="sm")
                sure = T.make(gr.Checkbox, {"label": "ui.ds.sure"}, value=False)
                delete = T.make(gr.Button, {"value": "ui.ds.delete"}, variant="stop", size="sm")
        with T.make(gr.Accordion, {"label": "ui.ds.report"}, open=False):
            report = gr.Markdown()
        with T.make(gr.Accordion, {"label": "ui.ds.mapping"}, open=False):
            T.make(gr.Markdown, {"value": "ui.ds.mapping_help"})
            mapping = T.make(Table, {"headers": ["ui.ds.role", "ui.ds.field"]}, interactive=True,
                             column_count=(2, "fixed"), datatype=["str", "str"])
            remap = T.make(gr.Button, {"value": "ui.ds.remap"}, size="sm")
    message = gr.Markdown(elem_classes=["et-error"])

    filters = [search, shape, sort, page, ctx.language]

    def refresh(search_, shape_, sort_, page_, lang):
        rows, page_, info = table_page(settings, search_, shape_, sort_, page_, lang)
        return rows or None, page_, info

    def show(lang, dataset_id, split_, row_number):
        if not dataset_id:
            return gr.update(visible=False), *[gr.skip()] * 5
        try:
            shown = datasets.show_dataset(settings, dataset_id, max(0, int(row_number or 1) - 1), 1, split_)
        except UserError as exc:
            return gr.update(visible=True), error_markdown(exc, lang), None, "", [], gr.skip()
        from easytune.data.summary import report_markdown

        d = shown["dataset"]
        head = t("ui.ds.heading", lang, name=d["name"], rows=d["rows"], rejected=d["rows_rejected"] or 0,
                 shape=d["shape"], size=fmt_bytes(d["size_bytes"]), created=fmt_time(d["created_at"], lang))
        rows = shown["preview"].get("rows") or []
        pairs = [[role, field] for role, field in (shown["report"].get("mapping") or {}).items()]
        return (gr.update(visible=True), head, conversation(rows[0]) if rows else [],
                report_markdown(shown["report"], lang), pairs or [["", ""]], gr.update(value=d["name"]))

    def pick(evt: gr.SelectData, rows):
        return rows.iloc[evt.index[0], 0] if evt.index is not None else None

    def on_rename(lang, dataset_id, name):
        try:
            datasets.rename_dataset(settings, dataset_id, name)
            return ""
        except UserError as exc:
            return error_markdown(exc, lang)

    def on_delete(lang, dataset_id, confirmed):
        if not confirmed:
            return t("ui.ds.confirm_first", lang), dataset_id, False
        try:
            removed = datasets.remove_dataset(settings, dataset_id)
        except UserError as exc:
            return error_markdown(exc, lang), dataset_id, False
        return t("ui.ds.deleted", lang, name=removed["name"]), None, False

    def on_download(dataset_id):
        if not dataset_id:
            return gr.skip()
        return str(datasets.export_dataset(settings, dataset_id))

    def on_remap(lang, dataset_id, pairs):
        try:
            result = datasets.reimport_dataset(settings, dataset_id, mapping=mapping_from_table(pairs))
        except UserError as exc:
            return error_markdown(exc, lang), dataset_id
        return t("ui.ds.remapped", lang, rows=result["dataset"]["rows"]), result["dataset"]["id"]

    detail_outputs = [detail, heading, talk, report, mapping, new_name]
    for control in (search, shape, sort, page):
        control.change(refresh, filters, [table, page, page_info])
    prev_page.click(lambda p: max(1, int(p or 1) - 1), page, page)
    next_page.click(lambda p: int(p or 1) + 1, page, page)
    table.select(pick, table, selected).then(lambda: 1, None, row_no)
    selected.change(show, [ctx.language, selected, split, row_no], detail_outputs)
    for control in (split, row_no):
        control.change(show, [ctx.language, selected, split, row_no], detail_outputs)
    listing = [table, page, page_info]
    rename.click(on_rename, [ctx.language, selected, new_name], message).then(refresh, filters, listing)
    delete.click(on_delete, [ctx.language, selected, sure], [message, selected, sure]).then(
        refresh, filters, [table, page, page_info])
    download.click(on_download, selected, download)
    remap.click(on_remap, [ctx.language, selected, mapping], [message, selected]).then(
        refresh, filters, [table, page, page_info])
    ctx.on_load.append((refresh, filters, [table, page, page_info]))
    ctx.on_language.append((refresh, filters, [table, page, page_info]))

    def wire():
        from easytune.ui.wizard import dataset_choices

        use.click(lambda d: (gr.update(choices=dataset_choices(settings), value=d), gr.Tabs(selected="wizard")),
                  selected, [ctx.shared["dataset"], ctx.pages]).then(*showing(ctx, "wizard"))
        ctx.shared["upload"].upload(refresh, filters, [table, page, page_info])

    ctx.later.append(wire)
    ctx.shared["datasets_refresh"] = (refresh, filters, [table, page, page_info])
