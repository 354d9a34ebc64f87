"""The app's tables show the rows it hands them exactly as Gradio's own Dataframe would, without pandas."""

import gradio as gr
import pytest

from easytune.ui.table import Table

VALUES = [
    None,
    [],
    [[]],
    [["你们满多少包邮？", "满99元包邮。"], ["运费怎么算？", "8元。"]],
    [("a", 1, 2.5), ("b", 2, None)],
    ["one", "two"],
    [["more", "cells", "than", "headers"]],
    {"headers": ["x", "y"], "data": [[1, 2], [3, 4]]},
    {"data": [[1, 2, 3]]},
    {"data": []},
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_rows_reach_the_browser_as_with_gradios_dataframe(value):
    ours = Table(headers=["Question", "Answer"], interactive=False).postprocess(value)
    gradios = gr.Dataframe(headers=["Question", "Answer"], interactive=False).postprocess(value)
    assert ours.model_dump() == gradios.model_dump()


def test_it_is_shown_by_gradios_dataframe_in_the_browser():
    table = Table()
    assert table.get_block_name() == "dataframe"
    assert table.get_config()["name"] == "dataframe"
