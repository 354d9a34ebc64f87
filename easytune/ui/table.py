"""The app's tables: Gradio's Dataframe, shown from plain rows without loading pandas.

Gradio's Dataframe imports pandas (about 75 MiB with pyarrow under it) to show any value, even a list of rows,
and every table here is built from lists. So rows and {"headers", "data"} dicts are turned into what the
browser receives directly; anything else (a DataFrame a library hands back) goes through Gradio's own path.
Gradio writes a stub (table.pyi) beside a component class it has not seen; it is kept in the repository, so an
installed copy never writes into its own folder.
"""

from __future__ import annotations

import gradio as gr
from gradio.components.dataframe import DataframeData


class Table(gr.Dataframe):
    is_template = True  # the browser shows it with Gradio's own Dataframe

    def postprocess(self, value) -> DataframeData:
        if value is None or isinstance(value, list):
            headers, rows, metadata = self.headers, value or [], None
        elif isinstance(value, dict):
            headers, rows, metadata = value.get("headers") or self.headers, value.get("data", []), value.get("metadata")
        else:
            return super().postprocess(value)
        rows = [list(row) if isinstance(row, (list, tuple)) else [row] for row in rows]
        if not rows or not rows[0]:
            return DataframeData(headers=list(headers), data=[], metadata=None)
        width = len(rows[0])  # as Gradio does: as many headers as the first row has cells, numbered if missing
        headers = [*headers[:width], *(str(i) for i in range(len(headers) + 1, width + 1))]
        return DataframeData(headers=headers, data=rows, metadata=metadata)
