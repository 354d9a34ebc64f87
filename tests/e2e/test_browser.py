"""The wizard in a real headless Chromium: the demo run, start to answer, in Chinese and English.

Screenshots of each step land in test-artifacts/ at the repository root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from support import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
GUARD = ROOT / "tests" / "netguard"

if CHROMIUM is None:
    pytest.skip("Chromium is not installed (the test command installs it where it can)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def app(tmp_path):
    port = free_port()
    log = tmp_path / "guard.log"
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"), EASYTUNE_GUARD_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=proc)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def browser():
    with playwright.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        yield instance
        instance.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("lang, words", [
    ("zh", {"steps": ["① 数据与模型", "② 意图配置", "③ 训练监控", "④ 评估与导出"], "start": "开始训练",
            "done": "已完成", "ask": "提问", "question": "你的问题", "estimate": "分钟"}),
    ("en", {"steps": ["① Data & model", "② Goal & settings", "③ Training", "④ Evaluate & export"],
            "start": "Start training", "done": "Completed", "ask": "Ask", "question": "Your question",
            "estimate": "minutes"}),
])
def test_demo_journey(app, browser, lang, words):
    url, guard_log = app
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_text("English" if lang == "en" else "中文", exact=True).click()
    for step in words["steps"]:
        page.get_by_role("tab", name=step).wait_for()
    page.get_by_role("tab", name=words["steps"][0]).click()
    page.locator("table").first.wait_for()  # the dataset preview
    shot(page, f"{lang}-1-data")

    page.get_by_role("tab", name=words["steps"][1]).click()
    page.locator("#et-plan-summary").get_by_text(words["estimate"]).wait_for(timeout=60_000)  # the plan is ready
    shot(page, f"{lang}-2-plan")
    page.get_by_role("button", name=words["start"]).click()

    page.locator("#et-loss-plot .js-plotly-plot").wait_for(timeout=120_000)  # the live chart appears
    shot(page, f"{lang}-3-training")
    page.locator("#et-status").get_by_text(re.compile(words["done"])).wait_for(timeout=300_000)
    shot(page, f"{lang}-3-done")

    page.get_by_role("tab", name=words["steps"][3]).click()
    page.wait_for_function("() => document.querySelector('#et-eval-job input')?.value.length > 0",
                           timeout=30_000)  # the finished job is picked for us
    page.get_by_label(words["question"]).fill("怎么退货？" if lang == "zh" else "How do I return an item?")
    page.get_by_role("button", name=words["ask"], exact=True).click()
    answer = page.locator("#et-tuned-answer textarea")
    try:
        page.wait_for_function("el => el.value.trim().length > 0", arg=answer.element_handle(), timeout=180_000)
    finally:
        shot(page, f"{lang}-4-answer")
    assert answer.input_value().strip()
    assert not guard_log.exists() or all(not line.startswith(("connect", "resolve"))
                                         for line in guard_log.read_text().splitlines())
