"""Every page in both languages, walked in a real Chromium: no words of the other language, no raw message
keys, no raw setting values. What the user brought (data cells, chat answers, the YAML editor) is theirs and
is left out; so is the language switch itself. Each language is walked in a browser set to the other one: Gradio's
own words (a file drop zone, a table's menu) must follow the app's language, not the browser's, once the page
is reloaded from the switch's offer.
"""

from __future__ import annotations

import json
import re

import pytest
from test_browser import app, browser, offline, t  # noqa: F401 (fixtures)

from support import ROOT, cli

pytestmark = pytest.mark.slow

PAGES = ("dashboard", "wizard", "datasets", "models", "jobs", "exports")
STEPS = ("data", "plan", "monitor", "evaluate")
# Text a user did not write: visible text nodes and the labels screen readers read out.
SHOWN_TEXT = """() => {
  const theirs = (el) => el.closest('.body-cell, tbody, #et-lang, [data-testid=bot], [data-testid=user], .cm-editor');
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement, text = walker.currentNode.textContent.trim();
    if (text && el && !theirs(el) && el.checkVisibility()) out.push(text);
  }
  for (const el of document.querySelectorAll('[aria-label], [placeholder]')) {
    if (theirs(el) || !el.checkVisibility()) continue;
    for (const name of ['aria-label', 'placeholder']) if (el.getAttribute(name)) out.push(el.getAttribute(name));
  }
  return out;
}"""
# The tables whose columns are sized to fit: a wide cell wraps inside them instead of running off the edge.
FITTED_TABLES = ("et-preview", "et-dash-recent", "et-jobs-table")
RUN_OFF = """(ids) => ids.map(id => document.getElementById(id)).filter(el => el && el.checkVisibility())
  .flatMap(el => [...el.querySelectorAll('table')].filter(t => t.scrollWidth > t.parentElement.clientWidth + 2)
  .map(() => el.id))"""
CJK = re.compile(r"[\u4e00-\u9fff]")
RAW_KEY = re.compile(r"\b[a-z_]+\.[a-z_]+\.[a-z_.]+\b")
FILE_NAME = re.compile(r"\.(jsonl?|csv|tsv|yaml|gguf|py|safetensors|xml)\b")
RAW_VALUES = {"True", "False", "all", "lora", "qlora", "full", "builtin", "cosine", "all_linear", "auto", "sft",
              "Number", "Radio", "Textbox", "Dropdown", "Checkbox", "Error", "单选框",
              "Drop File Here", "Click to Upload"}  # Gradio's own words, in its English


def strays(text: str, lang: str) -> list[str]:
    found = []
    if RAW_KEY.search(text) and not FILE_NAME.search(text):
        found.append("raw key")
    if lang == "en" and CJK.search(text):
        found.append("Chinese in the English page")
    if lang == "zh" and text in RAW_VALUES:
        found.append("raw value in the Chinese page")
    return found


@pytest.mark.parametrize("lang, locale", [("en", "zh-CN"), ("zh", "en-US")])
def test_every_page_speaks_one_language(app, browser, lang, locale, tmp_path):  # noqa: F811
    url, guard_log = app
    home = tmp_path / "home"  # the app's: a job in the tables, and answers longer than a table is wide
    cli("train", "--config", str(ROOT / "presets" / "demo.yaml"), "--detach", home=home)
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"instruction": f"How does the warranty for item {i} work?",
                                        "output": "It covers manufacturing defects for two years. " * 12}) + "\n"
                            for i in range(10)), encoding="utf-8")
    cli("data", "add", str(long), "--name", "long-answers", home=home)
    page = browser.new_page(locale=locale, viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.get_by_role("tab", name=t("ui.step.data", "zh" if lang == "en" else "en")).wait_for(timeout=60_000)
    page.locator("#et-lang").get_by_text("English" if lang == "en" else "中文").click()
    offer = page.locator("#et-lang-reload")  # offered after the switch
    offer.wait_for(timeout=30_000)
    assert offer.inner_text().strip() == t("ui.language_reload", lang)
    offer.click()
    page.wait_for_load_state()
    page.get_by_role("tab", name=t("ui.step.data", lang)).wait_for(timeout=60_000)
    page.wait_for_timeout(2000)  # the page's own load events
    assert page.evaluate("() => navigator.language") == ("en" if lang == "en" else "zh-CN")
    page.locator("#et-dataset input").click()
    page.get_by_role("option", name="long-answers").first.click()
    page.wait_for_timeout(1500)
    found = []
    for name in PAGES:
        page.locator(f"#et-nav-{name}").click()
        for step in STEPS if name == "wizard" else (None,):
            if step:
                page.get_by_role("tab", name=t(f"ui.step.{step}", lang)).click()
            page.wait_for_timeout(1200)
            found += [(name, step, why, text[:120]) for text in page.evaluate(SHOWN_TEXT) for why in strays(text, lang)]
            found += [(name, step, "runs off its table", table) for table in page.evaluate(RUN_OFF, FITTED_TABLES)]
    assert found == []
    assert offline(guard_log)
