"""llama.cpp itself, through the llama-cpp-python package where it is installed: its quantiser (Q4_K_M), and
its loader, which reads a GGUF export (and a LoRA adapter on it) the way Ollama and LM Studio do — for the
export check here, for chat and serve in gguf_chat.py.

The package is optional (it compiles llama.cpp from source on install): `installed()` says whether it is
there, and nothing here is imported before a GGUF export or its check asks for it.
"""

from __future__ import annotations

import ctypes
import logging
import time
from pathlib import Path

MODULE = "llama_cpp"
# Room for a check's prompt and answer (or the model's own context, where that is shorter): the cache
# llama.cpp sets aside grows with it.
CHECK_CONTEXT = 2048


def installed() -> bool:
    """Is llama-cpp-python there and working? (Imports it: for an export or its check, not for a listing.)"""
    from easytune.export.formats import module_usable

    return module_usable(MODULE)


def quiet():
    """llama.cpp's own log lines (every tensor it loads or quantises) kept out of the user's terminal."""
    import llama_cpp

    # CRITICAL: the package maps llama.cpp's warning level onto ERROR, and every tensor it falls back on warns
    logging.getLogger("llama-cpp-python").setLevel(logging.CRITICAL)
    return llama_cpp


def version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def quantize(source: Path, out: Path, ftype_name: str = "Q4_K_M", threads: int = 0) -> float:
    """llama.cpp's quantiser: the GGUF `source` (F16) rewritten as `out` with the weight mix `ftype_name`
    (llama.cpp's LLAMA_FTYPE_MOSTLY_<name>). Tensors whose rows do not fill its blocks get llama.cpp's own
    fallback type. Returns the seconds it took."""
    llama_cpp = quiet()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params.nthread = threads  # 0: llama.cpp picks
    started = time.perf_counter()
    failed = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if failed:
        raise RuntimeError(f"llama.cpp could not quantise {source.name} to {ftype_name} (code {failed})")
    return time.perf_counter() - started


def trained_context(path: Path) -> int:
    """The context length the GGUF file's metadata gives its model."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"].contents()
    return int(reader.fields[f"{arch}.context_length"].contents())


class LlamaCppModel:
    """A GGUF file (and optionally a LoRA adapter GGUF on it) loaded by llama.cpp, asked greedily."""

    def __init__(self, model_path: Path, lora_path: Path | None = None, threads: int | None = None):
        llama_cpp = quiet()
        options = {"lora_path": str(lora_path)} if lora_path else {}
        self.llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=min(CHECK_CONTEXT, trained_context(model_path)),
                                   n_threads=threads, logits_all=True, verbose=False, **options)

    def tokenize(self, text: str) -> list[int]:
        """Token ids of a rendered chat prompt, special tokens read as such and no BOS added (the chat template
        writes any it needs), as the check's reference encodes it."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def greedy(self, ids: list[int], eos_id: int | None, max_new_tokens: int) -> tuple[list[int], float]:
        """(answer ids, ending with eos_id when it stopped there, as transformers' generate returns them;
        seconds)."""
        import numpy as np

        started = time.perf_counter()
        self.llm.reset()
        self.llm.eval(ids)
        answer: list[int] = []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            answer.append(token)
            if token == eos_id:
                break
            self.llm.eval([token])
        return answer, time.perf_counter() - started

    def agreement(self, ids: list[int], answer: list[int]) -> int:
        """How many tokens of `answer` llama.cpp predicts when it reads the answer one token at a time."""
        import numpy as np

        if not answer:
            return 0
        self.llm.reset()
        self.llm.eval(ids + answer)
        predicted = np.argmax(self.llm.scores[len(ids) - 1:len(ids) + len(answer) - 1], axis=-1)
        return int((predicted == np.array(answer)).sum())

    def close(self) -> None:
        self.llm.close()
