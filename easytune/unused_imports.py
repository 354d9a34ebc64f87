"""Libraries the training stack imports by itself though nothing EasyTune does calls them: left out of every
EasyTune process, before anything imports transformers or peft, they cost no start-up time.

transformers imports scikit-learn (for assisted generation's confidence threshold) and peft imports bitsandbytes
(for 4-bit layers) whenever they are installed. Measured on 2 cores of an AMD EPYC: importing torch, transformers
and peft takes 7.0 s of CPU with both, 4.9 s without, in every training run, evaluation, chat and export. An
entry of None in sys.modules makes an import fail and importlib.util.find_spec answer None, which is how both
libraries check for these optional ones.
"""

from __future__ import annotations

import os
import shutil
import sys

# bitsandbytes' 4-bit layers run on an NVIDIA or AMD GPU only: these are where a driver for one shows
# (Linux's NVIDIA module, ROCm's device, WSL's GPU; nvidia-smi comes with the driver on Windows too).
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def leave_out_unused() -> list[str]:
    """Leave the unused libraries out of this process, unless something has already imported them; return them."""
    unused = ["sklearn"]  # nothing EasyTune runs uses assisted generation
    if not gpu_driver_present():  # QLoRA cannot run here (easytune.train.worker says so): no 4-bit layers
        unused.append("bitsandbytes")
    left_out = [name for name in unused if name not in sys.modules]
    sys.modules.update(dict.fromkeys(left_out))
    return left_out


def gpu_driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DRIVER_PATHS) or shutil.which("nvidia-smi") is not None
