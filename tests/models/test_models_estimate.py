"""Memory estimator: structure-based numbers, checked against PEFT, autograd and a measured peak."""

from __future__ import annotations

import pytest
import torch

from easytune.i18n import t
from easytune.models.bench_memory import TINY, Case, measure
from easytune.models.catalog import get_entry, load_catalog
from easytune.models.estimate import (
    GIB,
    ModelShape,
    as_shape,
    estimate_memory,
    layer_activation_bytes,
    lora_parameters,
    verdict,
)

CATALOG = load_catalog()  # where verdict looks for a smaller model
SMALL = ModelShape(layers=2, hidden=128, intermediate=352, heads=4, kv_heads=2, vocab=1000)
LLAMA_TARGETS = {
    "attention_qkv": ["q_proj", "k_proj", "v_proj"],
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def llama(shape: ModelShape):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
        tie_word_embeddings=shape.tie_embeddings, use_cache=False))


@pytest.mark.parametrize("tie", [False, True])
def test_parameter_count_matches_the_model(tie):
    shape = ModelShape(**{**SMALL.to_dict(), "tie_embeddings": tie})
    assert shape.num_parameters == sum(p.numel() for p in llama(shape).parameters())


@pytest.mark.parametrize("scope", list(LLAMA_TARGETS))
def test_lora_parameter_count_matches_peft(scope):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(llama(SMALL), LoraConfig(r=8, target_modules=LLAMA_TARGETS[scope]))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_parameters(SMALL, 8, scope) == trainable


