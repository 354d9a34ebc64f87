"""Heavy libraries that other libraries import at start-up for type checks EasyTune never needs.

pandas, with pyarrow under it, holds about 75 MiB and takes half a second to import. Gradio imports it at
start-up for its result cache's hashing, sqlite-utils to give pandas timestamps a column type; the app stores
no pandas object and hands its tables to Gradio as lists (ui/table.py). So the app's process loads pandas
only when something really uses it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import sys
import types


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
