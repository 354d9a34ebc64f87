"""How a GGUF export answers in `easytune chat`, `easytune serve` and step ④'s chat: through llama.cpp itself
where llama-cpp-python is installed (the reader Ollama and LM Studio use, and the only one that keeps a
quantised file quantised in memory), otherwise through transformers' GGUF loader, as the export check reads it.

Either way the prompt is rendered, cut to fit and counted by the tokenizer rebuilt from the file's metadata,
as for every other chat target (the export check shows llama.cpp's own tokenizer encodes it alike), so a
greedy answer is the same through both engines.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from easytune.i18n import UserError

LLAMA_CPP, TRANSFORMERS = "llama.cpp", "transformers"
# llama.cpp sets its cache aside for the whole context up front (up to half a GB per thousand tokens on a 7B
# model), so a long-context model gets room for a conversation and a long answer, not its whole trained context.
CHAT_CONTEXT = 4096
SAMPLE_TOP_K = 50  # transformers' default when it samples: both engines then draw from the same candidates


def gguf_engine() -> str:
    """Which engine answers a GGUF export on this machine. The one place that decides it."""
    from easytune.export import llamacpp

    return LLAMA_CPP if llamacpp.installed() else TRANSFORMERS


@lru_cache(maxsize=2)
def load_gguf_export(path: str, engine: str):
    """(model, tokenizer) of a GGUF export's file for `engine`: a LlamaCppChatModel, or a transformers model.
    A LoRA adapter file answers only on its base. Cached."""
    from easytune.export.gguf_read import gguf_declared_type, gguf_tokenizer, load_gguf_file

    file = Path(path)
    if gguf_declared_type(file) == "adapter":
        raise UserError("chat.error.gguf_adapter", path=path)
    if engine == LLAMA_CPP:
        return LlamaCppChatModel(file), gguf_tokenizer(file)
    try:
        return load_gguf_file(file)
    # what transformers' loader raises for a weight type or architecture it cannot read (an unknown type
    # number, a type it cannot dequantise, an architecture it does not map)
    except (ValueError, NotImplementedError, KeyError) as exc:
        raise UserError("chat.error.gguf_needs_llama_cpp", path=path, detail=str(exc)[:300]) from exc


class LlamaCppChatModel:
    """A GGUF file loaded by llama.cpp for chat. `config.max_position_embeddings` and
    `generation_config.eos_token_id` are what chat reads of any model (to fit the prompt, to end the answer)."""

    def __init__(self, path: Path):
        from easytune.export import llamacpp

        llama_cpp = llamacpp.quiet()
        context = min(CHAT_CONTEXT, llamacpp.trained_context(path))
        self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=context, verbose=False)
        eos = self.llm.token_eos()
        self.config = SimpleNamespace(max_position_embeddings=context)
        self.generation_config = SimpleNamespace(eos_token_id=eos if eos >= 0 else None)

    def tokens(self, prompt_ids: list[int], *, temperature: float, top_p: float, max_new_tokens: int,
               eos_ids: list[int]):
        """The answer's token ids as llama.cpp samples them, the end-of-answer token included (as transformers'
        generate returns it); greedy at temperature 0. Stop reading to stop generating."""
        sampling = ({"temp": float(temperature), "top_p": float(top_p), "top_k": SAMPLE_TOP_K} if temperature > 0
                    else {"temp": 0.0})
        # min_p and the repeat penalty off: transformers applies neither, and the two engines must answer alike
        steps = self.llm.generate(prompt_ids, min_p=0.0, repeat_penalty=1.0, **sampling)
        for made, token in enumerate(steps, 1):
            yield token
            if token in eos_ids or made >= max_new_tokens:
                return
