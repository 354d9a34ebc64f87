"""What watching costs: the CPU the app and an open page take from the machine a job trains on. A benchmark
that prints the figures.

    python -m easytune.ui.bench_watching [--seconds 30]

It starts the app in a fresh home, then measures, each over the same window, the CPU time (as a share of one
core) of the app's process and of the browser (Chromium, headless, the system's):
  - the app alone, no page open;
  - the page on the monitor while a built-in-model job trains (the app's busiest page);
  - the same page once the job has ended.
Every share taken here is taken from the training on a machine with few cores (easytune.train.core_share).
Measured on 2 cores of an AMD EPYC, 30 s windows, app + browser, before → after the monitor's pacing
(ui/wizard.py TICK_S, CHART_EVERY_S) and the queue's (ui/server.py QUEUE_IDLE_S): the app alone 9 % → 2 %; the
page, a job training 10 + 22 % → 5 + 25 %; the page, the job ended 9 + 18 % → 2 + 12 %. Then with an idle
page's frames paced (ui/page_pace.py): 4 + 13 % and 2 + 5 %; the real model's default run on the bike rental's FAQ
took 237 s with the monitor open, 216 s alone (326 to 344 s open before). Close other programs first: they share
the cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from easytune.serve_bench import free_port
from easytune.ui.bench_startup import first_answer


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:  # ended meanwhile
            pass
    return total


def browsers() -> list[psutil.Process]:
    """The Chromium processes this benchmark started (through Playwright's driver)."""
    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


def share(app: psutil.Process, seconds: float, with_browser: bool) -> tuple[float, float]:
    """(app, browser) CPU over the next `seconds`, as shares of one core."""
    before = cpu_seconds([app]), cpu_seconds(browsers()) if with_browser else 0.0
    time.sleep(seconds)
    after = cpu_seconds([app]), cpu_seconds(browsers()) if with_browser else 0.0
    return (after[0] - before[0]) / seconds, (after[1] - before[1]) / seconds


def cli(home: Path, *args: str) -> None:
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    subprocess.run([sys.executable, "-m", "easytune.cli", *args], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="each window's length")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from easytune.i18n import t

    home = Path(tempfile.mkdtemp(prefix="easytune-watching-"))
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    proc = subprocess.Popen([sys.executable, "-m", "easytune.cli", "ui", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = {}
    try:
        url = f"http://127.0.0.1:{port}/"
        first_answer(url, proc)
        app = psutil.Process(proc.pid)
        time.sleep(3)
        rows["the app alone, no page"] = share(app, args.seconds, with_browser=False)
        plan = home / "long.yaml"  # the built-in model and demo data, long enough to outlast the window
        cli(home, "plan", "--data", "demo:shop_faq_en", "--task", "chat", "--set", "max_steps=100000",
            "--out", str(plan))
        cli(home, "train", "--config", str(plan), "--detach")
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            monitor = t("ui.step.monitor", "en")
            for _ in range(5):  # the page's own start-up puts the wizard back where it was: a click before is undone
                page.get_by_role("tab", name=monitor).click()
                page.wait_for_timeout(2000)
                if page.get_by_role("tab", name=monitor, selected=True).count():
                    break
            page.locator("#et-loss-plot .js-plotly-plot").wait_for(timeout=120_000)
            rows["the page on the monitor, a job training"] = share(app, args.seconds, with_browser=True)
            job = next((home / "jobs").iterdir()).name
            cli(home, "jobs", "stop", job)
            page.locator("#et-status").get_by_text(t("state.STOPPED", "en")).wait_for(timeout=120_000)
            time.sleep(3)
            rows["the page on the monitor, the job ended"] = share(app, args.seconds, with_browser=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.2f} · {args.seconds:.0f} s each · share of one core")
    print(f"{'':<42} {'app':>6} {'browser':>8} {'both':>6}")
    for name, (app_share, browser_share) in rows.items():
        print(f"{name:<42} {app_share:>6.0%} {browser_share:>8.0%} {app_share + browser_share:>6.0%}")


if __name__ == "__main__":
    main()
