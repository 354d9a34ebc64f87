"""The training stack (torch, transformers), imported once per process, one thread at a time.

transformers resolves its names lazily: `from transformers import AutoConfig` imports submodules on first use.
Two of the app's threads doing that at the same moment (planning in one tab, a chat loading in another) can
each meet the other's half-imported module and fail with "cannot import name 'AutoConfig' from
'transformers'". Every function that loads or reads a model calls `import_stack()` first: the first call
resolves the names the app uses under a lock, and after it every such import is a dictionary lookup.
The app never calls it at start-up (it costs seconds and memory before anything is asked)."""

from __future__ import annotations

import threading

_lock = threading.Lock()
_done = False

# the names the app's threads import (the training subprocess is single-threaded and needs none of this)
APP_NAMES = ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer", "CONFIG_MAPPING", "PreTrainedTokenizerFast",
             "StoppingCriteriaList", "TextIteratorStreamer")


def import_stack() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import torch  # noqa: F401  (transformers imports it anyway; first, so its own import is whole)
        import transformers

        for name in APP_NAMES:
            getattr(transformers, name)
        # transformers draws a bar of every model's weights loading (a second or less here), into the terminal of
        # `easytune chat` or `eval` and into a job's worker log as a line of carriage returns: nobody reads it
        transformers.utils.logging.disable_progress_bar()
        _done = True
