"""The built-in tiny model in assets/tiny-model: safe files, sane size, Chinese coverage, chat template."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "assets" / "tiny-model"

CONVERSATION = [
    {"role": "system", "content": "你是一个乐于助人的助手。"},
    {"role": "user", "content": "你们满多少包邮？"},
    {"role": "assistant", "content": "全场满99元包邮。"},
    {"role": "user", "content": "How long does delivery take?"},
    {"role": "assistant", "content": "Usually 3 to 5 days."},
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY)


@pytest.fixture(scope="module")
def model():
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(TINY, use_safetensors=True).eval()


def test_weights_are_one_small_safetensors_file():
    weights = TINY / "model.safetensors"
    assert weights.is_file()
    assert weights.stat().st_size < 10 * 1024 * 1024
    with weights.open("rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    assert any(k.endswith("embed_tokens.weight") for k in header)
    pickles = [p.name for p in TINY.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    assert pickles == []
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
    ):
        assert (TINY / name).is_file(), name


def test_config_and_model(model):
    config = model.config
    assert config.model_type == "llama"
    assert config.hidden_size >= 128
    assert config.num_key_value_heads < config.num_attention_heads
    assert config.tie_word_embeddings
    n_params = sum(p.numel() for p in model.parameters())
    assert 500_000 < n_params < 3_000_000


def test_special_tokens_and_generation_config(model, tokenizer):
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id == im_end
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.pad_token_id == eot
    assert model.generation_config.eos_token_id == im_end
    assert model.generation_config.pad_token_id == eot
    assert len(tokenizer) <= model.config.vocab_size


def test_chinese_is_covered_character_by_character(tokenizer):
    sentence = "今天天气很好，我们一起去公园散步吧。"
    ids = tokenizer.encode(sentence, add_special_tokens=False)
    # One token per character: no character falls back to raw byte pieces.
    assert len(ids) == len(sentence)
    assert tokenizer.decode(ids) == sentence
    mixed = "星河小铺满99元包邮，客服热线400-820-1234。Hello, world!"
    assert tokenizer.decode(tokenizer.encode(mixed, add_special_tokens=False)) == mixed


def test_chat_template_prefix_property(tokenizer):
    for k, message in enumerate(CONVERSATION):
        if message["role"] != "assistant":
            continue
        prompt = tokenizer.apply_chat_template(CONVERSATION[:k], add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(CONVERSATION[: k + 1], tokenize=False)
        assert full.startswith(prompt) and len(full) > len(prompt)
        assert full[len(prompt) :].startswith(message["content"] + "<|im_end|>")
        prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
        full_ids = tokenizer.encode(full, add_special_tokens=False)
        assert full_ids[: len(prompt_ids)] == prompt_ids


def test_greedy_chat_answer_ends_with_im_end(model, tokenizer):
    import torch

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "中国的首都是哪里？"}], add_generation_prompt=True, tokenize=False
    )
    ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=48, do_sample=False)
    new = out[0, ids.shape[1] :].tolist()
    assert tokenizer.eos_token_id in new
    answer = tokenizer.decode(new[: new.index(tokenizer.eos_token_id)])
    assert answer.strip() and "\ufffd" not in answer
