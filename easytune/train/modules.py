"""Which linear layers LoRA adapts, found from the loaded model's structure."""

from __future__ import annotations


def lora_targets(model, scope: str):
    """peft target_modules for a scope: all linear layers, or the attention projections only."""
    if scope == "all_linear":
        return "all-linear"  # peft's own rule: every linear layer but the output head
    from easytune.models.inspect import linear_module_names

    groups, _ = linear_module_names(model)
    return sorted(groups["attention_qkv" if scope == "attention_qkv" else "attention"])
