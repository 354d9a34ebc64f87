"""GGUF files EasyTune cannot use are refused with the reason, never a traceback, and leave nothing behind."""

from __future__ import annotations

import numpy as np

from support import cli


def write_gguf(path, architecture: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny test model")
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_an_architecture_transformers_cannot_read_is_named(home, tmp_path):
    model = tmp_path / "rwkv.gguf"
    write_gguf(model, "rwkv6")
    for lang, words in (("en", "cannot read from GGUF"), ("zh", "无法从 GGUF 读取")):
        refused = cli("models", "add", str(model), home=home, check=False, lang=lang)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
        assert "rwkv6" in refused.stderr and words in refused.stderr and "llama" in refused.stderr
    assert not [p for p in (home / "models").iterdir()] if (home / "models").exists() else True
    assert "rwkv" not in cli("models", "list", home=home).stdout


def test_a_damaged_gguf_file_is_refused(home, tmp_path):
    model = tmp_path / "cut.gguf"
    write_gguf(model, "llama")
    model.write_bytes(model.read_bytes()[:40])  # a copy that stopped early
    refused = cli("models", "add", str(model), home=home, check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "copy or download it again" in refused.stderr
