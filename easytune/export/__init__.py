"""Export a finished job: merged safetensors, LoRA adapter package, OpenVINO INT8 / INT4, GGUF (F16, Q8_0,
Q4_K_M, LoRA adapter) — each checked against the trained model before it is offered, each with a model card.

formats.py  every format once: writer, check, tolerance, disk, availability
service.py  export_job / list_exports / remove_export and the `exports` table
build.py    merged, adapter, OpenVINO writers   gguf.py / gguf_lora.py  the GGUF writers
llamacpp.py llama.cpp itself: quantise, load, answer   verify.py  does the export answer like the job model?
answers.py  ask the same questions, compare answers   gguf_read.py  a GGUF file's header, model and tokenizer
card.py     the model card (README.md)          apps.py  hand a GGUF export to LM Studio or Ollama
gguf_chat.py  how chat and serve answer a GGUF export: llama.cpp where installed, else transformers
"""

from easytune.export.formats import FORMATS, NAMES

__all__ = ["FORMATS", "NAMES", "export_job", "list_exports", "remove_export"]


def __getattr__(name: str):
    # The service (and the database library under it) is loaded on first use: the CLI's parser reads the
    # format names from here for every command.
    if name in ("export_job", "list_exports", "remove_export"):
        from easytune.export import service

        return getattr(service, name)
    raise AttributeError(name)
