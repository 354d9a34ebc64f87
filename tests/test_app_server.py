"""The app starts fast on 127.0.0.1, without the training stack and without touching the network."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, cli, free_port, wait_http

GUARD = ROOT / "tests" / "netguard"


def test_app_serves_its_page_offline_without_the_training_stack(tmp_path):
    port = free_port()
    log = tmp_path / "guard.log"
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"), EASYTUNE_LANG="zh",
               PYTHONPATH=os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]),
               EASYTUNE_GUARD_LOG=str(log))
    app = subprocess.Popen([sys.executable, "-m", "easytune.cli", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", proc=app)
        assert "EasyTune" in page
        # Gradio's own words in the app's language: the page reports it before Gradio's code reads it
        assert page.index('"zh-CN"') < page.index("window.gradio_config")
        config = wait_http(f"http://127.0.0.1:{port}/config", proc=app)
        for step in ("数据与模型", "意图配置", "训练监控", "评估与导出"):
            assert step in config, step
    finally:
        app.terminate()
        app.wait(timeout=20)
    findings = log.read_text().splitlines() if log.exists() else []
    assert findings == [], findings


def test_the_serving_app_leaves_out_pandas_and_documents_no_api_in_its_page(tmp_path):
    """Gradio and sqlite-utils import pandas (with pyarrow, ~75 MiB) for nothing the app uses: the app's
    process leaves it out until something needs it (easytune/deferred_imports.py, ui/table.py). Gradio writes
    the API documents of every event into the page (2 MB here) unless told they are not an API (ui/app.py)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("reads the process's mapped libraries from /proc")
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"), EASYTUNE_LANG="en")
    app = subprocess.Popen([sys.executable, "-m", "easytune.cli", "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = wait_http(f"http://127.0.0.1:{port}/", proc=app)
        wait_http(f"http://127.0.0.1:{port}/config", proc=app)  # every table's first rows are in it
        mapped = Path(f"/proc/{app.pid}/maps").read_text()
    finally:
        app.terminate()
        app.wait(timeout=20)
    assert "/pandas/" not in mapped and "/pyarrow/" not in mapped
    api_documents = page[page.index("window.gradio_api_info = "):]
    api_documents = json.loads(api_documents[len("window.gradio_api_info = "):api_documents.index(";</script>")])
    assert api_documents.get("named_endpoints", {}) == {}, list(api_documents["named_endpoints"])[:5]
    assert len(page) < 1_000_000


def test_binding_beyond_loopback_needs_a_password(tmp_path):
    result = cli("ui", "--host", "0.0.0.0", home=tmp_path / "home", check=False)
    assert result.returncode == 2
    assert "--password" in result.stderr
    zh = cli("ui", "--host", "0.0.0.0", home=tmp_path / "home", check=False, lang="zh")
    assert "密码" in zh.stderr


def test_building_the_app_imports_no_training_stack(tmp_path):
    code = ("import sys; from easytune.ui.app import build_app; build_app(); "
            "print(sorted(m for m in ('torch','transformers','peft','datasets','openvino','accelerate') "
            "if m in sys.modules))")
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_choice_list_holds_its_value_from_the_start(tmp_path):
    """A dropdown is an input of events that may run before its choices are filled (a language switch while the
    page loads): Gradio refuses a value not in its choices, and the user sees an error."""
    code = ("import json, gradio as gr; from easytune.ui.app import build_app; app = build_app(); "
            "print(json.dumps([[b.elem_id, b.value, [c[1] for c in b.choices]] for b in app.blocks.values() "
            "if isinstance(b, gr.Dropdown) and not b.allow_custom_value and not b.multiselect "
            "and b.value not in (None, []) and b.value not in [c[1] for c in b.choices]]))")
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [], out.stdout
