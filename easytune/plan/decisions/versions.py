"""What a new version of a model keeps of the earlier ones. A first run has no earlier version, so these
settings keep their defaults here: `jobs.lineage.next_version` turns them on when the new data differs from
the earlier versions' data."""

from __future__ import annotations

from easytune.plan.draft import Draft, show
from easytune.plan.schema import default


def decide_versions(draft: Draft) -> None:
    continual = draft.set("continual", default("continual"), "planner.reason.continual_off")
    draft.set("orthogonal_weight", default("orthogonal_weight"),
              "planner.reason.orthogonal_weight" if continual else "planner.reason.orthogonal_unused",
              value=show("orthogonal_weight", default("orthogonal_weight")))
    draft.set("replay_ratio", default("replay_ratio"), "planner.reason.replay_off")
