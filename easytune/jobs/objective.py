"""Which objective a run trains with, from the plan and the kind of data (no training stack imported:
the jobs service checks it before any worker starts, the worker again before it trains)."""

from __future__ import annotations

from easytune.i18n import UserError

OBJECTIVE_OF_KIND = {"preference": "dpo", "kto": "kto", "text": "pretrain"}  # any other: supervised answers


def resolve_objective(objective: str, kind: str, dataset: str) -> str:
    """The plan's objective, or (auto) the one the dataset's rows call for; a mismatch is refused."""
    resolved = objective if objective != "auto" else OBJECTIVE_OF_KIND.get(kind, "sft")
    if (resolved == "kto") != (kind == "kto"):  # only answers labelled good or bad train with KTO
        raise UserError("train.error.kto_needs_labels" if resolved == "kto" else "train.error.labels_need_kto",
                        dataset=dataset, kind=kind)
    if resolved == "dpo" and kind != "preference":
        raise UserError("train.error.dpo_needs_pairs", dataset=dataset, kind=kind)
    if resolved != "dpo" and kind == "preference":
        raise UserError("train.error.pairs_need_dpo", dataset=dataset, kind=kind)
    return resolved
