"""Fixtures for the model tests: a tiny model folder and a private Hugging Face cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from models_helpers import save_tiny_llama


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A complete tiny Llama folder: config.json, tokenizer files, model.safetensors (bf16)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty private Hugging Face cache, selected through HF_HUB_CACHE."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return cache
