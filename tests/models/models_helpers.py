"""Helpers for the model tests: a tiny model folder and a Hugging Face cache, both built locally."""

from __future__ import annotations

import json
import os
from pathlib import Path

TINY_LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=300, max_position_embeddings=256)
CHAT_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def save_tokenizer(folder: Path, chat_template: bool = True) -> None:
    """A small word-level tokenizer saved as tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for word in ["hello", "world", "user", "assistant", "system", "the", "a", "of", "to", "and", "is"]:
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<|im_end|>")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)


def save_tiny_llama(folder: Path, **overrides) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**{**TINY_LLAMA, **overrides})
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(folder)
    return folder


def copy_model(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name not in skip:
            (dst / item.name).write_bytes(item.read_bytes())
    return dst


def make_hf_cache(cache: Path, repo_id: str, src: Path, commit: str = "0123456789abcdef" * 2 + "01234567",
                  skip: tuple[str, ...] = ()) -> Path:
    """Lay out `src` as the hub cache does: blobs, a snapshot of links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    for index, item in enumerate(sorted(src.iterdir())):
        if item.name in skip or not item.is_file():
            continue
        blob = repo / "blobs" / f"blob{index:04d}"
        blob.write_bytes(item.read_bytes())
        link = snapshot / item.name
        try:
            link.symlink_to(os.path.relpath(blob, snapshot))
        except OSError:  # no symlinks (some Windows setups): the hub then copies too
            link.write_bytes(item.read_bytes())
    return snapshot


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")
