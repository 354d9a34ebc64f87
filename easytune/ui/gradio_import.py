"""Gradio imported for serving the app: without pandas, and without the upkeep of its source files.

Each time Gradio is imported it defines some eighty component classes, and for each it reads and parses the
class's source file and its type stub (.pyi) and rewrites the stub if it differs, then renders the docstring
of each of the class's events through a Jinja template: about 0.7 s of a 1.35 s import here, for stubs an
editor reads and docstrings `help()` shows. Neither is used by a running app, and rewriting files in the
installed package is writing outside the user's home and chosen folders, which the app never does.
"""

from __future__ import annotations

import contextlib
import types

from easytune.deferred_imports import amended, deferred


@contextlib.contextmanager
def gradio_for_serving():
    """A block in which a first import of Gradio leaves out pandas and its start-up upkeep."""
    with deferred("pandas"), amended("gradio.component_meta", _without_upkeep):
        yield


def _without_upkeep(component_meta: types.ModuleType) -> None:
    # Each name is looked up when a class is defined; a Gradio without them simply keeps its own behaviour.
    if hasattr(component_meta, "create_or_modify_pyi"):
        component_meta.create_or_modify_pyi = _nothing
    listener = getattr(component_meta, "EventListener", None)
    if listener is not None and hasattr(listener, "set_doc"):
        listener.set_doc = _nothing


def _nothing(*_args, **_kwargs) -> None:
    return None
