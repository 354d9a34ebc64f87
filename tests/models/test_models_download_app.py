"""Adding a hub model in the app: the real app (a subprocess, which turns the hub off for its own
libraries) downloads from a local hub with a live progress line, stays responsive meanwhile, lists
the model in step ①'s picker afterwards, and Cancel stops a download keeping what it fetched; it
connects nowhere but the hub it was pointed at and never imports the training stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from fakehub import FakeHub
from gradio_client import Client

from easytune.i18n import t
from easytune.settings import load_settings
from easytune.ui.choices import model_choices
from support import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow

TINY = ROOT / "assets" / "tiny-model"
WEIGHTS = "model.safetensors"


@pytest.fixture
def app(hf_cache, home, tmp_path):
    guard_log = tmp_path / "guard.log"  # connections beyond this machine, imports of the training stack
    with FakeHub() as hub:
        hub.add_folder("acme/tiny", TINY, skip=("README.md",))
        hub.add_repo("acme/big", {**{p.name: p.read_bytes() for p in TINY.iterdir() if p.suffix == ".json"},
                                  WEIGHTS: os.urandom(4_000_000)})
        port = free_port()
        env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en", HF_ENDPOINT=hub.url,
                   PYTHONPATH=os.pathsep.join([str(ROOT / "tests" / "netguard"), os.environ.get("PYTHONPATH", "")]),
                   EASYTUNE_GUARD_LOG=str(guard_log))
        server = subprocess.Popen([sys.executable, "-m", "easytune.cli", "--port", str(port)], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_http(url, timeout=90, proc=server)
            yield hub, Client(url, verbose=False)
        finally:
            server.terminate()
            server.wait(timeout=20)
    # nothing left the machine, and the app itself never imported the training stack (the sanity check
    # of the added model runs in a subprocess of its own, which does)
    findings = guard_log.read_text().splitlines() if guard_log.exists() else []
    assert [line for line in findings if not (line.startswith("import ") and line.endswith(" by sanity.py"))] == [], \
        findings


def lines_of(job) -> list[str]:
    """The progress lines a job has shown so far: each update is (bar HTML, line)."""
    return [line for _, line in job.outputs()]


def wait_for(job, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines_of(job)) and not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_app_downloads_with_progress_stays_responsive_and_cancels(app, hf_cache, home):
    hub, client = app
    hub.throttle[WEIGHTS] = 2_000_000
    job = client.submit("en", "acme/tiny", "", False, api_name="/add_model")
    wait_for(job, WEIGHTS)
    started = time.monotonic()  # meanwhile the app answers other requests at once
    client.predict("en", "acme/none", api_name="/add_model_cancel")
    assert time.monotonic() - started < 3 and not job.done()
    bar, message = job.result()
    assert "Added model tiny" in message and bar == "", message
    lines = [line for line in lines_of(job) if line.startswith("Downloading acme/tiny")]
    assert any(WEIGHTS in line and " of 4.7 MB" in line and "/s" in line for line in lines), lines_of(job)
    assert any('role="progressbar"' in bar for bar, _ in job.outputs()[:-1])

    _, refused = client.predict("zh", "acme/absent", "", False, api_name="/add_model")
    assert refused == "⚠️ " + t("models.hub_not_found", "zh", hub_id="acme/absent", endpoint=hub.url)

    settings = load_settings()  # the wizard's picker offers it
    assert ("tiny", "tiny") in model_choices(settings)

    hub.throttle[WEIGHTS] = 1_000_000  # step ①'s panel, with Cancel midway
    job = client.submit("en", "acme/big", "mine", False, api_name="/wizard_add_model")
    wait_for(job, WEIGHTS)
    time.sleep(0.5)
    client.predict("en", "acme/big", api_name="/wizard_add_model_cancel")
    _, message = job.result()
    assert "stopped at" in message and "continue" in message, message
    assert [p.stat().st_size > 0 for p in hf_cache.rglob("*.incomplete")] == [True]
    assert ("mine", "mine") not in model_choices(settings)
