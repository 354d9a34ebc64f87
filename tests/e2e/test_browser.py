"""The wizard in a real headless Chromium, with no connection beyond 127.0.0.1: a first-time user's whole
journey (upload → train → chat → verdict → OpenVINO export → a next version taught what it missed); a
returning user who reloads the page while a job trains, switches the language and starts a second job; two
tabs, each in its own place; and a bad upload's line number.

Screenshots of each step land in test-artifacts/ at the repository root.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, free_port, wait_http

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
GUARD = ROOT / "tests" / "netguard"

if CHROMIUM is None:
    pytest.skip("Chromium is not installed (the test command installs it where it can)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect


@pytest.fixture
def app(tmp_path):
    port = free_port()
    log = tmp_path / "guard.log"
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"), EASYTUNE_GUARD_LOG=str(log),
               PYTHONPATH=os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]))
    server_log = tmp_path / "server.log"
    with open(server_log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "ui", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=proc)
        yield f"http://127.0.0.1:{port}/", log
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        ARTIFACTS.mkdir(exist_ok=True)  # the app's own log, for when a journey fails
        shutil.copy(server_log, ARTIFACTS / f"server-{os.getpid()}-{port}.log")


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


def t(key: str, lang: str, **params) -> str:
    from easytune.i18n import t as translate

    return translate(key, lang, **params)


def offline(guard_log) -> bool:
    """True when the app attempted no connection and no name lookup beyond 127.0.0.1."""
    return not guard_log.exists() or all(not line.startswith(("connect", "resolve"))
                                         for line in guard_log.read_text().splitlines())


# Kept by the page across reloads: how often Start came back after the plan was made again (step ② opened,
# a choice changed: Start waits meanwhile, and a click that lands then is lost), and every message shown.
WATCH_JS = """document.addEventListener('DOMContentLoaded', () => {
  window.etPlanned = 0;
  window.etToasts = [];
  new MutationObserver(records => {
    for (const r of records)
      if (r.target.id === 'et-start' && r.oldValue !== null && !r.target.disabled) window.etPlanned++;
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['disabled'],
                             attributeOldValue: true});
  setInterval(() => document.querySelectorAll('.toast-body').forEach(e => {
    if (!window.etToasts.includes(e.innerText)) window.etToasts.push(e.innerText);
  }), 200);
});"""


def open_app(browser, url: str, lang: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(WATCH_JS)
    page.said = []  # what the page wrote to the browser's console (Gradio's lost connections among it)
    page.on("console", lambda message: page.said.append(f"{message.type}: {message.text}"[:300]))
    page.goto(url)
    choice = page.get_by_text("English" if lang == "en" else "中文", exact=True)
    for _ in range(3):  # the page's own start-up sets the browser's language; a click before it ends is undone
        choice.click()
        page.get_by_role("tab", name=t("ui.step.data", lang)).wait_for()
        page.wait_for_timeout(1500)
        if page.get_by_role("tab", name=t("ui.step.data", lang)).count():
            break
    return page


@pytest.mark.parametrize("lang, upload, question", [("zh", "shop_faq_zh.jsonl", "怎么退货？")])
def test_first_fine_tune_from_upload_to_verdict_and_export(app, browser, tmp_path, lang, upload, question):
    """What a first-time user does: upload their FAQ, accept what was detected, keep the built-in model, pick
    a goal, train, watch it, ask, evaluate, export for OpenVINO, start the next version on the questions it
    missed — all in one language, all offline."""
    url, guard_log = app
    page = open_app(browser, url, lang)
    steps = [t(f"ui.step.{s}", lang) for s in ("data", "plan", "monitor", "evaluate")]

    # ① data and model: the file is recognised and previewed
    source = tmp_path / upload
    source.write_bytes((ROOT / "assets" / "demo" / upload).read_bytes())
    page.locator("#et-upload input[type=file]").set_input_files(str(source))
    report = page.locator("#et-import-report")
    report.get_by_text(re.compile("openai")).wait_for(timeout=60_000)
    page.locator("#et-tokens").get_by_text(re.compile("512")).wait_for(timeout=30_000)  # lengths vs context
    page.get_by_text(t("ui.data.tokens_chart", lang)).click()  # the chart is drawn when asked for
    page.locator("#et-tokens-plot .js-plotly-plot").wait_for(timeout=120_000)  # slow beside a training run
    shot(page, f"{lang}-1-data")

    # ② goal: a task and a level, the explained plan, start
    replanned(page, lang, lambda: page.get_by_role("tab", name=steps[1]).click())
    replanned(page, lang, lambda: page.get_by_text(t("planner.level.L1", lang), exact=True).click())
    shot(page, f"{lang}-2-plan")  # the goal was left to EasyTune: a FAQ of facts is domain knowledge, and it says why
    expect(page.locator(".et-task-chosen")).to_contain_text(t("planner.task.domain", lang))
    page.get_by_role("button", name=t("ui.plan.start", lang)).click()

    # ③ training: the curves move, the job finishes
    page.locator("#et-loss-plot .js-plotly-plot").wait_for(timeout=120_000)
    shot(page, f"{lang}-3-training")
    page.locator("#et-status").get_by_text(re.compile(t("state.COMPLETED", lang))).wait_for(timeout=400_000)
    shot(page, f"{lang}-3-done")

    # ④ chat side by side, the verdict, the OpenVINO export
    page.get_by_role("tab", name=steps[3]).click()
    page.wait_for_function("() => document.querySelector('#et-eval-job input')?.value.length > 0",
                           timeout=30_000)  # the finished job is picked for us
    page.locator("#et-question textarea").fill(question)
    page.locator("#et-ask").click()
    tuned = page.locator("#et-tuned-chat")
    try:
        page.wait_for_function(
            "() => [...document.querySelectorAll('#et-base-chat [data-testid=bot]')].some(e => e.innerText.trim())",
            timeout=180_000)
    finally:
        shot(page, f"{lang}-4-chat")
    assert tuned.get_by_text(question).count() >= 1

    page.locator("#et-eval-questions input").click()  # test questions: the upload, less the rows it trained on
    page.get_by_role("option", name=Path(upload).stem).first.click()
    page.locator("#et-evaluate").click()
    page.locator("#et-verdict").get_by_text(t("ui.eval.verdict_head", lang)).wait_for(timeout=400_000)
    shot(page, f"{lang}-4-verdict")
    assert t("ui.eval.samples_questions", lang) in page.locator("#et-verdict").inner_text()
    page.locator("#et-export").click()  # OpenVINO INT8 is the default format
    page.locator("#et-export-result").get_by_text(re.compile("✓")).wait_for(timeout=400_000)
    shot(page, f"{lang}-4-export")
    assert "openvino-int8" in page.locator("#et-export-result").inner_text()

    # the Exports page hands the export over as a file: the server's path means nothing on another computer
    page.locator("#et-nav-exports").click()
    page.locator("#et-exports-table .body-cell").first.click()
    page.wait_for_function(  # the choice has reached the server: its id is shown beside the buttons
        "() => document.querySelector('#et-export-chosen')?.innerText.trim().length > 0", timeout=30_000)
    page.locator("#et-export-download").click()
    link = page.locator("#et-export-file a").filter(visible=True).first
    link.wait_for(timeout=120_000)
    offered = page.locator("#et-export-file").inner_text()
    assert "openvino-int8.zip" in re.sub(r"\s", "", offered) and t("ui.exports.file", lang) in offered
    assert "openvino-int8.zip" in (link.get_attribute("href") or "")
    shot(page, f"{lang}-exports-download")

    # the next version learns the test questions it answered wrong: step ④ starts it, the monitor follows it
    page.locator("#et-nav-wizard").click()
    page.get_by_role("tab", name=steps[3]).click()
    first = page.locator("#et-eval-job input").input_value().split(" · ")[0]
    page.locator("#et-feedback").get_by_text(t("ui.eval.feedback_head", lang)).click()
    page.locator("#et-improve-data input").click()
    page.get_by_role("option", name=t("ui.eval.improve_missed", lang)).click()
    page.locator("#et-improve").click()
    page.get_by_role("tab", name=steps[2], selected=True).wait_for(timeout=120_000)
    second = job_shown(page)
    page.locator(".toast-body").filter(has_text=f"missed-{first}").wait_for(timeout=30_000)  # what it was taught
    shot(page, f"{lang}-4-improve")
    page.get_by_role("button", name=t("ui.monitor.stop", lang)).click()  # its training is the CLI tests' part
    page.locator("#et-status").get_by_text(re.compile(t("state.STOPPED", lang))).wait_for(timeout=120_000)
    from easytune import jobs
    from easytune.datasets import resolve_dataset
    from easytune.settings import load_settings

    settings = load_settings(home=tmp_path / "home")
    taught = resolve_dataset(settings, jobs.get_job(settings, second)["dataset"])
    assert second != first and taught.name == f"missed-{first}", taught
    assert offline(guard_log)


def job_shown(page) -> str:
    """The id of the job the monitor shows (its dropdown reads "id · name")."""
    page.wait_for_function("() => document.querySelector('#et-job input')?.value.length > 0", timeout=30_000)
    return page.locator("#et-job input").input_value().split(" · ")[0]


def replanned(page, lang: str, action) -> None:
    """Do what makes step ② plan again, and wait until Start takes clicks again: it waits meanwhile."""
    before = page.evaluate("() => window.etPlanned")
    action()
    page.wait_for_function(f"() => window.etPlanned > {before}", timeout=120_000)
    minutes = {"zh": "分钟", "en": "minutes"}[lang]  # the plan is ready when its time estimate shows
    page.locator("#et-plan-summary").get_by_text(re.compile(minutes)).first.wait_for(timeout=90_000)


def start_plan(page, lang: str, server_log: Path, level: str | None = None) -> None:
    replanned(page, lang, lambda: page.get_by_role("tab", name=t("ui.step.plan", lang)).click())
    if level:
        replanned(page, lang, lambda: page.get_by_text(t(f"planner.level.{level}", lang), exact=True).click())
    home, said = server_log.parent / "home", "() => window.etToasts.length"
    jobs_before, said_before = len(jobs_now(home)), page.evaluate(said)
    page.get_by_role("button", name=t("ui.plan.start", lang)).click()
    # a click the page lost (no job recorded, nothing said: seen now and then, right after a job ended) is made
    # again, once; a job is recorded as the click is handled, long before it trains
    for _ in range(60):
        if len(jobs_now(home)) > jobs_before or page.evaluate(said) > said_before:
            break
        page.wait_for_timeout(1000)
    else:
        page.get_by_role("button", name=t("ui.plan.start", lang)).click()
    try:  # a job starts in seconds alone, in minutes beside other training runs on two cores
        page.get_by_role("tab", name=t("ui.step.monitor", lang), selected=True).wait_for(timeout=300_000)
        page.locator("#et-loss-plot .js-plotly-plot").wait_for(timeout=300_000)
    except playwright.TimeoutError:  # what the page and the server said instead, for whoever reads the failure
        shot(page, f"{lang}-start-failed")
        server = server_log.read_text(errors="replace")[-3000:] if server_log.exists() else ""
        start = page.locator("#et-start")
        raise AssertionError(
            f"no run started; the page said {page.evaluate('() => window.etToasts')}, its open tabs are "
            f"{page.locator('[role=tab][aria-selected=true]').all_inner_texts()}, Start reads {start.inner_text()!r} "
            f"(enabled: {start.is_enabled()}), the jobs are {jobs_now(server_log.parent / 'home')}, the monitor "
            f"shows {page.locator('#et-status').inner_text()!r}, the console's last lines are {page.said[-12:]}; "
            f"the server's log ends {server}") from None


def jobs_now(home: Path) -> list[tuple[str, str]]:
    from easytune import jobs
    from easytune.settings import load_settings

    settings = load_settings(home=home)
    return [(job["id"], jobs.sync_job(settings, job["id"])["state"]) for job in jobs.list_jobs(settings)]


def test_a_reload_a_language_switch_and_a_second_job_lose_nothing(app, browser, tmp_path):
    """Back at the page mid-run: the reload shows the running job again; the language switch relabels the
    page and is kept across the next reload; a second job from the same plan gets its own curve and ends."""
    url, guard_log = app
    page = open_app(browser, url, "en")
    start_plan(page, "en", tmp_path / "server.log", "L1")  # the built-in model and demo data, as the page opens
    first = job_shown(page)

    page.reload()  # the job keeps training in its own process; the page finds it again
    page.get_by_role("tab", name=t("ui.step.monitor", "en"), selected=True).wait_for(timeout=60_000)
    assert job_shown(page) == first
    page.locator("#et-loss-plot .js-plotly-plot").wait_for(timeout=120_000)
    shot(page, "en-3-after-reload")

    page.get_by_text("中文", exact=True).click()  # everything relabels, the job stays
    page.get_by_role("tab", name=t("ui.step.monitor", "zh")).wait_for(timeout=30_000)
    page.locator("#et-status").get_by_text(re.compile(t("state.COMPLETED", "zh"))).wait_for(timeout=400_000)
    assert job_shown(page) == first

    start_plan(page, "zh", tmp_path / "server.log")  # a second job, L1 still: its own id, its own curve, to the end
    second = job_shown(page)
    assert second != first
    page.get_by_role("tab", name=t("ui.step.evaluate", "zh")).click()  # ④ is the second job's: empty for now
    page.locator("#et-verdict").get_by_text(t("ui.eval.pick_job", "zh")).wait_for(timeout=30_000)
    assert page.locator("#et-eval-job input").input_value() == ""
    page.get_by_role("tab", name=t("ui.step.monitor", "zh")).click()
    page.locator("#et-status").get_by_text(re.compile(t("state.COMPLETED", "zh"))).wait_for(timeout=400_000)
    shot(page, "zh-3-second-job")
    page.get_by_role("tab", name=t("ui.step.evaluate", "zh")).click()  # now it is, and only it
    expect(page.locator("#et-eval-job input")).to_have_value(re.compile(second), timeout=30_000)
    page.get_by_role("tab", name=t("ui.step.monitor", "zh")).click()

    page.reload()  # the language chosen and the latest job survive a reload
    page.get_by_role("tab", name=t("ui.step.monitor", "zh"), selected=True).wait_for(timeout=60_000)
    assert job_shown(page) == second
    from easytune import jobs
    from easytune.settings import load_settings

    settings = load_settings(home=tmp_path / "home")
    assert [jobs.sync_job(settings, job_id)["state"] for job_id in (first, second)] == ["COMPLETED"] * 2
    assert offline(guard_log)


def test_two_tabs_keep_their_own_place(app, browser, tmp_path):
    """A second tab starts where the first left off, then each keeps its own step across reloads; data one
    tab imports is listed when the other opens its Datasets page."""
    url, guard_log = app
    first = open_app(browser, url, "en")
    first.get_by_role("tab", name=t("ui.step.plan", "en")).click()
    first.locator("#et-plan-summary").get_by_text(re.compile("minutes")).first.wait_for(timeout=90_000)

    second = browser.new_page(viewport={"width": 1280, "height": 900})
    second.goto(url)
    second.get_by_role("tab", name=t("ui.step.plan", "en"), selected=True).wait_for(timeout=60_000)
    second.get_by_role("tab", name=t("ui.step.data", "en")).click()
    second.wait_for_timeout(1500)

    for page, step in ((first, "plan"), (second, "data"), (first, "plan")):
        page.reload()
        page.get_by_role("tab", name=t(f"ui.step.{step}", "en"), selected=True).wait_for(timeout=60_000)
        page.wait_for_timeout(1500)  # the page's own load events have put it back
        assert page.get_by_role("tab", name=t(f"ui.step.{step}", "en"), selected=True).count() == 1

    mine = tmp_path / "other-tab.jsonl"
    mine.write_text("".join(json.dumps({"question": f"Question {i}?", "answer": f"Answer {i}."}) + "\n"
                            for i in range(12)))
    second.locator("#et-upload input[type=file]").set_input_files(str(mine))
    expect(second.locator("#et-dataset input")).to_have_value(re.compile("other-tab"), timeout=60_000)
    first.locator("#et-nav-datasets").click()
    first.locator("#et-ds-table").get_by_text("other-tab", exact=True).filter(visible=True).first.wait_for(
        timeout=30_000)
    expect(first.locator("#et-nav-datasets")).to_have_class(re.compile(r"\bprimary\b"))  # the menu marks the page
    expect(first.locator("#et-nav-wizard")).not_to_have_class(re.compile(r"\bprimary\b"))
    assert offline(guard_log)


def test_a_bad_upload_is_reported_with_its_line_number(app, browser, tmp_path):
    url, guard_log = app
    page = open_app(browser, url, "en")
    bad = tmp_path / "faq.jsonl"
    good = '{"question": "Where is my order?", "answer": "Open My orders to track it."}'
    bad.write_text("\n".join([good, good.replace("my order", "my parcel"), '{"question": "broken', good]) + "\n")
    page.locator("#et-upload input[type=file]").set_input_files(str(bad))
    report = page.locator("#et-import-report")
    report.get_by_text(t("datasets.summary.line", "en", line=3)).wait_for(timeout=60_000)
    shot(page, "en-1-bad-upload")
    assert offline(guard_log)


def test_an_imported_dataset_survives_reloads_and_a_language_switch(app, browser, tmp_path):
    """Import, reload, switch language, reload again: no error, the dataset still chosen in step ①, and the
    Datasets page lists it (choices come from the database at each load, not from when the server started)."""
    url, guard_log = app
    page = open_app(browser, url, "en")
    mine = tmp_path / "my-shop.jsonl"
    mine.write_text("".join(json.dumps({"question": f"Question {i}?", "answer": f"Answer {i}."}) + "\n"
                            for i in range(12)))
    page.locator("#et-upload input[type=file]").set_input_files(str(mine))
    expect(page.locator("#et-dataset input")).to_have_value(re.compile("my-shop"), timeout=60_000)

    def settled(lang: str) -> None:
        page.get_by_role("tab", name=t("ui.step.data", lang)).wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the page's own load events
        assert page.locator(".toast-body.error").count() == 0
        expect(page.locator("#et-dataset input")).to_have_value(re.compile("my-shop"))

    page.reload()
    settled("en")
    page.get_by_text("中文", exact=True).click()
    page.get_by_role("tab", name=t("ui.step.data", "zh")).wait_for(timeout=30_000)
    page.reload()
    settled("zh")
    page.locator("#et-nav-datasets").click()
    shot(page, "zh-datasets-after-reloads")
    page.locator("#et-ds-table").get_by_text("my-shop", exact=True).filter(visible=True).first.wait_for(timeout=30_000)
    assert offline(guard_log)
