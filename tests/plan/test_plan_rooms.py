"""The planner's rooms: the inputs are read once into a frozen context, the decisions hand on what later
ones need as values, and the rules are the typed intents."""

from __future__ import annotations

import dataclasses

import pytest

from easytune.models.catalog import get_entry
from easytune.plan.decisions.data import Split, decide_validation
from easytune.plan.decisions.length import StepTokens, decide_seq_len
from easytune.plan.decisions.memory import decide_batch, decide_method, training_dtype
from easytune.plan.decisions.schedule import train_examples
from easytune.plan.draft import Draft
from easytune.plan.inputs import build_context
from easytune.plan.rules import load_intents

GIB = 1024**3
SEVEN_B = get_entry("qwen2.5-7b-instruct").to_dict()
GPU24 = {"cuda": [{"index": 0, "name": "24 GB GPU", "total_memory": 24 * GIB, "bf16": True}], "mps": False,
         "xpu": [], "cpu_physical": 8, "cpu_logical": 16, "ram_total": 64 * GIB, "disk_free": 500 * GIB}
CPU = {"cuda": [], "mps": False, "xpu": [], "cpu_physical": 4, "cpu_logical": 8, "ram_total": 16 * GIB,
       "disk_free": 100 * GIB}


def stats(rows: int, kind: str = "sft", *, p90: int = 180, p99: int = 300, mean: float = 100.0) -> dict:
    return {"shape": "openai", "kinds": {kind: rows}, "rows_usable": rows, "splits": {},
            "quality": {"tokens": {"p90": p90, "p99": p99, "mean": mean, "estimated": False}}}


def context(**kw):
    args = dict(task="chat", level="L2", model="m", dataset="d", model_info=SEVEN_B, data_stats=stats(5_000),
                hardware=GPU24)
    return build_context(load_intents(), **{**args, **kw})


def test_the_context_is_frozen_and_holds_the_machine_as_the_user_set_it():
    ctx = context()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.device = "cpu"
    assert ctx.device == "cuda" and ctx.bf16 and ctx.memory and ctx.gpus == 1
    assert ctx.task_rules is ctx.rules.tasks["chat"] and ctx.level_rules is ctx.rules.levels["L2"]
    on_cpu = context(overrides={"device": "cpu"})
    assert on_cpu.device == "cpu" and on_cpu.overrides == {"device": "cpu"}
    unknown = context(hardware=None)
    assert unknown.device is None and unknown.memory is None
    asked_gpu = context(hardware=CPU, overrides={"device": "cuda"})
    assert asked_gpu.device == "cuda" and asked_gpu.memory is None  # a GPU this machine does not have


def test_the_split_is_returned_not_left_on_an_object():
    ctx = context(data_stats=stats(500))
    draft = Draft(overrides={})
    split = decide_validation(ctx, draft)
    assert split == Split(train_rows=450, val_rows=50, size_row=ctx.rules.data_size[1])
    assert draft.values["val_ratio"] == 0.1 and draft.values["keep_best"] is True
    assert decide_validation(context(data_stats=None), Draft(overrides={})) == Split(None, None, None)


def test_rows_shortened_for_memory_compute_fewer_tokens():
    """On a 1 GB device a 7B model's long rows do not fit: the batch decision shortens them and hands on the
    tokens a step really computes."""
    tiny_gpu = {**GPU24, "cuda": [{"index": 0, "name": "small", "total_memory": GIB, "bf16": True}]}
    ctx = context(data_stats=stats(5_000, p90=3_000, p99=4_000, mean=2_500.0), hardware=tiny_gpu)
    draft = Draft(overrides={})
    split = decide_validation(ctx, draft)
    draft.set("num_processes", 1, "planner.reason.processes_one")
    load = decide_seq_len(ctx, draft)
    decide_method(ctx, draft)
    draft.set("precision", "auto", "planner.reason.precision_bf16")
    for name, value in {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all_linear"}.items():
        draft.set(name, value, "planner.reason.default")
    planned = draft.values["max_seq_len"]
    after = decide_batch(ctx, draft, split, load, world=1)
    assert isinstance(after, StepTokens)
    assert draft.values["max_seq_len"] < planned and after.padded <= draft.values["max_seq_len"] < load.padded


def test_the_dtype_follows_the_user_until_the_plan_decides():
    ctx = context(overrides={"precision": "fp16"})
    assert training_dtype(ctx, {}) == "fp16"
    assert training_dtype(context(), {}) == "bf16"  # "auto" on a bf16 GPU
    assert training_dtype(context(), {"precision": "fp32"}) == "fp32"


def test_an_epoch_holds_the_mixed_in_general_text():
    ctx = context()
    split = Split(train_rows=700, val_rows=0, size_row=None)
    assert train_examples(ctx, {"max_seq_len": 512, "retention_ratio": 0.3}, split) == 1_000
    assert train_examples(ctx, {"max_seq_len": 512, "retention_ratio": 0.0}, Split(None, None, None)) is None


def test_a_level_has_one_rank_range_and_no_second_rank():
    for rule in load_intents().levels.values():
        assert not hasattr(rule, "lora_r")
        assert rule.rank("lower") == rule.r_range[0] and rule.rank("upper") == rule.r_range[1]
