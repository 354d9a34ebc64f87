"""The forgetting guard: past the stop threshold the run pauses instead of training on while the model
loses what it knew. The worker checkpoints, delivers what it has and ends PAUSED with the reason; the
user then resumes (perhaps with knowledge retention or a lower learning rate) or finishes with the best
checkpoint (easytune.jobs).

Resuming past a pause accepts the forgetting reached so far: the resumed run pauses again only if the
score climbs `resume_margin_pct` points above it, so it is not paused at its first evaluation by the
damage it resumed with.
"""

from __future__ import annotations

from easytune.health import forgetting_level, thresholds

PAUSE_REASON = "train.log.forgetting_pause"
ACCEPTED = "forgetting_accepted_pct"  # job.json: the score at the pause the user resumed past


def forgetting_pause(result: dict, job: dict) -> dict | None:
    """The pause message's parameters when this evaluation must pause the run, else None."""
    pct = result.get("cf_pct")
    if pct is None or forgetting_level(pct, result["cf_score"]) != "error":
        return None
    limits = thresholds()["forgetting"]
    accepted = job.get(ACCEPTED)
    if accepted is not None and pct <= accepted + limits["resume_margin_pct"]:
        return None
    return {"pct": round(pct, 1), "limit": limits["stop_pct"], "step": result["step"]}
