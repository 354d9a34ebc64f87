"""EasyTune's own processes leave out the libraries the training stack would import for nothing: scikit-learn
always, bitsandbytes where no GPU driver could run its 4-bit layers. A training run, an evaluation, a chat and
an export each start two seconds sooner, and bitsandbytes' CPU warning stays out of their logs. A program of
the user's that imports EasyTune keeps both."""

from __future__ import annotations

import os
import subprocess
import sys

from easytune.deferred_imports import gpu_driver_present


def test_a_chat_from_the_command_line_loads_neither(tmp_path):
    env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "easytune.cli", "chat", "easytune-tiny",
                          "-q", "Hello", "--max-new-tokens", "4"], capture_output=True, text=True, env=env,
                         check=True)
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "transformers.generation" in imported  # whose candidate generator imports scikit-learn where it can
    assert not {name for name in imported if name.split(".")[0] == "sklearn"}
    assert gpu_driver_present() or not {name for name in imported if name.split(".")[0] == "bitsandbytes"}
    assert "gemm_4bit" not in out.stderr  # bitsandbytes' "Failed to load CPU gemm_4bit_forward"
    assert out.stdout.strip(), "and it answered"


def test_a_program_that_imports_easytune_keeps_them():
    code = "import easytune, peft, transformers.generation, sklearn.metrics; print(sklearn.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "sklearn"
