"""The app imports Gradio without the upkeep Gradio does on import: it writes no file beside a component's source
(easytune/ui/gradio_import.py)."""

import os
import subprocess
import sys

COMPONENT = '''import gradio as gr


class Shown(gr.Textbox):
    pass
'''


def _define_a_component(folder, lean: bool) -> list[str]:
    """Imports Gradio (lean or plainly) in a fresh process, then a module that defines a component class."""
    (folder / "shown.py").write_text(COMPONENT)
    code = ("from easytune.ui.gradio_import import gradio_for_serving\n"
            + ("with gradio_for_serving():\n    import gradio\n" if lean else "import gradio\n")
            + "import shown\nassert shown.Shown(value='x').value == 'x'\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)
    return sorted(p.name for p in folder.iterdir())


def test_the_app_s_gradio_writes_no_stub_beside_a_component(tmp_path):
    (tmp_path / "lean").mkdir()
    assert _define_a_component(tmp_path / "lean", lean=True) == ["shown.py"]


def test_a_plain_gradio_import_does_write_one(tmp_path):
    """The control: what the test above guards against is real, so that test can fail."""
    (tmp_path / "plain").mkdir()
    assert _define_a_component(tmp_path / "plain", lean=False) == ["shown.py", "shown.pyi"]
