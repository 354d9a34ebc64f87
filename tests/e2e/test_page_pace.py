"""An idle page draws a few frames a second (easytune/ui/page_pace.py): left alone on the monitor, the browser is
asked for at most four rounds of frames a second; a moving mouse gets frames at the display's pace again."""

from __future__ import annotations

import re

import pytest
from test_browser import app, browser  # noqa: F401 (fixtures)

from easytune.ui.page_pace import ACTIVE_MS, IDLE_FRAME_MS

pytestmark = pytest.mark.slow

# counts the frames that reach the browser: installed before the page's own scripts, so it sits under them
COUNT_FRAMES_JS = """(() => {
  const frame = window.requestAnimationFrame.bind(window);
  window.etFrames = 0;
  window.requestAnimationFrame = (callback) => { window.etFrames++; return frame(callback); };
})();"""


def frames_per_s(page, seconds: float, moving: bool = False) -> float:
    before = page.evaluate("() => window.etFrames")
    for step in range(int(seconds * 10)):
        if moving:
            page.mouse.move(200 + step % 50, 300)
        page.wait_for_timeout(100)
    return (page.evaluate("() => window.etFrames") - before) / seconds


def test_an_idle_page_asks_for_a_few_frames_a_second_and_a_busy_one_for_all(app, browser):  # noqa: F811
    url, _ = app
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.add_init_script(COUNT_FRAMES_JS)
    page.goto(url)
    for step in ("②", "③"):  # step ②'s tabs and the loading screen's tracker both ask at every frame
        page.get_by_role("tab", name=re.compile(step)).click()
        page.wait_for_timeout(1500)
    page.wait_for_timeout(ACTIVE_MS + 1000)
    idle = frames_per_s(page, 4)
    assert idle <= 1000 / IDLE_FRAME_MS + 1, idle
    busy = frames_per_s(page, 2, moving=True)
    assert busy >= 20, (idle, busy)
