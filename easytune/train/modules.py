"""Which linear layers LoRA adapts, found from the loaded model's structure.

An adapter on the upper blocks alone (plan setting lora_layers) leaves nothing below them to train, so the
backward pass stops at the first adapted block. Measured on SmolLM2-135M-Instruct with the facts benchmark
(python -m easytune.evaluation.bench_facts, the domain plan): on the upper half, training took 148–159 s
instead of 231–243 s and the facts as taught read 37–40 of 40, but the facts asked in other words 23, 18 and
20 of 40 (seeds 42, 7, 1) against 26, 20 and 23 on every block; with 8 passes instead of 6 (seed 42), 22, and
19 of 50 general answers (base 26). So plans keep every block, and the setting is a choice for speed.
"""

from __future__ import annotations

import re

BLOCK = re.compile(r"\.(\d+)\.")  # the block a layer sits in: model.layers.15.self_attn.q_proj


def lora_targets(model, scope: str, layers: float = 1.0):
    """peft target_modules for a scope (all linear layers, the attention projections, or the feed-forward ones)
    in the top `layers` share of the model's blocks, the ones nearest the output (1: every block)."""
    if scope == "all_linear" and layers >= 1:
        return "all-linear"  # peft's own rule: every linear layer but the output head
    from easytune.models.inspect import group_linear_layers, linear_module_names

    if layers >= 1:
        groups, _ = linear_module_names(model)
        return sorted(groups[scope])
    key = "role" if scope == "attention_qkv" else "group"
    names = [row["name"] for row in group_linear_layers(model) if scope == "all_linear" or row[key] == scope]
    block = {name: at for name in names if (at := block_of(name)) is not None}
    count = 1 + max(block.values(), default=-1)
    first = count - max(1, round(layers * count))  # at least the top block
    return sorted(name for name, at in block.items() if at >= first)


def block_of(name: str) -> int | None:
    """The block a layer of this name sits in (None outside the blocks)."""
    match = BLOCK.search(name)
    return int(match.group(1)) if match else None


def blocks_of(names) -> set[int]:
    """The blocks that layers of these names sit in."""
    return {at for name in names if (at := block_of(name)) is not None}
