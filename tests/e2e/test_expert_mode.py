"""Step ②'s expert mode in a real headless Chromium, no training: a learning rate the user types is kept,
marked ✎ beside the recommendation and warned about when out of range; a reason expands to its longer
explanation; the YAML download carries the edited value. Screenshot: test-artifacts/en-2-expert.png."""

from __future__ import annotations

import re

import pytest
import yaml
from test_browser import app, browser, offline, open_app, replanned, shot, t  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


def test_expert_learning_rate_is_marked_warned_explained_and_downloaded(app, browser):  # noqa: F811
    url, guard_log = app
    page = open_app(browser, url, "en")  # the built-in model and a demo dataset are picked already
    try:
        edit_learning_rate_and_download(page)
    except Exception:
        shot(page, "en-2-expert-failed")
        raise
    assert offline(guard_log)


def edit_learning_rate_and_download(page) -> None:
    # planning is over once Start is back: the form holds the planner's values
    replanned(page, "en", lambda: page.get_by_role("tab", name=t("ui.step.plan", "en")).click())
    summary = page.locator("#et-plan-summary")

    page.get_by_text(t("ui.plan.expert", "en")).click()
    rate = page.get_by_label(f"{t('planner.field_name.learning_rate', 'en')} · learning_rate", exact=True)
    rate.fill("0.05")
    rate.press("Tab")
    learning_rate = summary.locator("li.et-field-learning_rate")
    learning_rate.get_by_text(re.compile(r"You set 5e-2, .*the planner would pick \d")).wait_for(timeout=60_000)
    assert "✎" in learning_rate.locator("summary").inner_text()
    summary.get_by_text(re.compile(r"Learning rate = 5e-2 is outside the range recommended")).wait_for()

    why = learning_rate.locator("details > p")
    assert not why.is_visible()  # folded until asked for
    learning_rate.locator("summary").click()
    why.wait_for(state="visible")
    assert why.inner_text() == t("planner.why.learning_rate", "en")
    shot(page, "en-2-expert")

    page.locator(".cm-content").get_by_text(re.compile(r"^learning_rate: 0\.05")).first.wait_for(timeout=30_000)
    with page.expect_download() as download:
        page.get_by_role("button", name=t("ui.plan.download", "en")).click()
    plan = yaml.safe_load(open(download.value.path(), encoding="utf-8"))
    assert plan["learning_rate"] == 0.05 and plan["model"] == "easytune-tiny"
