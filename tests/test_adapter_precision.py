"""On a CPU that trains in bf16, the adapter's products run in bf16 too: the same loss, gradients that still
reach the fp32 adapter weights, and none of peft's fp32 copies of the activations."""

import pytest
import torch

from easytune.train.adapter_precision import applies, bf16_products
from easytune.train.packing import IGNORE, padded
from support import ROOT


@pytest.fixture(scope="module")
def model():
    from peft import LoraConfig, get_peft_model

    from easytune.models.sources import load_safe

    torch.manual_seed(0)
    base = load_safe(ROOT / "assets" / "tiny-model", dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    for name, weight in model.named_parameters():  # as after some training: the adapter changes the output
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.02)
    return model


def batch():
    generator = torch.Generator().manual_seed(0)
    rows = []
    for question, answer in ((7, 5), (12, 3), (4, 9)):
        ids = torch.randint(5, 200, (question + answer,), generator=generator).tolist()
        rows.append((ids, [IGNORE] * question + ids[question:]))
    return padded(rows, 0, "cpu")[0]


def step(model, cheap: bool):
    model.zero_grad(set_to_none=True)
    inputs = {}

    def seen(module, args):
        inputs.setdefault("dtype", args[0].dtype)

    hook = next(m for n, m in model.named_modules() if n.endswith("lora_A.default")).register_forward_pre_hook(seen)
    try:
        with bf16_products(model) if cheap else torch.enable_grad():
            loss = model(**batch(), use_cache=False).loss
        loss.backward()
    finally:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.item(), grads, inputs["dtype"]


def test_the_adapter_computes_in_bf16_with_the_same_loss_and_gradients(model):
    loss, grads, fed = step(model, cheap=False)
    cheap_loss, cheap_grads, cheap_fed = step(model, cheap=True)
    assert fed == torch.float32 and cheap_fed == torch.bfloat16  # peft's fp32 copy of the input is gone
    assert abs(cheap_loss - loss) <= 1e-3 * abs(loss)
    assert grads.keys() == cheap_grads.keys() and all("lora_" in n for n in grads)
    for name, grad in grads.items():
        assert cheap_grads[name].dtype == torch.float32  # the optimiser's weights and gradients stay fp32
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), cheap_grads[name].flatten(), dim=0)
        assert cosine > 0.99, name


def test_it_applies_to_adapters_trained_in_bf16_on_a_cpu_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert applies(cpu, torch.bfloat16, adapter=True)
    assert not applies(cpu, torch.float32, adapter=True)
    assert not applies(cpu, torch.bfloat16, adapter=False)  # a full fine-tune: every weight is bf16 already
    assert not applies(cuda, torch.bfloat16, adapter=True)
