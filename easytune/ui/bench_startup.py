"""How fast the first page shows, and what the app holds in memory before any job: a benchmark that
prints the figures, beside LLaMA-Factory's LlamaBoard where `llamafactory-cli` is installed.

    python -m easytune.ui.bench_startup [--runs 3]

Each run starts the app in a fresh home on a free port and measures, from the command's start:
  - HTTP: the first answer to GET / ;
  - content: Chromium (headless, the system's) showing the first step's tab, which is what a user waits for;
  - memory: the app process's resident memory (RSS) two seconds after that.
Figures are medians of the runs. Close other programs first: they share the cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from easytune.serve_bench import free_port

TARGETS = {"content_vs_llamaboard": 3.0, "rss_mib": 150}


def first_answer(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def measure(command: list[str], env: dict, url: str, shown: str, browser, cwd: Path | None = None) -> dict:
    """One start: seconds to the first HTTP answer and to `shown` visible, and the app's RSS then."""
    started = time.monotonic()
    proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        first_answer(url, proc)
        http_s = time.monotonic() - started
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_text(shown).first.wait_for(state="visible", timeout=120_000)
        content_s = time.monotonic() - started
        page.wait_for_timeout(2000)  # the page's own start-up requests (a Gradio page never goes network-idle)
        memory = rss_mib(proc.pid)
        page.close()
        return {"http_s": http_s, "content_s": content_s, "rss_mib": memory}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def easytune_run(browser) -> dict:
    from easytune.i18n import t

    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="easytune-startup-"))
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    try:
        return measure([sys.executable, "-m", "easytune.cli", "ui", "--port", str(port)], env,
                       f"http://127.0.0.1:{port}/", t("ui.step.data", "en"), browser)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def llamaboard_run(browser) -> dict | None:
    cli = shutil.which("llamafactory-cli")
    if cli is None:
        return None
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1")
    work = Path(tempfile.mkdtemp(prefix="llamaboard-startup-"))  # it writes its cache where it starts
    try:
        return measure([cli, "webui"], env, f"http://127.0.0.1:{port}/", "Model name", browser, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        ours = [easytune_run(browser) for _ in range(args.runs)]
        theirs = [run for run in (llamaboard_run(browser) for _ in range(args.runs)) if run]
        browser.close()
    print(f"load average {os.getloadavg()[0]:.2f} · median of {args.runs}")
    print(f"{'':<12} {'HTTP':>8} {'content':>9} {'RSS':>9}")
    for name, runs in (("EasyTune", ours), ("LlamaBoard", theirs)):
        if runs:
            print(f"{name:<12} {median(runs, 'http_s'):>7.2f}s {median(runs, 'content_s'):>8.2f}s "
                  f"{median(runs, 'rss_mib'):>6.0f} MiB")
    if not theirs:
        print("LlamaBoard: llamafactory-cli is not installed here (pip install llamafactory), not measured")
    else:
        ratio = median(theirs, "content_s") / median(ours, "content_s")
        print(f"content shown {ratio:.1f}× faster than LlamaBoard (target ≥ {TARGETS['content_vs_llamaboard']:g}×)")
    print(f"app memory {median(ours, 'rss_mib'):.0f} MiB (target ≤ {TARGETS['rss_mib']} MiB)")


if __name__ == "__main__":
    main()
