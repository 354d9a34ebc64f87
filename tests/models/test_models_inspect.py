"""Inspector: structure on the meta device, linear layers grouped by position, usable by PEFT."""

from __future__ import annotations

import json
import re

import pytest
import torch
from models_helpers import copy_model

from easytune.i18n import UserError
from easytune.models.inspect import inspect_config, inspect_model, target_modules

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             vocab_size=256)


def _configs():
    from transformers import (
        FalconConfig,
        GPT2Config,
        GPTNeoXConfig,
        LlamaConfig,
        Phi3Config,
        Qwen2Config,
        Qwen3Config,
    )

    return {
        "llama": (LlamaConfig(**SMALL, num_key_value_heads=2),
                  {"attention_qkv": {"q_proj", "k_proj", "v_proj"}, "attention_output": {"o_proj"},
                   "feed_forward": {"gate_proj", "up_proj", "down_proj"}}),
        "gpt2": (GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=256, n_positions=128),
                 {"attention_qkv": {"c_attn"}, "attention_output": {"attn.c_proj"},
                  "feed_forward": {"c_fc", "mlp.c_proj"}}),
        "qwen2": (Qwen2Config(**SMALL, num_key_value_heads=2),
                  {"attention_qkv": {"q_proj", "k_proj", "v_proj"}, "attention_output": {"o_proj"},
                   "feed_forward": {"gate_proj", "up_proj", "down_proj"}}),
        "qwen3": (Qwen3Config(**SMALL, num_key_value_heads=2, head_dim=16),
                  {"attention_qkv": {"q_proj", "k_proj", "v_proj"}, "attention_output": {"o_proj"},
                   "feed_forward": {"gate_proj", "up_proj", "down_proj"}}),
        "gpt_neox": (GPTNeoXConfig(**SMALL),
                     {"attention_qkv": {"query_key_value"}, "attention_output": {"dense"},
                      "feed_forward": {"dense_h_to_4h", "dense_4h_to_h"}}),
        "phi3": (Phi3Config(**SMALL, num_key_value_heads=4, pad_token_id=0),
                 {"attention_qkv": {"qkv_proj"}, "attention_output": {"o_proj"},
                  "feed_forward": {"gate_up_proj", "down_proj"}}),
        "falcon": (FalconConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=256),
                   {"attention_qkv": {"query_key_value"}, "attention_output": {"dense"},
                    "feed_forward": {"dense_h_to_4h", "dense_4h_to_h"}}),
    }


CONFIGS = _configs()


@pytest.mark.parametrize("family", list(CONFIGS))
def test_grouping_by_position(family):
    config, expected = CONFIGS[family]
    info = inspect_config(config)
    groups = info.linear_modules
    for key, names in expected.items():
        assert set(groups[key]) == names, (key, groups)
    assert set(groups["attention"]) == expected["attention_qkv"] | expected["attention_output"]
    assert groups["other"] == []
    every = {n for key in ("attention", "feed_forward", "other") for n in groups[key]}
    assert not any("lm_head" in n or "embed" in n or "wte" in n for n in every)
    assert info.num_layers == 2 and info.hidden_size == 64 and info.vocab_size == 256
    assert info.num_parameters > 0


def test_shape_numbers_from_structure():
    llama = inspect_config(CONFIGS["llama"][0])
    found = (llama.intermediate_size, llama.num_key_value_heads, llama.head_dim, llama.gated_mlp)
    assert found == (128, 2, 16, True)
    gpt2 = inspect_config(CONFIGS["gpt2"][0])
    assert (gpt2.intermediate_size, gpt2.num_key_value_heads, gpt2.gated_mlp) == (256, 4, False)
    falcon = inspect_config(CONFIGS["falcon"][0])  # multi-query: one key/value head in a fused layer
    assert falcon.num_key_value_heads == 1 and not falcon.gated_mlp
    phi3 = inspect_config(CONFIGS["phi3"][0])  # fused gate_up_proj is still a gated MLP
    assert phi3.gated_mlp and phi3.intermediate_size == 128
    assert inspect_config(CONFIGS["qwen3"][0]).qk_norm and not llama.qk_norm


def _adapted(model) -> set[str]:
    return {name for name, module in model.named_modules() if hasattr(module, "lora_A")}


