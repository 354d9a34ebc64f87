"""Continual versions: a new version learns in directions the earlier versions did not use (O-LoRA).

The earlier versions' adapter is kept, frozen, as the first rows of a larger adapter, and the new version
trains the rows after them. So the result is one ordinary LoRA adapter — chat, evaluation, export and resume
read it unchanged, and the base model stays this model with the adapter switched off — whose update is the
earlier versions' plus the new one's. While it trains, the new rows of each A matrix are pulled away from the
earlier rows by the orthogonality penalty weight · Σ‖A_new A_earlierᵀ‖² (O-LoRA, Wang et al., 2023): a new
task written into directions an earlier task's inputs do not excite disturbs that task less.

The new rows keep the plan's own rank and scale (alpha / r), so a continual version trains exactly as a plain
one would; the earlier rows' B columns are rescaled to that scale once, at the start.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER = "default"  # peft's name for the one adapter a run trains


def earlier_shape(folder: str | Path) -> tuple[int, float]:
    """(rank, lora_alpha) of a saved adapter."""
    config = json.loads((Path(folder) / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config["r"]), config["lora_alpha"]


def stacked_shape(earlier_rank: int, rank: int, alpha: float) -> tuple[int, float]:
    """(rank, lora_alpha) of the adapter holding the earlier rows and `rank` new ones at the plan's scale."""
    total = earlier_rank + rank
    stacked_alpha = alpha * total / rank
    return total, int(stacked_alpha) if float(stacked_alpha).is_integer() else stacked_alpha


class Stack:
    """The earlier versions' rows inside the training adapter: put in place, kept frozen, and pushed away from."""

    def __init__(self, model, folder: str | Path, weight: float):
        from safetensors.torch import load_file

        saved = load_file(str(Path(folder) / "adapter_model.safetensors"))
        self.rank, earlier_alpha = earlier_shape(folder)
        earlier_scale = earlier_alpha / self.rank
        self.weight = weight
        self.frozen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for name, module in model.named_modules():
            if not hasattr(module, "lora_A") or ADAPTER not in module.lora_A:
                continue
            key = name.replace(f".{ADAPTER}", "")  # peft saves without the adapter's name
            a, b = module.lora_A[ADAPTER].weight, module.lora_B[ADAPTER].weight
            saved_a, saved_b = saved.get(f"{key}.lora_A.weight"), saved.get(f"{key}.lora_B.weight")
            if saved_a is None or saved_b is None or saved_a.shape[0] != self.rank:
                from easytune.i18n import UserError

                raise UserError("train.error.adapter_mismatch", path=str(folder), name=key)
            scale = module.scaling[ADAPTER]
            with torch.no_grad():
                a[: self.rank] = saved_a.to(a.dtype)
                b[:, : self.rank] = (saved_b * (earlier_scale / scale)).to(b.dtype)
            self.frozen.append((a, b, a[: self.rank].detach().clone(), b[:, : self.rank].detach().clone()))
            a.register_hook(self._rows_frozen)
            b.register_hook(self._columns_frozen)
        if not self.frozen:
            from easytune.i18n import UserError

            raise UserError("train.error.adapter_mismatch", path=str(folder), name="lora_A")

    def _rows_frozen(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[: self.rank] = 0
        return grad

    def _columns_frozen(self, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        grad[:, : self.rank] = 0
        return grad

    def penalty(self) -> torch.Tensor:
        """weight · Σ over layers of ‖A_new A_earlierᵀ‖²: how much the new rows share the earlier ones' directions."""
        total = sum((a[self.rank:].float() @ earlier_a.float().T).pow(2).sum()
                    for a, _, earlier_a, _ in self.frozen)
        return self.weight * total

    def restore(self) -> None:
        """Put the earlier rows back exactly after an optimizer step: weight decay moves even a zero-gradient
        weight."""
        with torch.no_grad():
            for a, b, earlier_a, earlier_b in self.frozen:
                a[: self.rank] = earlier_a
                b[:, : self.rank] = earlier_b
