"""Every EasyTune process leaves out the libraries the training stack would import for nothing: scikit-learn
always, bitsandbytes where no GPU driver could run its 4-bit layers. A training run, an evaluation, a chat and
an export each start two seconds sooner, and bitsandbytes' CPU warning stays out of their logs."""

from __future__ import annotations

import json
import subprocess
import sys

from easytune.deferred_imports import gpu_driver_present

LOADED = "print(json.dumps(sorted(m for m in ('sklearn', 'bitsandbytes') if sys.modules.get(m))))"


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_the_training_stack_loads_without_them():
    out = run("import json, sys, easytune, peft, transformers.generation; "
              "from easytune.models.hardware import probe; assert probe().four_bit is False or probe().cuda; "
              + LOADED)
    loaded = json.loads(out.stdout.splitlines()[-1])
    assert loaded == ([] if not gpu_driver_present() else ["bitsandbytes"]), loaded
    assert "gemm_4bit" not in out.stderr, out.stderr  # bitsandbytes' "Failed to load CPU gemm_4bit_forward"


def test_a_library_imported_before_easytune_stays():
    out = run("import json, sys, sklearn, easytune, transformers.generation; " + LOADED)
    assert "sklearn" in json.loads(out.stdout.splitlines()[-1])
