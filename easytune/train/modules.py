"""Which linear layers LoRA adapts, found from the loaded model's structure."""

from __future__ import annotations


def lora_targets(model, scope: str):
    """peft target_modules for a scope: all linear layers, or the attention projections only."""
    if scope == "all_linear":
        return "all-linear"  # peft's own rule: every linear layer but the output head
    from easytune.models.inspect import grouped_linear_names

    groups = grouped_linear_names(model)
    names = groups["attention"]
    if scope == "attention_qkv":  # the output projection is the one that reads the attention result
        names = [n for n in names if n not in groups.get("attention_output", [])] or names
    return sorted(names)
