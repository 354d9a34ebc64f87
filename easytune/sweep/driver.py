"""Running a sweep: the study proposes the next values, they train as an ordinary job in the queue, the job's
validation loss is reported as it goes (a hopeless trial is stopped by the normal stop), the finished job is
scored, the study is told; until the sweep's trials are done.

The same driver runs in `easytune sweep` (blocking, printing progress, like `easytune train`) and in a thread
of the app. Its state lives in two places that survive a restart: the record (easytune.sweep.record) and the
study (optuna, in `sweeps/<id>/study.db` under the home). A stopped or interrupted sweep continues from them:
its open trial's job is followed, resumed from its checkpoint, or scored if it finished meanwhile.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import threading
import time

from easytune import jobs
from easytune.i18n import UserError, t
from easytune.jobs.events import ACTIVE_STATES
from easytune.jobs.folder import JobFolder
from easytune.jobs.guard import PAUSE_REASON
from easytune.plan.schema import TrainingPlan
from easytune.settings import Settings
from easytune.sweep import record
from easytune.sweep.metric import HIGHER_IS_BETTER, delivered_val_loss, fact_accuracy, forgets_too_much, forgetting
from easytune.sweep.space import distributions, trial_plan

POLL_S = 0.5
PRUNE_FROM_PCT = 30  # no trial is stopped before 30 % of its steps: the first evaluations say little
RESUMABLE = ("STOPPED", "PAUSED", "INTERRUPTED")  # a trial's job left so when its sweep stopped or crashed


def _silent(key: str, **params) -> None:
    pass


def run_sweep(settings: Settings, sweep_id: str, *, lang: str = "en", progress=None, interval: float = POLL_S,
              claimed: bool = False) -> dict:
    """Drive the sweep until its trials are done or it is stopped; return it as `show_sweep` does.
    `progress(key, **params)` hears each step in message keys. Ctrl-C stops the sweep (and its trial's job)."""
    if not claimed:
        record.claim(settings, sweep_id)
    say = progress or _silent
    try:
        _drive(settings, sweep_id, lang, say, interval)
    except KeyboardInterrupt:
        with contextlib.suppress(UserError):  # (it may have finished that very moment)
            record.stop_sweep(settings, sweep_id)
        say("sweep.progress.stopped", sweep=sweep_id)
    except UserError as exc:
        record.set_state(settings, sweep_id, "STOPPED", {"key": exc.key, "params": exc.params})
        raise
    except Exception as exc:
        record.set_state(settings, sweep_id, "STOPPED", {"key": "sweep.error.driver", "params": {"detail": str(exc)}})
        raise
    finally:
        record.release(settings, sweep_id)
    return record.show_sweep(settings, sweep_id)


def start_in_background(settings: Settings, sweep_id: str, lang: str = "en") -> threading.Thread:
    """The app's way: the same driver in a thread. Claimed first, so a second click is refused at once and the
    page never sees the sweep without its driver."""
    record.claim(settings, sweep_id)

    def drive() -> None:
        try:
            run_sweep(settings, sweep_id, lang=lang, claimed=True)
        except Exception as exc:  # noqa: BLE001 — kept in the record; the thread must end quietly
            print(f"easytune sweep {sweep_id}: {exc}", file=sys.stderr)

    thread = threading.Thread(target=drive, name=f"easytune-sweep-{sweep_id}", daemon=True)
    thread.start()
    return thread


def study_of(settings: Settings, sweep: dict):
    """The sweep's optuna study, created on first use with the plan's own values (and the user's) queued first.
    Sampler and pruner are not stored by optuna: they are rebuilt alike from the record on every start."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = settings.home / "sweeps" / sweep["id"]
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    known = len(record.trial_rows(settings, sweep["id"]))  # a continued sweep does not replay the draws it made
    # a third of the trials explore at random before the sampler follows what worked
    sampler = optuna.samplers.TPESampler(seed=sweep["plan"]["seed"] + known,
                                         n_startup_trials=max(2, sweep["trials"] // 3))
    # the study minimises: a metric where higher is better enters negated (`_objective`)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=sweep["prune_after"], n_warmup_steps=PRUNE_FROM_PCT) \
        if sweep["prune_after"] else optuna.pruners.NopPruner()
    study = optuna.create_study(storage=storage, study_name=sweep["id"], direction="minimize", sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    if not study.trials:
        for values in sweep["first"]:
            study.enqueue_trial(values)
    return study


def _drive(settings: Settings, sweep_id: str, lang: str, say, interval: float) -> None:
    sweep = record.get_sweep(settings, sweep_id)
    study = study_of(settings, sweep)
    _close_orphans(settings, sweep_id, study)
    say("sweep.progress.start", sweep=sweep_id, trials=sweep["trials"], vary=", ".join(sweep["vary"]),
        pct=_pct(sweep["fraction"]), metric=t(f"sweep.metric.{sweep['metric']}", lang))
    while True:
        sweep = record.get_sweep(settings, sweep_id)
        if sweep["state"] != "RUNNING":  # stopped from elsewhere (`easytune sweep stop`, the app)
            return
        trial = record.open_trial(settings, sweep_id)
        if trial is None:
            if sum(1 for row in record.trial_rows(settings, sweep_id) if row["state"] in record.FINISHED) \
                    >= sweep["trials"]:
                record.set_state(settings, sweep_id, "COMPLETED")
                record.write_best(settings, sweep_id, lang)
                _say_done(settings, sweep_id, say)
                return
            asked = study.ask(distributions(sweep["space"]))
            trial = record.record_trial(settings, sweep_id, asked.number, asked.params)
        if _carry(settings, sweep, trial, study, lang, say, interval) == "stopped":
            return


def _close_orphans(settings: Settings, sweep_id: str, study) -> None:
    """A trial the study handed out but the record never took up, or settled without telling the study (a
    driver killed between the two): it is over for the sampler."""
    from optuna.trial import TrialState

    rows = {row["number"]: row for row in record.trial_rows(settings, sweep_id)}
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = rows.get(frozen.number)
        if row is None or row["state"] != "RUNNING":
            study.tell(frozen.number, state=TrialState.FAIL)


def _carry(settings: Settings, sweep: dict, trial: dict, study, lang: str, say, interval: float) -> str:
    """See one trial through: its job started (or taken up again), followed, pruned or scored. Returns "done",
    or "stopped" when the user stopped the sweep or the trial's job."""
    import optuna

    number, total = trial["number"], sweep["trials"]
    job = _trial_job(settings, sweep, trial, study, lang)
    if job is None:
        return _gone(settings, sweep, trial, study, lang, say)
    say("sweep.progress.trial", number=number + 1, total=total, job=job["id"], values=values_text(trial["params"]))
    frozen = next(f for f in study.get_trials(deepcopy=False) if f.number == number)
    live = optuna.trial.Trial(study, frozen._trial_id)  # (the public constructor takes the storage's trial id)
    reported, shown_position, pruned = set(frozen.intermediate_values), None, None
    while True:
        try:
            job = jobs.sync_job(settings, job["id"])
        except UserError:  # deleted from the jobs page the moment it ended
            return _gone(settings, sweep, {**trial, "job_id": job["id"]}, study, lang, say)
        if job["queue_position"] not in (None, shown_position):
            say("jobs.queued", job=job["id"], position=job["queue_position"])
            shown_position = job["queue_position"]
        if pruned is None and (verdict := _report(settings, job, live, reported)) and job["state"] in ACTIVE_STATES:
            pruned = at, value = verdict  # (a job that has ended is scored, not stopped)
            pct, nats = forgetting(jobs.metrics(settings, job["id"]))
            record.update_trial(settings, sweep["id"], number, state="PRUNED", pruned_at=at, val_loss=value,
                                cf_pct=pct, cf_score=nats)  # before the stop: a stop the driver asked is no user's
            jobs.stop_job(settings, job["id"])
        if job["state"] not in ACTIVE_STATES:
            break
        if record.get_sweep(settings, sweep["id"])["state"] != "RUNNING":
            return "stopped"  # (`stop_sweep` stops the trial's job itself)
        time.sleep(interval)
    if pruned is not None and job["state"] != "COMPLETED":
        study.tell(number, state=optuna.trial.TrialState.PRUNED)
        say("sweep.progress.pruned", number=number + 1, at=pruned[0], value=f"{pruned[1]:.4f}")
        return "done"
    if pruned is not None:  # its last step came before the stop: scored like any finished trial, not called stopped
        record.update_trial(settings, sweep["id"], number, pruned_at=None)
    if job["state"] in ("STOPPED", "PAUSED") and not _guard_paused(job):  # the user stopped it: the sweep waits
        if record.get_sweep(settings, sweep["id"])["state"] == "RUNNING":
            record.set_state(settings, sweep["id"], "STOPPED")
        say("sweep.progress.stopped", sweep=sweep["id"])
        return "stopped"
    _settle(settings, sweep, trial, job, study, live, lang, say)
    return "done"


def _gone(settings: Settings, sweep: dict, trial: dict, study, lang: str, say) -> str:
    """A trial whose job was deleted: it failed, and the sweep goes on."""
    _settle_failed(settings, sweep, trial, study, {"key": "sweep.error.job_gone", "params": {"job": trial["job_id"]}})
    say("sweep.progress.failed", number=trial["number"] + 1, error=t("sweep.error.job_gone", lang, job=trial["job_id"]))
    return "done"


def _trial_job(settings: Settings, sweep: dict, trial: dict, study, lang: str) -> dict | None:
    """The trial's job: started now for a new trial; taken up again for a continued sweep (resumed from its
    checkpoint where it was stopped or cut short). None when it was deleted meanwhile."""
    if not trial["job_id"]:
        plan = trial_plan(TrainingPlan.from_dict(sweep["plan"]), trial["params"], sweep["fraction"])
        key = "sweep.trial_name" if sweep["fraction"] < 1 else "sweep.trial_name_full"
        name = t(key, lang, sweep=sweep["id"], number=trial["number"] + 1, pct=_pct(sweep["fraction"]))
        try:
            job = jobs.launch(settings, plan, name=name)
        except UserError as exc:  # the next trial would meet the same: the sweep stops with the reason
            record.update_trial(settings, sweep["id"], trial["number"], state="FAILED",
                                error={"key": exc.key, "params": exc.params})
            _tell_failed(study, trial["number"])
            raise
        record.update_trial(settings, sweep["id"], trial["number"], job_id=job["id"])
        return job
    try:
        job = jobs.get_job(settings, trial["job_id"])
    except UserError:
        return None
    if job["state"] in RESUMABLE and not _guard_paused(job):
        try:
            job = jobs.resume_job(settings, job["id"])
        except UserError:  # nothing to continue from: the same values again, from the start
            job = jobs.restart_job(settings, job["id"])
            record.update_trial(settings, sweep["id"], trial["number"], job_id=job["id"])
    return job


def _report(settings: Settings, job: dict, live, reported: set) -> tuple[int, float] | None:
    """Report the job's new validation losses to the study at the share of its steps they were measured (10 %,
    20 % … so trials of different lengths compare alike); (share, loss) when the pruner says stop."""
    total = job["total_steps"]
    if not total:
        return None
    for step, value in jobs.metrics(settings, job["id"]).get("val_loss", []):
        at = 10 * (10 * step // total)
        if step == 0 or at in reported:  # step 0 is the untrained model: every trial starts there
            continue
        live.report(value, at)
        reported.add(at)
        if live.should_prune():
            return at, value
    return None


def _guard_paused(job: dict) -> bool:
    return job["state"] == "PAUSED" and bool(job.get("error")) and json.loads(job["error"])["key"] == PAUSE_REASON


def _settle(settings: Settings, sweep: dict, trial: dict, job: dict, study, live, lang: str, say) -> None:
    """Score a trial whose job ended: its metric and forgetting, or its failure; the record first, then the study."""
    number = trial["number"]
    series = jobs.metrics(settings, job["id"])
    pct, nats = forgetting(series)
    val_loss = delivered_val_loss(JobFolder(job["job_dir"]).plan(), series)
    if job["state"] not in ("COMPLETED", "PAUSED"):  # FAILED, or INTERRUPTED while we watched: it would again
        error = json.loads(job["error"]) if job.get("error") else {"key": "sweep.error.trial_failed", "params": {}}
        record.update_trial(settings, sweep["id"], number, state="FAILED", error=error, val_loss=val_loss,
                            cf_pct=pct, cf_score=nats)
        _tell_failed(study, number)
        say("sweep.progress.failed", number=number + 1, error=t(error["key"], lang, **error["params"]))
        return
    guarded = job["state"] == "PAUSED"  # the forgetting guard stopped it: past even the stop threshold
    infeasible = guarded or forgets_too_much(pct, nats)
    metric, judged = (val_loss if sweep["metric"] == "val_loss" else None), None
    if sweep["metric"] == "fact_accuracy" and not guarded:
        say("sweep.progress.measuring", number=number + 1)
        try:
            measured = fact_accuracy(settings, job["id"])
        except UserError as exc:
            _settle_failed(settings, sweep, trial, study, {"key": exc.key, "params": exc.params})
            say("sweep.progress.failed", number=number + 1, error=exc.message(lang))
            return
        metric, judged = measured["accuracy"], measured["judged"]
    record.update_trial(settings, sweep["id"], number, state="INFEASIBLE" if infeasible else "COMPLETE",
                        metric=metric, val_loss=val_loss, cf_pct=pct, cf_score=nats, facts_judged=judged)
    live.set_constraint("forgetting", 1.0 if infeasible else 0.0)  # feasible at 0 or below
    study.tell(number, _objective(sweep["metric"], metric))
    record.write_best(settings, sweep["id"], lang)
    shown = metric_text(sweep["metric"], metric, lang)
    if infeasible:
        say("sweep.progress.infeasible", number=number + 1, metric=shown, cf=_cf_text(pct))
    else:
        say("sweep.progress.scored", number=number + 1, metric=shown, cf=_cf_text(pct))


def _settle_failed(settings: Settings, sweep: dict, trial: dict, study, error: dict) -> None:
    record.update_trial(settings, sweep["id"], trial["number"], state="FAILED", error=error)
    _tell_failed(study, trial["number"])


def _tell_failed(study, number: int) -> None:
    from optuna.trial import TrialState

    study.tell(number, state=TrialState.FAIL)


def _objective(metric: str, value: float | None) -> float:
    """What the (minimising) study is told: the metric, negated where higher is better; no figure is the worst."""
    if value is None:
        return math.inf
    return -value if HIGHER_IS_BETTER[metric] else value


def _say_done(settings: Settings, sweep_id: str, say) -> None:
    shown = record.show_sweep(settings, sweep_id)
    if shown["best"]:
        say("sweep.progress.done", sweep=sweep_id, number=shown["best"]["number"] + 1,
            values=values_text(shown["best"]["params"]))
    else:
        say(shown["no_best"], sweep=sweep_id)


def _pct(fraction: float) -> str:
    return f"{fraction * 100:.0f}"


def _cf_text(pct: float | None) -> str:
    return "—" if pct is None else f"{pct:.1f}"


def values_text(params: dict) -> str:
    return ", ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in params.items())


def metric_text(metric: str, value: float | None, lang: str) -> str:
    """A trial's metric as the user reads it: fact accuracy as a share, validation loss as a number."""
    if value is None:
        return "—"
    shown = f"{value * 100:.0f} %" if metric == "fact_accuracy" else f"{value:.4f}"
    return t(f"sweep.metric_value.{metric}", lang, value=shown)
