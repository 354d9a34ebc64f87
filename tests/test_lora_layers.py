"""The adapter on the upper layers alone (plan setting lora_layers, train/modules.py): the blocks it reaches, a
real run that trains those alone and says so, and the time the plan expects of it (the planner's choice:
tests/plan/test_planner.py)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from easytune.train.modules import blocks_of, lora_targets
from support import ROOT, cli_json, write_plan


@pytest.fixture
def tiny_model():
    from easytune.models.sources import load_safe

    return load_safe(ROOT / "assets" / "tiny-model", dtype=torch.float32)


def test_the_upper_half_is_the_blocks_nearest_the_output(tiny_model):
    assert lora_targets(tiny_model, "all_linear") == "all-linear"
    upper = lora_targets(tiny_model, "all_linear", 0.5)
    from easytune.models.inspect import group_linear_layers

    assert blocks_of(row["name"] for row in group_linear_layers(tiny_model)) == {0, 1, 2, 3}  # 4 blocks
    assert blocks_of(upper) == {2, 3}
    assert {name.rsplit(".", 1)[1] for name in upper} == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"}
    qkv = lora_targets(tiny_model, "attention_qkv", 0.5)
    assert blocks_of(qkv) == {2, 3} and {name.rsplit(".", 1)[1] for name in qkv} == {"q_proj", "k_proj", "v_proj"}
    assert blocks_of(lora_targets(tiny_model, "all_linear", 0.05)) == {3}  # never none


def test_the_feed_forward_scope_adapts_the_feed_forward_projections_alone(tiny_model):
    from easytune.models.estimate import as_shape, lora_parameters
    from easytune.models.inspect import target_modules

    assert lora_targets(tiny_model, "feed_forward") == ["down_proj", "gate_proj", "up_proj"]
    upper = lora_targets(tiny_model, "feed_forward", 0.5)
    assert blocks_of(upper) == {2, 3}
    assert {name.rsplit(".", 1)[1] for name in upper} == {"gate_proj", "up_proj", "down_proj"}
    info = {"linear_modules": {"attention": ["q_proj", "o_proj"], "feed_forward": ["up_proj", "down_proj"]}}
    assert target_modules(info, "feed_forward") == ["down_proj", "up_proj"]
    shape = as_shape(json.loads((ROOT / "assets" / "tiny-model" / "config.json").read_text()))
    assert 0 < lora_parameters(shape, 8, "feed_forward") < lora_parameters(shape, 8, "all_linear")


def test_a_run_on_the_upper_half_trains_those_blocks_alone_and_says_so(tmp_path):
    job = cli_json("train", "--config", str(write_plan(tmp_path / "plan.yaml", lora_layers=0.5, max_steps=3)),
                   home=tmp_path / "home")
    assert job["state"] == "COMPLETED", job
    adapter = next(Path(job["job_dir"], "adapter").glob("*.safetensors"))
    with safe_open(str(adapter), "pt") as saved:
        names = list(saved.keys())
        moved = [name for name in names if "lora_B" in name and saved.get_tensor(name).abs().sum() > 0]
    assert blocks_of(names) == {2, 3} and moved  # the upper blocks' adapters, and they trained
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    assert [e["params"] for e in events if e.get("key") == "train.log.lora_layers"] == [{"first": 3, "count": 4}]
