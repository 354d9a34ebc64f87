"""Export a job's record to TensorBoard and MLflow: the one function the CLI, the app and Python call, and the
writers the live tracking shares with it.

    export_metrics(settings, "20250101-120000-abc123")                  # both, in their usual places
    export_metrics(settings, job_id, tensorboard="runs", mlflow=None)   # TensorBoard only, into runs/<job id>

Usual places: TensorBoard in the job folder's `tensorboard/` (where the live writer writes too, so
`tensorboard --logdir $EASYTUNE_HOME/jobs` shows every job), MLflow in `$EASYTUNE_HOME/tracking/mlruns`
(one store, experiment "easytune", one run per job).
"""

from __future__ import annotations

from pathlib import Path

from easytune.i18n import UserError
from easytune.jobs.events import TERMINAL_STATES
from easytune.jobs.folder import JobFolder
from easytune.settings import Settings
from easytune.tracking import mlflow_files
from easytune.tracking.record import JobRecord, collect, tracked_name
from easytune.tracking.tensorboard_files import EventFile, require_tensorboard

EXPERIMENT = "easytune"
USUAL = object()  # export_metrics: write this tool's files in its usual place
# MLflow's state of a run, from the job's
RUN_STATUS = {"COMPLETED": "FINISHED", "FAILED": "FAILED", "STOPPED": "KILLED", "INTERRUPTED": "KILLED",
              "PAUSED": "KILLED"}


def tensorboard_dir(job: dict) -> Path:
    return JobFolder(job["job_dir"]).tensorboard


def mlflow_store(settings: Settings) -> Path:
    return settings.home / "tracking" / "mlruns"


def tensorboard_command(log_dir: Path) -> str:
    return f"tensorboard --logdir {log_dir}"


def mlflow_command(store: Path) -> str:
    # MLflow 3 reads a file store only when asked to (it would rather have a database); older ones ignore it
    return f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {Path(store).resolve().as_uri()}"


def export_metrics(settings: Settings, job_id: str, *, tensorboard: str | Path | object | None = USUAL,
                   mlflow: str | Path | object | None = USUAL) -> dict:
    """Write an ended job's curves, plan and latest evaluation as TensorBoard event files and as an MLflow
    run. Each tool: USUAL for its usual place, a folder of the user's (TensorBoard: a run folder per job is
    made in it; MLflow: the store), or None to leave it out. Returns where each went and the command that
    shows it. A running job is refused: its live files are still growing."""
    record = collect(settings, job_id)
    job = record.job
    if job["state"] not in TERMINAL_STATES:
        raise UserError("tracking.error.not_ended", job=job["id"], state=job["state"])
    if tensorboard is None and mlflow is None:
        raise UserError("tracking.error.nothing_chosen")
    if tensorboard is not None:
        require_tensorboard()  # before anything is written
    if mlflow is not None:
        mlflow_files.check_store(_store(settings, mlflow))
    out: dict = {"job_id": job["id"], "job_name": job["name"]}
    if tensorboard is not None:
        run_dir = tensorboard_dir(job) if tensorboard is USUAL else Path(tensorboard).expanduser() / job["id"]
        scalars = write_tensorboard(record, run_dir)
        out["tensorboard"] = {"path": str(run_dir), "scalars": scalars, "command": tensorboard_command(run_dir)}
    if mlflow is not None:
        written = write_mlflow(record, _store(settings, mlflow))
        out["mlflow"] = {**written, "path": written["store"], "experiment": EXPERIMENT,
                         "command": mlflow_command(Path(written["store"]))}
    return out


def _store(settings: Settings, chosen: str | Path | object) -> Path:
    return mlflow_store(settings) if chosen is USUAL else Path(chosen).expanduser()


def write_tensorboard(record: JobRecord, run_dir: Path) -> int:
    """The whole record as a fresh event file: settings, plan, every curve, the evaluation at the last step.
    Returns how many scalars were written."""
    job, count = record.job, 0
    started = job["started_at"] or job["created_at"]
    with EventFile(run_dir, fresh=True) as events:
        write_header(events, record.plan, job["id"], started)
        points = sorted(((step, t, name, value) for name, series in record.series.items()
                         for step, value, t in series), key=lambda point: (point[0], point[1]))
        for step, t, name, value in points:
            events.scalar(tracked_name(name), value, step, t)
            count += 1
        ended = job["finished_at"] or started
        for name, value in record.evaluation_figures().items():
            events.scalar(name, value, record.last_step, ended)
            count += 1
    return count


def write_header(events: EventFile, plan: dict, job_id: str, wall_time: float) -> None:
    """What a run states once: its settings (TensorBoard's HParams tab) and its plan as text."""
    if plan:
        events.hparams(plan, job_id, wall_time)
        events.text("plan", "\n".join(f"    {key}: {value}" for key, value in plan.items()), 0, wall_time)


def write_mlflow(record: JobRecord, store: Path) -> dict:
    """The record as the job's run in the store: the plan as params, every curve with its steps, the
    evaluation's figures at the last step, tags naming the job, and the plan file as an artifact."""
    job = record.job
    metrics = {tracked_name(name): [(t, value, step) for step, value, t in series]
               for name, series in record.series.items()}
    ended = job["finished_at"] or job["started_at"] or job["created_at"]
    metrics.update({name: [(ended, value, record.last_step)] for name, value in record.evaluation_figures().items()})
    tags = {"easytune.job_id": job["id"], "easytune.model": job["model"], "easytune.dataset": job["dataset"],
            "easytune.state": job["state"], "easytune.job_dir": job["job_dir"], "mlflow.source.name": "easytune",
            "mlflow.source.type": "LOCAL"}
    if record.resolved.get("objective"):
        tags["easytune.objective"] = record.resolved["objective"]
    if record.evaluation:
        tags["easytune.verdict"] = record.evaluation["verdict"]
    plan_file = JobFolder(job["job_dir"]).plan_file
    return mlflow_files.write_run(
        store, experiment=EXPERIMENT, key=job["id"], name=job["name"], status=RUN_STATUS.get(job["state"], "RUNNING"),
        start=job["started_at"] or job["created_at"], end=job["finished_at"],
        params={key: str(value) for key, value in record.plan.items()}, tags=tags, metrics=metrics,
        artifacts={"plan.yaml": plan_file} if plan_file.is_file() else None)
