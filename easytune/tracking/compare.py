"""Jobs side by side: the plan settings that differ between them (only those), what each run came to (last and
best validation loss, forgetting score, verdict and facts right where evaluated, training time), and their
loss curves. The CLI prints the table, `--json` gives all of it, the Jobs page draws the curves."""

from __future__ import annotations

from easytune.i18n import UserError, t
from easytune.settings import Settings
from easytune.tracking.record import collect

OUTCOMES = ("final_loss", "final_val_loss", "best_val_loss", "cf_pct", "verdict", "facts_seen", "facts_unseen",
            "train_s", "steps")  # the rows under the settings, in this order
CURVES = ("loss", "val_loss")


def compare_runs(settings: Settings, job_ids: list[str]) -> dict:
    """{"jobs": [{id, name, state, model, dataset, outcome…}], "differences": {setting: [value per job]},
    "series": {job id: {"loss": [[step, value], …], "val_loss": …}}}, jobs in the order given."""
    ids = list(dict.fromkeys(job_ids))  # the same job twice is one column
    if len(ids) < 2:
        raise UserError("tracking.error.compare_two")
    records = [collect(settings, job_id) for job_id in ids]
    settings_named = list(dict.fromkeys(name for record in records for name in record.plan))
    differences = {name: [record.plan.get(name) for record in records] for name in settings_named
                   if len({repr(record.plan.get(name)) for record in records}) > 1}
    jobs = [{"id": r.job["id"], "name": r.job["name"], "state": r.job["state"], "model": r.job["model"],
             "dataset": r.job["dataset"], **r.outcome()} for r in records]
    series = {r.job["id"]: {name: [[step, value] for step, value, _ in r.series.get(name, [])] for name in CURVES}
              for r in records}
    return {"jobs": jobs, "differences": differences, "series": series}


def comparison_table(result: dict, lang: str) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) as a person reads them: a column per job, a row per differing setting, then the
    outcomes. The CLI prints it and the Jobs page shows it."""
    headers = [t("tracking.compare.what", lang)] + [f"{job['id']}\n{job['name']}" for job in result["jobs"]]
    rows = [[name, *(_shown(value) for value in values)] for name, values in result["differences"].items()]
    if not rows:
        rows.append([t("tracking.compare.same_settings", lang), *("" for _ in result["jobs"])])
    rows.append([t("tracking.compare.state", lang), *(t("state." + job["state"], lang) for job in result["jobs"])])
    for name in OUTCOMES:
        rows.append([t(f"tracking.compare.{name}", lang), *(_outcome(name, job, lang) for job in result["jobs"])])
    return headers, rows


def table_text(result: dict, lang: str) -> str:
    """The table in plain text, columns padded (a job's header on two lines: its id, then its name)."""
    headers, rows = comparison_table(result, lang)
    head = [cell.split("\n") for cell in headers]
    grid = [[lines[0] for lines in head], [lines[1] if len(lines) > 1 else "" for lines in head], *rows]
    widths = [max(_width(row[col]) for row in grid) for col in range(len(headers))]
    lines = ["  ".join(cell + " " * (width - _width(cell)) for cell, width in zip(row, widths)).rstrip()
             for row in grid]
    lines.insert(2, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _width(text: str) -> int:
    """Columns a text takes in a terminal: a Chinese character takes two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _shown(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()  # as the plan YAML writes it
    return f"{value:g}" if isinstance(value, float) else str(value)


def _outcome(name: str, job: dict, lang: str) -> str:
    value = job.get(name)
    if value is None:
        return "—"
    if name == "verdict":
        return t(f"ui.eval.verdict.{value}", lang)
    if name in ("facts_seen", "facts_unseen"):
        return f"{value * 100:.0f}%"
    if name == "cf_pct":
        return f"{value:.1f}%"
    if name == "train_s":
        return (t("tracking.compare.minutes", lang, n=f"{value / 60:.1f}") if value >= 60
                else t("tracking.compare.seconds", lang, n=f"{value:.0f}"))
    if name == "best_val_loss" and job.get("best_val_step") is not None:
        return t("tracking.compare.at_step", lang, value=f"{value:.4f}", step=job["best_val_step"])
    return f"{value:.4f}" if isinstance(value, float) else str(value)
