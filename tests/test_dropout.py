"""LoRA dropout from random bytes drops the plan's share of values, evenly over the positions, keeps the
expected activation, passes the gradient through the same mask, and replaces peft's dropout layers."""

import pytest
import torch
from torch import nn

from easytune.train.dropout import ByteDropout, use_byte_dropout
from support import ROOT


def test_the_drop_rate_is_the_plans_rounded_to_a_byte_and_even_over_positions():
    torch.manual_seed(0)
    layer = ByteDropout(0.05).train()
    assert layer.p == 13 / 256
    x = torch.ones(1 << 20)
    dropped = layer(x) == 0
    assert dropped.float().mean().item() == pytest.approx(13 / 256, abs=0.002)
    by_byte = dropped.view(-1, 8).float().mean(0)  # each byte of a 64-bit draw: none is biased
    assert by_byte.min().item() > 0.045 and by_byte.max().item() < 0.057
    assert layer(x).mean().item() == pytest.approx(1.0, abs=0.005)  # kept values scaled by 1 / (1 - p)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_gradient_flows_through_the_same_mask(dtype):
    torch.manual_seed(1)
    layer = ByteDropout(0.1).train()
    x = torch.randn(4, 33, 17, dtype=dtype, requires_grad=True)  # an odd size: the last draw is cut
    y = layer(x)
    y.sum().backward()
    kept = y != 0
    assert y.dtype == dtype and 0 < (~kept).sum() < x.numel()
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))
    assert torch.allclose(x.grad[kept].float(), torch.full_like(x.grad[kept].float(), 1 / (1 - layer.p)), rtol=1e-2)


def test_evaluation_and_a_zero_rate_leave_the_input_untouched():
    x = torch.randn(8, 8)
    assert ByteDropout(0.05).eval()(x) is x
    assert ByteDropout(0.0).train()(x) is x


def test_peft_dropout_layers_are_replaced_and_the_adapter_still_trains():
    from peft import LoraConfig, get_peft_model

    from easytune.models.sources import load_safe

    model = load_safe(ROOT / "assets" / "tiny-model", dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.05, target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    adapted = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)]
    assert use_byte_dropout(model) == len(adapted) > 0
    assert not any(type(m) is nn.Dropout and m.p > 0 for m in model.modules())
    model.train()
    ids = torch.randint(5, 200, (2, 16))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