@pytest.mark.parametrize("family", list(CONFIGS))
@pytest.mark.parametrize("scope", ["attention_qkv", "attention", "all_linear"])
def test_peft_lora_applies_with_resolved_names(family, scope):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config, _ = CONFIGS[family]
    info = inspect_config(config)
    names = target_modules(info, scope)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    linear_names = {r["name"] for r in info.first_block}
    wanted_roles = {"attention_qkv": {"attention_qkv"}, "attention": {"attention_qkv", "attention_output"},
                    "all_linear": {"attention_qkv", "attention_output", "feed_forward"}}[scope]
    wanted = {r["name"] for r in info.first_block if r["role"] in wanted_roles}
    assert wanted and wanted <= linear_names
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=names,
                                                  fan_in_fan_out=family == "gpt2"))
    adapted = _adapted(peft_model)
    # exactly the wanted layers of every block, nothing else (never the head, never the other group)
    by_block = {}
    for name in adapted:
        match = re.search(r"\.(\d+)\.(.+)$", name)
        assert match, name
        by_block.setdefault(int(match.group(1)), set()).add(match.group(2))
    assert set(by_block) == {0, 1}
    for block in by_block.values():
        assert block == wanted, (scope, block, wanted)
    out = peft_model(input_ids=torch.randint(0, 256, (1, 8)), labels=torch.randint(0, 256, (1, 8)))
    out.loss.backward()
    assert all(p.grad is not None for n, p in peft_model.named_parameters() if p.requires_grad)


def test_inspect_model_folder(tiny_model_dir):
    info = inspect_model(tiny_model_dir)
    data = info.to_dict()
    assert data["architecture"] == "LlamaForCausalLM" and data["model_type"] == "llama"
    assert data["num_layers"] == 2 and data["hidden_size"] == 64 and data["context_length"] == 256
    assert data["dtype"] == "bfloat16" and data["has_chat_template"] is True
    assert data["size_on_disk"] >= (tiny_model_dir / "model.safetensors").stat().st_size
    assert data["needs_remote_code"] is False and data["quantization"] is None
    expected_params = sum(p.numel() for p in __import__("safetensors.torch", fromlist=["load_file"])
                          .load_file(tiny_model_dir / "model.safetensors").values())
    assert data["num_parameters"] == expected_params  # untied head: every stored tensor counts
    assert set(data) >= {"architecture", "model_type", "num_parameters", "num_layers", "hidden_size",
                         "context_length", "dtype", "size_on_disk", "has_chat_template", "linear_modules"}
    assert set(data["linear_modules"]) == {"attention", "attention_qkv", "attention_output", "feed_forward",
                                           "other"}
    assert info.shape().num_parameters == expected_params


def test_inspect_without_chat_template_and_custom_code(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    tok = json.loads((folder / "tokenizer_config.json").read_text())
    tok.pop("chat_template", None)
    (folder / "tokenizer_config.json").write_text(json.dumps(tok))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    assert inspect_model(folder).has_chat_template is False

    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="my_custom_arch", auto_map={"AutoConfig": "custom.Config"})
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError) as excinfo:
        inspect_model(folder)
    assert excinfo.value.key == "models.remote_code_required"


def test_target_modules_validates_scope():
    info = inspect_config(CONFIGS["llama"][0])
    with pytest.raises(ValueError):
        target_modules(info, "everything")
    assert target_modules(info.to_dict(), "attention") == ["k_proj", "o_proj", "q_proj", "v_proj"]


def test_a_models_description_is_kept_until_its_folder_changes(tiny_model_dir, tmp_path):
    """Planning again on the same folder reads its description from cache/ without the training libraries; an
    edited config is read afresh."""
    import subprocess
    import sys

    from support import ROOT

    folder = copy_model(tiny_model_dir, tmp_path / "model")
    script = ("import json, sys; from pathlib import Path; from easytune.settings import load_settings; "
              "from easytune.models.registry import model_info; "
              f"info = model_info(load_settings(home=Path({str(tmp_path / 'home')!r})), {str(folder)!r}); "
              "print(json.dumps([info['context_length'], 'transformers' in sys.modules]))")

    def described() -> list:
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    context, _ = described()
    assert described() == [context, False]  # the second time: no transformers
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = context * 2
    (folder / "config.json").write_text(json.dumps(config))
    assert described() == [context * 2, True]
