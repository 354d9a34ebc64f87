"""A GGUF file read back: which file in an export folder, what its header declares, and the model and
tokenizer in it. The export check and the app's chat both read GGUF files this one way.
"""

from __future__ import annotations

from pathlib import Path


def gguf_file(folder: Path) -> Path:
    """The export's .gguf (a hidden one is a check's scratch file, never the export)."""
    return next(path for path in sorted(Path(folder).glob("*.gguf")) if not path.name.startswith("."))


def load_gguf(folder: Path):
    return load_gguf_file(gguf_file(folder))


def gguf_declared_type(path: Path) -> str:
    """general.type of a GGUF file: "model" (also where it is not written), or "adapter"."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.type")
    return field.contents() if field is not None else "model"


def load_gguf_file(path: Path):
    """(model, tokenizer) of a GGUF file: the weights through transformers' GGUF loader, the tokenizer
    rebuilt from the file's metadata by EasyTune's GGUF reader (easytune.models.gguf_tokenizer, what
    `easytune models add` uses) — transformers' own reader builds a byte-level Llama tokenizer as
    SentencePiece, and cannot read one without a BOS token at all."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = gguf_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer


def gguf_tokenizer(path: Path):
    """The tokenizer of a GGUF file, rebuilt from its metadata (with its chat template)."""
    import gguf

    from easytune.models.gguf_tokenizer import build_tokenizer, read_spec

    return build_tokenizer(read_spec(gguf.GGUFReader(str(path))), str(path))


def gguf_file_type(path: Path) -> str | None:
    """The weight type the file's header declares (general.file_type), read by the gguf package's reader, as
    llama.cpp's name ("F16", "Q8_0", "Q4_K_M")."""
    import gguf

    field = gguf.GGUFReader(str(path)).fields.get("general.file_type")
    if field is None:
        return None
    return gguf.LlamaFileType(field.contents()).name.removeprefix("MOSTLY_").removeprefix("ALL_")
