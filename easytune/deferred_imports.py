"""Heavy libraries that other libraries import at start-up for type checks EasyTune never needs, and work
they do on import that it never uses.

pandas, with pyarrow under it, holds about 75 MiB and takes half a second to import. Gradio imports it at
start-up for its result cache's hashing, sqlite-utils to give pandas timestamps a column type; the app stores
no pandas object and hands its tables to Gradio as lists (ui/table.py). So the app's process loads pandas
only when something really uses it.

Two more are left out of EasyTune's own processes for good (easytune/__init__.py, before anything imports
transformers or peft; a program of the user's that imports EasyTune keeps them): transformers imports
scikit-learn for assisted generation's confidence threshold, and peft imports bitsandbytes for its 4-bit layers,
whenever they are installed. Measured on 2 cores of an AMD EPYC: importing torch, transformers and peft takes
7.0 s of CPU with both, 4.9 s without, in every training run, evaluation, chat and export. The same processes
keep out the notices libraries print on import for their own developers (quiet_library_notices).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import types
import warnings
from collections.abc import Callable


@contextlib.contextmanager
def deferred(name: str):
    """Modules imported inside the block that import `name` get a stand-in, which imports the real module
    at their first use of it. After the block, `name` is not imported, as before: libraries that use it
    only when it is already loaded (plotly) go on without it."""
    if name in sys.modules:
        yield
        return
    stand_in = types.ModuleType(name)
    stand_in.__spec__ = importlib.machinery.ModuleSpec(name, None)

    def __getattr__(attr: str):
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]
        return getattr(importlib.import_module(name), attr)

    stand_in.__getattr__ = __getattr__
    sys.modules[name] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


# bitsandbytes' 4-bit layers run on an NVIDIA or AMD GPU only: these are where a driver for one shows
# (Linux's NVIDIA module, ROCm's device, WSL's GPU; nvidia-smi comes with the driver on Windows too).
GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")


def leave_out_unused() -> list[str]:
    """Make the libraries nothing EasyTune runs uses look uninstalled to this process (None in sys.modules: an
    import fails, importlib.util.find_spec answers None, which is how both libraries check for them), unless
    something has imported them already; return those left out."""
    unused = ["sklearn"]  # EasyTune never generates with an assistant model
    if not gpu_driver_present():  # QLoRA cannot run here (easytune.train.worker says so): no 4-bit layers
        unused.append("bitsandbytes")
    left_out = [name for name in unused if name not in sys.modules]
    sys.modules.update(dict.fromkeys(left_out))
    return left_out


# Notices libraries print on import for their own users, which a user of EasyTune can do nothing about: EasyTune
# chooses the versions (pyproject.toml). (category, the start of the message)
LIBRARY_NOTICES = (
    # peft 0.22 on transformers below 5.6, which optimum-intel 2.2 keeps: wherever an adapter trains or loads
    (FutureWarning, "Support for Transformers < "),
)


def quiet_library_notices() -> None:
    """Keep the notices above out of the terminal, the app's log and every job's worker log."""
    for category, message in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=re.escape(message), category=category)


def own_process() -> bool:
    """Whether this process is one of EasyTune's: the `easytune` command or `python -m easytune...` (the app, the
    CLI, a training worker), not a notebook or a script of the user's, which may well use scikit-learn."""
    argv = getattr(sys, "orig_argv", sys.argv)  # (sys.argv[0] reads "-m" while the package is being imported)
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1].split(".")[0] == "easytune"
    return bool(sys.argv) and os.path.splitext(os.path.basename(sys.argv[0]))[0] == "easytune"


def gpu_driver_present() -> bool:
    return any(os.path.exists(path) for path in GPU_DRIVER_PATHS) or shutil.which("nvidia-smi") is not None


@contextlib.contextmanager
def hidden(name: str):
    """Imports inside the block see `name` as not installed: for a library whose use of it is optional."""
    before = sys.modules.get(name)
    sys.modules[name] = None  # `import name` raises ImportError while this stands
    try:
        yield
    finally:
        if before is None:
            del sys.modules[name]
        else:
            sys.modules[name] = before


@contextlib.contextmanager
def amended(name: str, amend: Callable[[types.ModuleType], None]):
    """If the block imports `name`, `amend(module)` runs right after the module's own code, before anything
    imported later can use it: for a library that does, on import, work this process never needs."""
    if name in sys.modules:
        yield
        return
    finder = _AmendOnLoad(name, amend)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


class _AmendOnLoad(importlib.abc.MetaPathFinder):
    def __init__(self, name: str, amend: Callable[[types.ModuleType], None]):
        self.name, self.amend = name, amend

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # once, and so that the lookup below finds the module itself
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            self.amend(module)

        spec.loader.exec_module = exec_module
        return spec
