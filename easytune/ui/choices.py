"""What the model and job pickers list, read afresh from the registry and the jobs table each time. Shared
by the wizard and the pages that add a model or start a job, so each can refresh the wizard's pickers.
"""

from __future__ import annotations

from easytune import jobs
from easytune.settings import Settings


def model_choices(settings: Settings) -> list[tuple[str, str]]:
    from easytune.models.registry import registered

    broken = {"broken": " ✗"}  # still listed, so the plan's refusal can say why
    return [("easytune-tiny", "easytune-tiny")] + [(row["name"] + broken.get(row.get("health"), ""), row["name"])
                                                   for row in registered(settings)]


def job_choices(settings: Settings, finished_only: bool = False) -> list[tuple[str, str]]:
    rows = jobs.list_jobs(settings, "COMPLETED" if finished_only else None)
    return [(f"{row['id']} · {row['name']}", row["id"]) for row in rows]