def _saved_bytes(model, tokens) -> int:
    """Bytes autograd keeps for the backward pass (distinct storages, weights excluded)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        model(input_ids=tokens, labels=tokens)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights)


@pytest.mark.parametrize("method, scope, dropout", [
    ("full", "all_linear", 0.0),
    ("lora", "all_linear", 0.0),
    ("lora", "all_linear", 0.1),
    ("lora", "attention", 0.0),
])
def test_activation_formula_matches_what_autograd_keeps(method, scope, dropout):
    """The per-layer formula, tensor by tensor, against the tensors autograd actually saves."""
    from peft import LoraConfig, get_peft_model

    shape = ModelShape(layers=3, hidden=128, intermediate=352, heads=4, kv_heads=2, vocab=1000)
    model = llama(shape)
    if method == "lora":
        config = LoraConfig(r=8, target_modules=LLAMA_TARGETS[scope], lora_dropout=dropout)
        model = get_peft_model(model, config)
    model.train()
    batch, seq = 2, 64
    saved = _saved_bytes(model, torch.randint(0, shape.vocab, (batch, seq)))
    per_layer = layer_activation_bytes(shape, method=method, target=scope, seq_len=seq, act_bytes=4, lora_r=8,
                                       lora_dropout=dropout, padded=False, attention="sdpa", device="cpu")
    head_saved = (shape.hidden * (3 if method == "full" else 1) + shape.vocab) * 4  # final norm, log-probs
    predicted = (shape.layers * sum(per_layer.values()) + head_saved) * batch * seq
    assert abs(predicted - saved) / saved < 0.08, (predicted, saved)


def test_estimate_breakdown_and_inputs():
    est = estimate_memory(get_entry("qwen2.5-0.5b-instruct"), "lora", 512, 2, False, "bf16", 16, "attention")
    data = est.to_dict()
    assert set(data) >= {"weights", "trainable", "activations", "overhead", "total", "peak_phase", "parts",
                         "method", "seq_len", "batch", "shape", "total_gib"}
    assert est.total <= est.weights + est.trainable + est.activations + est.overhead
    assert est.weights == pytest.approx(0.49e9 * 2, rel=0.01)
    shape = as_shape(get_entry("qwen2.5-0.5b-instruct"))
    assert est.trainable_params == lora_parameters(shape, 16, "attention")


def test_estimates_move_the_right_way():
    shape = get_entry("qwen2.5-1.5b-instruct")
    base = estimate_memory(shape, "lora", 1024, 4, False, "bf16", 16, "all_linear")
    assert estimate_memory(shape, "lora", 1024, 8, False, "bf16", 16, "all_linear").total > base.total
    assert estimate_memory(shape, "lora", 2048, 4, False, "bf16", 16, "all_linear").total > base.total
    assert estimate_memory(shape, "lora", 1024, 4, True, "bf16", 16, "all_linear").total < base.total
    qlora = estimate_memory(shape, "qlora", 1024, 4, False, "bf16", 16, "all_linear")
    full = estimate_memory(shape, "full", 1024, 4, False, "bf16", 16, "all_linear")
    assert qlora.weights < base.weights < full.weights + full.trainable
    assert estimate_memory(shape, "lora", 1024, 4, False, "bf16", 16, "attention").trainable < base.trainable


def test_seven_billion_on_16_gb_vs_80_gb():
    qwen7b = get_entry("qwen2.5-7b-instruct")
    est = estimate_memory(qwen7b, "lora", 1024, 4, False, "bf16", 16, "all_linear", device="cuda")
    small = verdict(est, 16 * GIB, catalog=CATALOG)
    assert small.status == "does_not_fit" and small.key == "models.verdict_does_not_fit"
    assert small.suggestions and small.suggestions[0].verdict == "fits"
    assert any("qlora" in str(s.change.get("method")) for s in small.suggestions if s.verdict == "fits")
    for suggestion in small.suggestions:
        assert suggestion.total < est.total
        for lang in ("zh", "en"):
            assert t(suggestion.key, lang, **suggestion.params)

    checkpointed = estimate_memory(qwen7b, "lora", 1024, 4, True, "bf16", 16, "all_linear", device="cuda")
    assert verdict(checkpointed, 80 * GIB, catalog=CATALOG).status == "fits"
    assert verdict(checkpointed, 80 * GIB, catalog=CATALOG).suggestions == []
    qlora = estimate_memory(qwen7b, "qlora", 1024, 1, True, "bf16", 16, "all_linear", device="cuda")
    assert verdict(qlora, 16 * GIB, catalog=CATALOG).status == "fits"
    full = estimate_memory(qwen7b, "full", 1024, 1, True, "bf16", 16, "all_linear", device="cuda")
    # bf16 weights, gradients and AdamW moments: 8 bytes a parameter before any activation
    assert full.weights + full.trainable == pytest.approx(7.62e9 * 8, rel=0.01)
    assert verdict(full, 80 * GIB, catalog=CATALOG).status in ("fits", "tight")
    assert verdict(full, 48 * GIB, catalog=CATALOG).status == "does_not_fit"
    text = t(small.key, "en", **small.params)
    assert "16.0" in text


def test_no_qlora_without_cuda_and_a_smaller_model_when_nothing_else_helps():
    qwen7b = get_entry("qwen2.5-7b-instruct")
    est = estimate_memory(qwen7b, "lora", 1024, 1, True, "fp32", 16, "all_linear", device="cpu")
    result = verdict(est, 8 * GIB, catalog=CATALOG)
    assert result.status == "does_not_fit"
    assert not any(s.change.get("method") == "qlora" for s in result.suggestions)
    smaller = [s for s in result.suggestions if s.key == "models.suggest_smaller_model"]
    assert smaller and smaller[0].verdict == "fits"
    entry = get_entry(smaller[0].change["model"])
    assert entry is not None and entry.params_b < qwen7b.params_b


def test_tight_band():
    est = estimate_memory(get_entry("qwen2.5-0.5b-instruct"), "lora", 512, 1, False, "bf16", 8, "attention")
    assert verdict(est, int(est.total / 0.95), catalog=CATALOG).status == "tight"
    assert verdict(est, int(est.total / 0.80), catalog=CATALOG).status == "fits"
    assert verdict(est, int(est.total * 0.9), catalog=CATALOG).status == "does_not_fit"


def test_every_catalog_model_has_an_estimate():
    for entry in load_catalog():
        est = estimate_memory(entry, "qlora", 1024, 1, True, "bf16", 16, "all_linear")
        assert 0 < est.total < 40 * GIB, entry.id


def test_estimate_within_20_percent_of_a_measured_peak():
    """A real subprocess runs LoRA training steps on a tiny random Llama and reports its peak RSS."""
    case = Case("tiny lora", TINY, "lora", seq_len=256, batch=4, steps=2)
    measured = measure(case, timeout=120)["measured"]
    estimate = case.estimate()
    predicted = estimate.total - estimate.parts["runtime"]
    assert abs(predicted - measured) / measured < 0.20, (predicted, measured)
