"""`easytune`: the command line over the same services the UI calls.

Every command that reports something takes --json (one JSON document on stdout) so scripts and tests
read it; human output goes to stdout in the user's language (--lang, EASYTUNE_LANG, or the locale).
Imports stay inside the commands: `easytune ui` must not pay for the training stack.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from easytune.i18n import UserError, normalize_lang, t
from easytune.jobs.folder import JobFolder
from easytune.offline import go_offline
from easytune.settings import load_settings


def _emit(args, data, human: str | None = None) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif human is not None:
        print(human)


def cmd_ui(args, settings) -> int:
    from easytune.ui.server import serve

    return serve(settings)


def _follow(settings, job_id: str, lang: str, quiet: bool, shown_position: int | None = None) -> dict:
    """Follow a job until it ends, printing progress (and its place while it waits in the queue);
    Ctrl-C stops it cleanly."""
    from easytune import jobs

    shown_step, shown_events = 0, 0
    try:
        while True:
            job = jobs.sync_job(settings, job_id)
            if not quiet and job["queue_position"] not in (None, shown_position):  # waiting for the device
                print(t("jobs.queued", lang, job=job_id, position=job["queue_position"]), file=sys.stderr, flush=True)
                shown_position = job["queue_position"]
            if not quiet:
                loss = jobs.metrics(settings, job_id).get("loss", [])
                for step, value in loss[shown_step:]:
                    print(t("cli.train.step", lang, step=step, total=job["total_steps"], loss=f"{value:.4f}"),
                          file=sys.stderr, flush=True)
                shown_step = len(loss)
                logged = jobs.logged_events(settings, job_id, types=("log",))
                for event in logged[shown_events:]:
                    data = event["data"]
                    print(t(data["key"], lang, **data.get("params", {})), file=sys.stderr, flush=True)
                shown_events = len(logged)
            if job["state"] not in ("PENDING", "PREPARING", "RUNNING"):
                return job
            time.sleep(0.5)
    except KeyboardInterrupt:
        return jobs.stop_job(settings, job_id)


def job_summary(settings, job: dict, lang: str) -> dict:
    from easytune import jobs

    series = jobs.metrics(settings, job["id"])
    loss, cf = series.get("loss", []), series.get("cf_pct", [])
    error = json.loads(job["error"]) if job.get("error") else None
    warnings = [dict(w, message=t(w["key"], lang, **w["params"]), advice=t(w["action"], lang))
                for w in jobs.warnings(settings, job)]
    return {**job, "first_loss": loss[0][1] if loss else None, "final_loss": loss[-1][1] if loss else None,
            "time_left_s": jobs.time_left(settings, job),
            "cf_pct": cf[-1][1] if cf else None, "warnings": warnings,
            "error_message": t(error["key"], lang, **error["params"]) if error else None,
            "checkpoint": JobFolder(job["job_dir"]).latest_checkpoint(),
            "actions": jobs.available_actions(settings, job)}


def _action_command(action: str, job_id: str) -> str:
    command = {"lower_lr": "clone {job} --suggest lower_lr", "retention": "clone {job} --suggest retention",
               "less_memory": "clone {job} --suggest less_memory",
               "resume_lower_lr": "resume {job} --suggest lower_lr",
               "resume_retention": "resume {job} --suggest retention", "finish_best": "finish {job}",
               "clone": "clone {job} --set KEY=VALUE"}.get(action, action + " {job}")
    return "easytune jobs " + command.format(job=job_id)


def _offer(summary: dict, lang: str) -> str:
    """The actions a job's state allows, each with its command (after a failure: restart, and why)."""
    lines = [t("jobs.offer_line", lang, action=t("jobs.action." + a, lang), command=_action_command(a, summary["id"]))
             for a in summary["actions"]]
    return "\n".join([t("jobs.offer", lang), *lines]) if lines else ""


def _setting_changes(items: list[str] | None) -> dict:
    """`--set KEY=VALUE …` as plan changes; values are YAML (numbers, true/false), like `easytune plan --set`."""
    import yaml

    changes = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError("jobs.error.bad_set", item=item)
        changes[key.strip()] = yaml.safe_load(value)
    return changes


def cmd_train(args, settings) -> int:
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(args.config)
    this_machine = {"machine_rank": args.machine_rank, "main_process_ip": args.main_process_ip,
                    "main_process_port": args.main_process_port}
    changes = {key: value for key, value in this_machine.items() if value is not None}
    if changes:  # one plan file for every machine; each says where it stands (checked like the file itself)
        plan = TrainingPlan.from_dict({**plan.to_dict(), **changes})
    job = jobs.launch(settings, plan)
    if not args.json and job["state"] == "PENDING":
        print(t("jobs.queued", args.lang, job=job["id"], position=job["queue_position"]), flush=True)
    elif not args.json:
        print(t("cli.train.started", args.lang, job=job["id"], dir=job["job_dir"]), flush=True)
    if args.detach:
        _emit(args, job_summary(settings, job, args.lang))
        return 0
    job = _follow(settings, job["id"], args.lang, quiet=args.json, shown_position=job["queue_position"])
    summary = job_summary(settings, job, args.lang)
    _emit(args, summary, t("cli.train.finished", args.lang, state=t("state." + job["state"], args.lang),
                           loss=summary["final_loss"], error=summary["error_message"] or ""))
    return 0 if job["state"] == "COMPLETED" else 1


def cmd_plan(args, settings) -> int:
    from easytune.plan.service import make_plan

    if args.explain is not None:
        return _explain(args)
    if not args.data:
        raise UserError("cli.plan.data_required")
    overrides = _setting_changes(args.set) or None
    proposal = make_plan(settings, model=args.model, dataset=args.data, task=args.task, level=args.level,
                         overrides=overrides)
    if args.out:
        proposal.plan.save(Path(args.out), args.lang)
    report = proposal.to_dict(args.lang)
    intent = report["intent"]
    lines = [f"task = {intent['task']}  — {intent['task_text']}"] if "task_text" in intent else []
    lines += [f"{name} = {getattr(proposal.plan, name)}  — {entry['text']}"
              for name, entry in report["reasons"].items()]
    lines += [f"⚠ {w['text']}" for w in report["warnings"]]
    if args.out:
        lines.append(t("cli.plan.saved", args.lang, path=args.out))
    _emit(args, report, "\n".join(lines))
    return 0


def _explain(args) -> int:
    """`plan --explain [SETTING]`: every setting (or one, with its longer explanation) and what it accepts."""
    from easytune.plan.explain import explain_setting, explain_settings, explanation_text

    if args.explain:
        entry = explain_setting(args.explain, args.lang)
        _emit(args, entry, explanation_text([entry], args.lang, detailed=True))
    else:
        entries = explain_settings(args.lang)
        _emit(args, entries, explanation_text(entries, args.lang))
    return 0


def cmd_baseline(args, settings) -> int:
    from easytune.evaluation.baseline import base_line, base_line_text
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(Path(args.config)) if args.config else TrainingPlan(model=args.model, dataset=args.data)
    result = base_line(settings, plan, limit=args.limit)
    lines = [base_line_text(result, args.lang), ""]
    lines += [f"{'✓' if a['right'] else '✗' if a['right'] is False else '·'} {a['question']}\n    → {a['answer']}"
              for a in result["answers"]]
    _emit(args, result, "\n".join(lines))
    return 0


def cmd_jobs(args, settings) -> int:
    from easytune import jobs

    jobs.sync_active(settings)
    if args.action == "list":
        rows = jobs.list_jobs(settings, args.state)
        lines = [f"{j['id']}  {t('state.' + j['state'], args.lang):<8}  {j['progress'] * 100:5.1f}%  {j['name']}"
                 for j in rows] or [t("cli.jobs.none", args.lang)]
        _emit(args, rows, "\n".join(lines))
        return 0
    if args.action == "queue":
        waiting = jobs.queue(settings)
        lines = [f"{j['queue_position']}. {j['id']}  {j['name']}" for j in waiting]
        _emit(args, waiting, "\n".join(lines) or t("jobs.queue_empty", args.lang))
        return 0
    if args.action == "compare":
        from easytune.tracking.compare import compare_runs, table_text

        result = compare_runs(settings, [job for job in (args.job, *args.more) if job])
        _emit(args, result, table_text(result, args.lang))
        return 0
    if args.more:
        raise UserError("cli.error.one_job", action=args.action)
    if not args.job:
        raise UserError("cli.error.job_required", action=args.action)
    if args.action == "export-metrics":
        return _export_metrics(args, settings)
    if args.action == "show":
        summary = job_summary(settings, jobs.get_job(settings, args.job), args.lang)
        lines = [f"{k}: {v}" for k, v in summary.items() if k != "actions"]
        _emit(args, {**summary, "series": jobs.metrics(settings, args.job)},
              "\n".join([*lines, _offer(summary, args.lang)]))
    elif args.action == "metrics":
        series = jobs.metrics(settings, jobs.get_job(settings, args.job)["id"])
        _emit(args, series, "\n".join(t("cli.jobs.metric_line", args.lang, name=name, points=len(points),
                                        value=f"{points[-1][1]:.4g}", step=points[-1][0])
                                      for name, points in series.items()))
    elif args.action == "finish":
        job = jobs.finish_job(settings, args.job)
        _emit(args, job_summary(settings, job, args.lang), t("jobs.finished", args.lang, job=job["id"]))
    elif args.action == "stop":
        job = jobs.stop_job(settings, args.job)
        _emit(args, job, t("state." + job["state"], args.lang))
    elif args.action == "pause":
        job = jobs.pause_job(settings, args.job)
        _emit(args, job, t("jobs.paused", args.lang, job=job["id"]) if job["state"] == "PAUSED"
              else t("state." + job["state"], args.lang))
    elif args.action in ("resume", "restart", "clone", "next"):
        return _rerun(args, settings)
    elif args.action == "versions":
        listed = jobs.versions(settings, args.job)
        lines = [f"v{v['version']}  {v['id']}  {t('state.' + v['state'], args.lang)}  {v['dataset']}"
                 + (f"  {t('ui.eval.verdict.' + v['verdict'], args.lang)}" if v["verdict"] else "")
                 + (f"  CF {v['cf_pct']:.1f}%" if v["cf_pct"] is not None else "") for v in listed]
        _emit(args, listed, "\n".join([*lines, jobs.best_line(listed, args.lang)]))
    elif args.action in ("delete", "rm"):
        job = jobs.delete_job(settings, args.job)
        _emit(args, job, t("jobs.deleted", args.lang, job=job["id"]))
    elif args.action == "logs":
        logged = jobs.logged_events(settings, args.job)
        lines = [jobs.event_text(e["data"], args.lang) for e in logged]
        _emit(args, [e["data"] for e in logged], "\n".join(lines))
    return 0


def _export_metrics(args, settings) -> int:
    """`jobs export-metrics JOB [--tensorboard [DIR]] [--mlflow [DIR]]`: both tools unless one is named; a flag
    without a folder writes that tool's files in their usual place."""
    from easytune.tracking.service import USUAL, export_metrics

    named = args.tensorboard is not None or args.mlflow is not None
    chosen = {tool: (USUAL if value == "" else value) if named else USUAL
              for tool, value in (("tensorboard", args.tensorboard), ("mlflow", args.mlflow))}
    result = export_metrics(settings, args.job, **chosen)
    lines = []
    if "tensorboard" in result:
        lines.append(t("tracking.cli.tensorboard", args.lang, **result["tensorboard"]))
    if "mlflow" in result:
        done = result["mlflow"]
        lines.append(t("tracking.cli.mlflow", args.lang, run=done["run_id"], experiment=done["experiment"],
                       metrics=done["metrics"], path=done["path"], command=done["command"]))
    _emit(args, result, "\n".join(lines))
    return 0


def _rerun(args, settings) -> int:
    """`jobs resume|restart|clone|next`: the job goes into the queue; with --follow, wait for it like `train`."""
    from easytune import jobs

    made = None  # (next --missed) the dataset of the questions it missed
    if args.action == "resume":
        changes = jobs.suggested_changes(settings, args.job, args.suggest) if args.suggest else {}
        job = jobs.resume_job(settings, args.job, {**changes, **_setting_changes(args.set)})
        resume_from = JobFolder(job["job_dir"]).resolved().get("resume_from")
        said = (t("jobs.resumed", args.lang, job=job["id"], checkpoint=resume_from) if resume_from
                else t("jobs.resumed_fresh", args.lang, job=job["id"]))
    elif args.action == "next":
        if bool(args.data) == bool(args.missed):
            raise UserError("cli.error.next_needs_data")
        if args.missed:  # the questions its last evaluation found answered wrong, with what it trained on
            from easytune.evaluation.missed import improve_from_missed

            improved = improve_from_missed(settings, args.job, _setting_changes(args.set))
            job, made = improved["job"], improved["dataset"]
        else:
            job = jobs.next_version(settings, args.job, args.data, _setting_changes(args.set))
        record = JobFolder(job["job_dir"]).resolved()
        said = t("jobs.next_version", args.lang, job=job["id"], source=args.job, version=record["version"])
        if made:
            from easytune.evaluation.missed import made_text

            said = made_text(made, args.lang) + "\n" + said
        if record.get("new_task"):  # chosen for the user: say so, and how to choose otherwise
            chosen = {k: v for k, v in record["new_task"].items() if k in jobs.NEW_TASK_DEFAULTS}
            said += "\n" + t("jobs.next_new_task", args.lang, pct=round(100 * record["new_task"]["shared_words"]),
                             settings=", ".join(f"{k}={str(v).lower()}" for k, v in chosen.items()))
    else:
        if args.action == "restart":
            job = jobs.restart_job(settings, args.job)
        else:
            changes = jobs.suggested_changes(settings, args.job, args.suggest) if args.suggest else {}
            job = jobs.clone_job(settings, args.job, {**changes, **_setting_changes(args.set)})
        key = "jobs.restarted" if args.action == "restart" else "jobs.cloned"
        said = t(key, args.lang, job=job["id"], source=args.job)
    if not args.json:
        print(said, flush=True)
        if job["state"] == "PENDING":
            print(t("jobs.queued", args.lang, job=job["id"], position=job["queue_position"]), flush=True)
    if args.follow:
        job = _follow(settings, job["id"], args.lang, quiet=args.json, shown_position=job["queue_position"])
    summary = job_summary(settings, job, args.lang)
    if made:
        summary["missed"] = {"dataset": made["dataset"]["name"], "rows": made["rows"], "questions": made["missed"],
                             "evaluation": made["evaluation"]}
    _emit(args, summary, t("state." + job["state"], args.lang) if args.follow else None)
    return 1 if args.follow and job["state"] != "COMPLETED" else 0


def _sweep_table(shown: dict, lang: str) -> str:
    """The trials table as text: number, state, the values tried, the metric, validation loss, forgetting."""
    from easytune.sweep.driver import metric_text, values_text

    lines = [t("sweep.cli.head", lang, sweep=shown["id"], name=shown["name"],
               state=t("sweep.state." + shown["state"], lang), done=shown["done"], trials=shown["trials"],
               metric=t("sweep.metric." + shown["metric"], lang), pct=f"{shown['fraction'] * 100:.0f}")]
    for row in shown["rows"]:
        state = t("sweep.trial_state." + row["state"], lang, at=row["pruned_at"])
        figures = [metric_text(shown["metric"], row["metric"], lang)]
        if shown["metric"] != "val_loss" or row["metric"] is None:  # (the metric is the validation loss itself)
            figures.append(metric_text("val_loss", row["val_loss"], lang))
        if row["cf_pct"] is not None:
            figures.append(t("sweep.cli.forgetting", lang, cf=f"{row['cf_pct']:.1f}"))
        figures.append(t("sweep.cli.job", lang, job=row["job_id"] or "—"))
        lines.append(f"{'★' if row['best'] else ' '} #{row['number'] + 1:<3} {state:<16} {values_text(row['params'])}"
                     f"  ·  {' · '.join(f for f in figures if f != '—')}")
    if shown["best"]:
        lines.append(t("sweep.cli.best", lang, number=shown["best"]["number"] + 1,
                       values=values_text(shown["best"]["params"]), sweep=shown["id"]))
        if shown["best_plan_file"]:
            lines.append(t("sweep.cli.best_file", lang, path=shown["best_plan_file"]))
    else:
        lines.append(t(shown["no_best"], lang, sweep=shown["id"]))
    return "\n".join(lines)


def cmd_sweep(args, settings) -> int:
    from easytune import sweep
    from easytune.sweep.space import parse_tries, parse_vary

    if args.action == "list":
        rows = sweep.list_sweeps(settings)
        lines = [f"{r['id']}  {t('sweep.state.' + r['state'], args.lang):<12} {r['done']}/{r['trials']}  "
                 f"{t('sweep.metric.' + r['metric'], args.lang)}  {r['name']}" for r in rows]
        _emit(args, rows, "\n".join(lines) or t("sweep.cli.none", args.lang))
        return 0
    if args.action == "run":
        from easytune.plan.schema import TrainingPlan

        if not args.config:
            raise UserError("sweep.error.config_required")
        plan = TrainingPlan.load(Path(args.config))
        vary = parse_vary(args.vary)
        given = {"trials": args.trials, "fraction": args.fraction, "prune_after": args.prune_after}  # else the defaults
        created = sweep.create_sweep(settings, plan, vary=vary, metric=args.metric,
                                     tries=parse_tries(args.try_values, vary, plan),
                                     **{name: value for name, value in given.items() if value is not None})
        return _drive_sweep(args, settings, created["id"])
    if not args.sweep:
        raise UserError("sweep.error.sweep_required", action=args.action)
    if args.action == "show":
        shown = sweep.show_sweep(settings, args.sweep)
        _emit(args, shown, _sweep_table(shown, args.lang))
    elif args.action == "resume":
        return _drive_sweep(args, settings, args.sweep)
    elif args.action == "stop":
        shown = sweep.stop_sweep(settings, args.sweep)
        _emit(args, shown, t("sweep.progress.stopped", args.lang, sweep=shown["id"]))
    elif args.action == "best":
        return _sweep_best(args, settings)
    return 0


def _drive_sweep(args, settings, sweep_id: str) -> int:
    """Run (or continue) a sweep here, printing each trial's progress on stderr, then the table."""
    from easytune import sweep

    def say(key: str, **params) -> None:
        if not args.json:
            print(t(key, args.lang, **params), file=sys.stderr, flush=True)

    shown = sweep.run_sweep(settings, sweep_id, lang=args.lang, progress=say)
    _emit(args, shown, _sweep_table(shown, args.lang))
    return 0 if shown["state"] == "COMPLETED" else 1


def _sweep_best(args, settings) -> int:
    """`sweep best SWEEP`: the best plan (written to --out), and with --train the full run of it, as `train` does."""
    from easytune import sweep

    plan = sweep.best_plan(settings, args.sweep)
    if args.out:
        plan.save(Path(args.out), args.lang)
    if not args.train:
        shown = sweep.show_sweep(settings, args.sweep)
        said = [plan.to_yaml(args.lang)] + ([t("cli.plan.saved", args.lang, path=args.out)] if args.out else [])
        _emit(args, {"plan": plan.to_dict(), "path": args.out or shown["best_plan_file"], "best": shown["best"]},
              "\n".join(said))
        return 0
    job = sweep.train_best(settings, args.sweep, lang=args.lang)
    if not args.json:
        print(t("sweep.cli.training_best", args.lang, job=job["id"], sweep=args.sweep), flush=True)
    if args.detach:
        _emit(args, job_summary(settings, job, args.lang))
        return 0
    job = _follow(settings, job["id"], args.lang, quiet=args.json, shown_position=job["queue_position"])
    summary = job_summary(settings, job, args.lang)
    _emit(args, summary, t("cli.train.finished", args.lang, state=t("state." + job["state"], args.lang),
                           loss=summary["final_loss"], error=summary["error_message"] or ""))
    return 0 if job["state"] == "COMPLETED" else 1


def cmd_data(args, settings) -> int:
    from easytune import datasets

    if args.action == "list":
        rows = datasets.list_datasets(settings, args.search, args.shape)
        lines = [f"{r['id']}  {r['name']:<24} {r['shape']:<10} {r['rows']:>8}" for r in rows]
        _emit(args, rows, "\n".join(lines) or t("cli.data.none", args.lang))
        return 0
    if not args.target:
        raise UserError("cli.error.target_required", action=f"data {args.action}")
    if args.action == "add":
        from easytune.data.summary import report_markdown

        mapping = dict(item.split("=", 1) for item in args.map) if args.map else None
        result = datasets.add_dataset(settings, args.target, name=args.name, mapping=mapping,
                                      mask_pii=args.mask_pii, keep_values=tuple(args.keep or ()),
                                      drop_duplicates=args.drop_duplicates)
        _emit(args, result, report_markdown(result["report"], args.lang, result["duplicate_of"]))
    elif args.action == "show":
        shown = datasets.show_dataset(settings, args.target, args.offset, args.limit)
        rows = "\n".join(json.dumps(r, ensure_ascii=False) for r in shown["preview"].get("rows", []))
        _emit(args, shown, rows)
    elif args.action == "rm":
        row = datasets.remove_dataset(settings, args.target)
        _emit(args, row, t("cli.data.removed", args.lang, name=row["name"]))
    elif args.action == "export":
        path = datasets.export_dataset(settings, args.target, args.out or Path.cwd())
        _emit(args, {"path": str(path)}, t("cli.data.exported", args.lang, path=path))
    elif args.action == "tokens":
        result = datasets.token_lengths(settings, args.target, args.model)
        numbers = {k: result[k] for k in ("p50", "p90", "max")}
        human = (t("ui.data.tokens_summary", args.lang, over=result["over_context"], pct=result["over_context_pct"],
                   context=result["context"], **numbers) if result["context"]
                 else t("ui.data.tokens_summary_no_context", args.lang, **numbers))
        _emit(args, result, human)
    elif args.action == "rename":
        row = datasets.rename_dataset(settings, args.target, args.name or "")
        _emit(args, row, row["name"])
    elif args.action == "reimport":
        if not (args.map or args.mask_pii or args.drop_duplicates):
            raise UserError("cli.error.reimport_what")
        from easytune.data.summary import report_markdown

        mapping = dict(item.split("=", 1) for item in args.map) if args.map else None
        result = datasets.reimport_dataset(settings, args.target, mapping=mapping, mask_pii=args.mask_pii,
                                           keep_values=tuple(args.keep or ()), drop_duplicates=args.drop_duplicates)
        _emit(args, result, report_markdown(result["report"], args.lang))
    return 0


def cmd_status(args, settings) -> int:
    from easytune.overview import overview

    data = overview(settings)
    counts, res = data["counts"], data["resources"]
    lines = [t("cli.status.counts", args.lang, **counts),
             t("cli.status.machine", args.lang, cpu=f"{res['cpu_pct']:.0f}", ram=f"{res['ram_used'] / 2**30:.1f}",
               ram_total=f"{res['ram_total'] / 2**30:.1f}", disk=f"{res['disk_free'] / 2**30:.1f}")]
    lines += [f"{j['id']}  {t('state.' + j['state'], args.lang)}  {j['name']}" for j in data["recent_jobs"]]
    _emit(args, data, "\n".join(lines))
    return 0


def cmd_models(args, settings) -> int:
    from easytune.models import registry

    if args.action == "list":
        listing = registry.list_models(settings, args.lang)
        marks = {"ok": "✓", "broken": "✗"}
        lines = [f"{marks.get(m.get('health'), '·')} {m['name']:<28} {m['source']:<9} {m['path']}"
                 for m in listing["models"]]
        if listing["gguf_stores"]:
            lines += [t("cli.models.stores_head", args.lang)]
            lines += [f"  {'✓' if m['added'] else '·'} {m['ref']:<48} {m['size_bytes'] / 2**30:5.2f} GB"
                      for m in listing["gguf_stores"]]
        lines += [t("cli.models.catalog_head", args.lang)]
        lines += [f"  {'✓' if c['on_disk'] else '·'} {c['id']:<32} {c['params_b']:>5}B  {c['good_for']}"
                  for c in listing["catalog"]]
        _emit(args, listing, "\n".join(lines))
        return 0
    if not args.target:
        raise UserError("cli.error.target_required", action=f"models {args.action}")
    if args.action == "add":
        from easytune.models.hub_download import terminal_progress

        added = registry.add_model(settings, args.target, name=args.name, trust_remote_code=args.trust_remote_code,
                                   progress=terminal_progress())  # a hub download shows its bar on stderr
        facts, warnings = registry.added_lines(added, args.lang)
        _emit(args, added, "\n".join(facts + warnings))
    elif args.action == "info":
        info = registry.model_info(settings, args.target)
        _emit(args, info, "\n".join(f"{k}: {v}" for k, v in info.items() if k != "first_block"))
    elif args.action == "fit":
        result = registry.fit(settings, args.target, method=args.method, seq_len=args.seq_len, batch=args.batch,
                              grad_checkpointing=args.grad_checkpointing, lora_r=args.lora_r)
        judged = result["verdict"]
        lines = [t(judged["key"], args.lang, **judged["params"])]
        lines += [f"- {t(s['key'], args.lang, **s['params'])}" for s in judged["suggestions"]]
        _emit(args, result, "\n".join(lines))
    elif args.action == "rm":
        row = registry.remove_model(settings, args.target, delete_files=args.delete_files)
        _emit(args, row, t("cli.models.removed", args.lang, name=row["name"]))
    return 0


def cmd_chat(args, settings) -> int:
    from easytune import chat

    stream = chat.stream_answer(settings, args.target, args.question, system=args.system,
                                temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens)
    shown = ""
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout holds only the JSON document
    for text in stream:
        if args.stream:
            print(text[len(shown):], end="", file=out, flush=True)
            shown = text
    if args.stream:
        print(file=out)
    result = {"question": args.question, "answer": stream.text, "target": args.target, "engine": stream.engine}
    _emit(args, result, None if args.stream else stream.text)
    if not args.json:  # on stderr: stdout holds the answer alone, for scripts that read it
        print(t("chat.engine", args.lang, engine=stream.engine), file=sys.stderr)
    return 0


def cmd_feedback(args, settings) -> int:
    from easytune import feedback

    if args.action == "add":
        if not args.target:
            raise UserError("cli.error.target_required", action="feedback add")
        row = feedback.record_feedback(settings, args.target, args.prompt or "", args.answer, args.rating,
                                       correction=args.correction, system=args.system)
        _emit(args, row, t("feedback.recorded", args.lang, rating="👍" if row["rating"] > 0 else "👎",
                           target=row["target"]))
    elif args.action == "list":
        rows = feedback.list_feedback(settings, args.target)
        lines = [f"{'👍' if r['rating'] > 0 else '👎'} {r['target']:<24} {r['prompt'][:40]}"
                 + (f"  → {r['correction'][:40]}" if r["correction"] else "") for r in rows]
        _emit(args, rows, "\n".join(lines) or t("feedback.none", args.lang))
    else:
        result = feedback.feedback_to_dataset(settings, name=args.name, target=args.target, labelled=args.labelled)
        name = result["dataset"]["name"]
        human = (t("feedback.dataset_same", args.lang, name=name) if result["duplicate_of"] else
                 t("feedback.dataset_labelled", args.lang, name=name, rows=result["rows"], good=result["good"],
                   bad=result["bad"]) if args.labelled else
                 t("feedback.dataset_created", args.lang, name=name, rows=result["rows"],
                   corrected=result["corrected"], approved=result["approved"]))
        _emit(args, result, human)
    return 0


def cmd_serve(args, settings) -> int:
    from easytune.serve import DEFAULT_PORT, DEFAULT_QUEUE, serve

    return serve(settings, args.target, host=args.host or "127.0.0.1", port=args.port or DEFAULT_PORT,
                 password=args.password, queue=DEFAULT_QUEUE if args.queue is None else args.queue)


@contextlib.contextmanager
def _stdout_to_stderr():
    """Converters (nncf, OpenVINO) print their own progress on stdout; it must carry only our report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def cmd_export(args, settings) -> int:
    from easytune.export import export_job
    from easytune.export.service import human_size

    def show(fraction: float, key: str) -> None:
        if not args.json:
            print(f"{fraction * 100:3.0f}%  {t(key, args.lang)}", file=sys.stderr, flush=True)

    with _stdout_to_stderr():
        result = export_job(settings, args.job, args.format, out_dir=args.out, confirm_unsafe=args.confirm_unsafe,
                            progress=show, lang=args.lang)
    check = result["verification"]
    _emit(args, result, t("export.cli.ready", args.lang, format=result["format"], path=result["path"],
                          size=human_size(result["size_bytes"]), identical=check["identical"], total=check["total"],
                          agreement=f"{check['agreement'] * 100:.1f}", tps=check["tokens_per_s"]))
    return 0


def cmd_exports(args, settings) -> int:
    from easytune.export import list_exports, remove_export
    from easytune.export.service import human_size

    if args.action == "list":
        rows = list_exports(settings, args.job)
        lines = [f"{r['id']}  {r['job_id']}  {r['format']:<14} {t('export.state.' + r['state'], args.lang):<6} "
                 f"{human_size(r['size_bytes'] or 0):>9}  {r['path']}"
                 + (f"\n    {t(r['error']['key'], args.lang, **r['error']['params'])}" if r["error"] else "")
                 for r in rows]
        _emit(args, rows, "\n".join(lines) or t("export.cli.none", args.lang))
        return 0
    if args.action == "add-to":
        return _add_to_app(args, settings)
    if not args.target:
        raise UserError("export.cli.id_required")
    row = remove_export(settings, args.target)
    key = "export.cli.removed" if row["deleted_folder"] else "export.cli.forgotten"
    _emit(args, row, t(key, args.lang, id=row["id"], path=row["path"]))
    return 0


def _add_to_app(args, settings) -> int:
    from easytune.export.apps import add_to_app

    if not args.target or not args.app:
        raise UserError("export.cli.app_required")
    done = add_to_app(settings, args.target, args.app, name=args.name)
    if done["app"] == "ollama":
        human = t("export.cli.added_ollama", args.lang, name=done["name"], run=done["run"])
    elif done["already"]:
        human = t("export.cli.added_lmstudio_already", args.lang, path=done["path"])
    else:
        human = t("export.cli.added_lmstudio", args.lang, path=done["path"],
                  how=t("export.cli.linked" if done["linked"] else "export.cli.copied", args.lang))
    _emit(args, done, human)
    return 0


def _progress_printer(args):
    """A progress line with the time left, at every 5 % (none with --json)."""
    from easytune.evaluation.progress import Eta

    eta, shown = Eta(), [-1]

    def show(done: float, total: float) -> None:
        step = int(20 * done / total) if total else 0
        if not args.json and step > shown[0]:
            shown[0] = step
            print(t("evaluation.cli.progress", args.lang, progress=eta.text(done, total, args.lang)), file=sys.stderr,
                  flush=True)
    return show


def cmd_eval(args, settings) -> int:
    from easytune.evaluation.service import evaluate_job

    with _stdout_to_stderr():
        result = evaluate_job(settings, args.job, lang=args.lang, limit=args.limit, questions=args.questions,
                              progress=_progress_printer(args))
    text = result["text"]
    if args.answers:
        from easytune.evaluation.verdict import answers_text

        text += "\n\n" + answers_text(result, args.lang)
    _emit(args, result, text)
    return 0


def cmd_safety(args, settings) -> int:
    from easytune.evaluation.safety import safety_check

    with _stdout_to_stderr():
        result = safety_check(settings, args.job, adapter=args.adapter, base=args.base, lang=args.lang,
                              progress=_progress_printer(args))
    _emit(args, result, result["text"])
    return 0


def cmd_evals(args, settings) -> int:
    from easytune.evaluation.service import list_evaluations
    from easytune.evaluation.verdict import verdict_text

    rows = list_evaluations(settings, job_id=args.job, dataset=args.dataset, kind=args.kind)
    lines = [f"{r['id']}  {r['kind']:<7}  {r['job_id'] or r['result'].get('adapter')}  "
             f"{'✓' if r['passed'] else '✗'}  {verdict_text({**r['result'], 'points': [], 'next': []}, args.lang)}"
             for r in rows]
    _emit(args, rows, "\n".join(lines) or t("evaluation.cli.none", args.lang))
    return 0


def cmd_doctor(args, settings) -> int:
    from easytune.doctor import diagnose, render

    report = diagnose(settings)
    _emit(args, report, render(report, args.lang))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: an option given before the command (`easytune --lang en data list`) is not reset by the
    # command's own copy of it; main() fills in the defaults.
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document (for scripts)")
    common.add_argument("--lang", choices=("zh", "en"), default=argparse.SUPPRESS, help="language of messages")

    parser = argparse.ArgumentParser(prog="easytune", parents=[common],
                                     description="EasyTune: offline, intent-driven LLM fine-tuning.")
    sub = parser.add_subparsers(dest="command")

    ui = sub.add_parser("ui", parents=[common], help="start the web app (the default)")
    ui.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=None, help="port (default 7860)")
    ui.add_argument("--password", default=None,
                    help="at least 8 characters; required when --host is not a loopback address")
    ui.set_defaults(func=cmd_ui)

    train = sub.add_parser("train", parents=[common], help="train from a plan YAML (the one the UI shows)")
    train.add_argument("--config", required=True, help="plan YAML")
    train.add_argument("--detach", action="store_true", help="start and return; follow with `jobs show`")
    train.add_argument("--machine-rank", type=int, default=None,
                       help="this machine's rank in a run over several machines (0: the main one); overrides the plan")
    train.add_argument("--main-process-ip", default=None,
                       help="the main machine's address as this machine reaches it; overrides the plan")
    train.add_argument("--main-process-port", type=int, default=None,
                       help="the port the main machine opens for the others; overrides the plan")
    train.set_defaults(func=cmd_train)

    plan = sub.add_parser("plan", parents=[common], help="choose every training setting from what you want, explained")
    plan.add_argument("--model", default="easytune-tiny")
    plan.add_argument("--data", help="dataset id or name, or demo:<name> (required unless --explain)")
    plan.add_argument("--task", default="auto",
                      help="auto (picked from the data) | chat | domain | style | extraction | preference | pretrain")
    plan.add_argument("--level", default="L2", help="L1 style/format · L2 domain knowledge · L3 complex instructions")
    plan.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="keep this setting as given (--explain lists the settings)")
    plan.add_argument("--explain", nargs="?", const="", metavar="SETTING",
                      help="what each setting accepts, its default and its help; or one setting's, at length")
    plan.add_argument("--out", help="write the plan YAML here (for `easytune train --config`)")
    plan.set_defaults(func=cmd_plan)

    baseline = sub.add_parser("baseline", parents=[common],
                              help="what the base model already answers right on the rows training will hold out")
    baseline.add_argument("--config", help="plan YAML (its model, data, split and seed)")
    baseline.add_argument("--model", default="easytune-tiny")
    baseline.add_argument("--data", default="demo:shop_faq_zh", help="dataset id or name, or demo:<name>")
    baseline.add_argument("--limit", type=int, default=20, help="questions to ask")
    baseline.set_defaults(func=cmd_baseline)

    jobs = sub.add_parser("jobs", parents=[common],
                          help="list, inspect, stop, pause, resume, finish, restart, clone and delete jobs; the queue; "
                               "logs; metrics, exported to TensorBoard and MLflow; jobs compared side by side")
    jobs.add_argument("action", choices=("list", "show", "metrics", "stop", "logs", "pause", "resume", "finish",
                                         "restart", "clone", "next", "versions", "delete", "rm", "queue",
                                         "export-metrics", "compare"))
    jobs.add_argument("job", nargs="?")
    jobs.add_argument("more", nargs="*", metavar="JOB", help="(compare) the other jobs to set beside the first")
    jobs.add_argument("--state", default=None, help="only jobs in this state (list)")
    jobs.add_argument("--set", action="append", metavar="KEY=VALUE",
                      help="change this plan setting (clone, next; resume: learning_rate, retention_ratio, "
                           "forgetting_guard); `easytune plan --explain` lists the settings")
    jobs.add_argument("--suggest", choices=("retention", "lower_lr", "less_memory"),
                      help="(clone, resume) knowledge-retention mode at half the learning rate, 0.3 × the "
                           "learning rate, or (clone) half the batch / gradient checkpointing after running "
                           "out of memory")
    jobs.add_argument("--data", help="(next) the new version's data: a dataset id or name, e.g. its feedback")
    jobs.add_argument("--missed", action="store_true",
                      help="(next) instead of --data: what the job trained on, plus the new questions its last "
                           "evaluation found answered wrong (your test questions) with their right answers")
    jobs.add_argument("--follow", action="store_true",
                      help="(resume, restart, clone, next) wait for the job and report")
    jobs.add_argument("--tensorboard", nargs="?", const="", metavar="DIR",
                      help="(export-metrics) TensorBoard event files, in DIR/<job> (default: the job folder's "
                           "tensorboard/); without --mlflow, only these")
    jobs.add_argument("--mlflow", nargs="?", const="", metavar="DIR",
                      help="(export-metrics) a run in the MLflow file store DIR (default: tracking/mlruns in the "
                           "EasyTune home); without --tensorboard, only this")
    jobs.set_defaults(func=cmd_jobs)

    sweep = sub.add_parser("sweep", parents=[common],
                           help="try several settings: short trials of a plan, each an ordinary job; the best wins")
    sweep.add_argument("action", nargs="?", default="run", choices=("run", "list", "show", "best", "resume", "stop"),
                       help="run (the default) a new sweep of --config; list; show, best, resume or stop SWEEP")
    sweep.add_argument("sweep", nargs="?", help="sweep id (show, best, resume, stop)")
    sweep.add_argument("--config", help="plan YAML whose values the trials vary around (run)")
    sweep.add_argument("--trials", type=int, help="how many trials (run; default 6)")
    sweep.add_argument("--vary", help="settings to vary, comma-separated (run; default learning_rate,lora_r,epochs)")
    sweep.add_argument("--metric", default="auto", choices=("auto", "val_loss", "fact_accuracy"),
                       help="what trials are compared by (run): auto = held-out fact accuracy where the answers "
                            "carry facts, else validation loss; forgetting past its warning rules a trial out")
    sweep.add_argument("--fraction", type=float,
                       help="share of the plan's steps each trial trains (run; default 0.3; 1 = full length)")
    sweep.add_argument("--try", dest="try_values", action="append", metavar="KEY=VALUE[,KEY=VALUE]",
                       help="values to try first, one trial each, after the plan's own (run; repeat for more)")
    sweep.add_argument("--prune-after", type=int, metavar="N",
                       help="stop a hopeless trial early once N trials have finished (run; default 2; 0 = never)")
    sweep.add_argument("--out", help="(best) write the best plan YAML here")
    sweep.add_argument("--train", action="store_true", help="(best) train the best plan in full, as `train` does")
    sweep.add_argument("--detach", action="store_true", help="(best --train) start and return")
    sweep.set_defaults(func=cmd_sweep)

    data = sub.add_parser("data", parents=[common], help="import, list, show, remove and export datasets")
    data.add_argument("action", choices=("add", "list", "show", "rm", "export", "rename", "reimport", "tokens"))
    data.add_argument("--model", default="easytune-tiny", help="whose tokenizer and context to measure with (tokens)")
    data.add_argument("target", nargs="?", help="a file to add, or a dataset id or name")
    data.add_argument("--name", help="name for the imported dataset (add), or the new name (rename)")
    data.add_argument("--map", action="append", metavar="ROLE=FIELD",
                      help="field mapping override, e.g. --map prompt=问题 --map response=答案 (add, reimport)")
    data.add_argument("--mask-pii", action="store_true",
                      help="mask phone numbers, e-mail, IDs, cards (add, reimport)")
    data.add_argument("--keep", action="append", metavar="VALUE",
                      help="a value that looks personal but is not, e.g. --keep 400-820-1234 for your hotline: "
                           "never masked nor counted (add, reimport; repeat for more)")
    data.add_argument("--drop-duplicates", action="store_true", help="leave out repeated rows (add, reimport)")
    data.add_argument("--search", help="only names containing this (list)")
    data.add_argument("--shape", help="only this shape, e.g. alpaca, sharegpt, preference (list)")
    data.add_argument("--offset", type=int, default=0, help="first row to show (show)")
    data.add_argument("--limit", type=int, default=20, help="rows to show (show)")
    data.add_argument("--out", help="file or folder to write (export; default: the current folder)")
    data.set_defaults(func=cmd_data)

    models = sub.add_parser("models", parents=[common], help="list, add, inspect, check fit of and remove models")
    models.add_argument("action", choices=("list", "add", "info", "fit", "rm"))
    models.add_argument("target", nargs="?", help="a folder, hub id, GGUF file, ollama:NAME, lmstudio:PATH, "
                                                  "registered name or catalog id")
    models.add_argument("--name", help="name to register under (add)")
    models.add_argument("--trust-remote-code", action="store_true",
                        help="allow this model's own Python code to run (add; only for sources you trust)")
    models.add_argument("--delete-files", action="store_true", help="also delete files EasyTune downloaded (rm)")
    models.add_argument("--method", choices=("lora", "qlora", "full"), default="lora", help="(fit)")
    models.add_argument("--seq-len", type=int, default=1024, help="(fit)")
    models.add_argument("--batch", type=int, default=4, help="(fit)")
    models.add_argument("--lora-r", type=int, default=16, help="(fit)")
    models.add_argument("--grad-checkpointing", action="store_true", help="(fit)")
    models.set_defaults(func=cmd_models)

    chat = sub.add_parser("chat", parents=[common], help="ask a job's model, a model, or an exported folder")
    chat.add_argument("target", help="job id, model name, model folder, or OpenVINO or GGUF export folder")
    chat.add_argument("-q", "--question", required=True)
    chat.add_argument("--system", default=None, help="system message (the assistant's role and rules)")
    chat.add_argument("--temperature", type=float, default=0.0,
                      help="0 (default): greedy, the same answer every time; 0.7: varied, as in the app's chat")
    chat.add_argument("--top-p", type=float, default=0.9, help="sample only from the likeliest tokens (0-1)")
    chat.add_argument("--max-new-tokens", type=int, default=256, help="longest answer, in tokens")
    chat.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    chat.add_argument("--base", action="store_true", help=argparse.SUPPRESS)  # older scripts; targets resolve alike
    chat.set_defaults(func=cmd_chat)

    feedback = sub.add_parser("feedback", parents=[common],
                              help="rate answers, list ratings, turn corrections into a dataset")
    feedback.add_argument("action", choices=("add", "list", "to-dataset"))
    feedback.add_argument("target", nargs="?", help="what answered: job id, model name or folder (add; filter)")
    feedback.add_argument("--prompt", help="the question (add)")
    feedback.add_argument("--answer", help="the model's answer (add)")
    feedback.add_argument("--rating", choices=("up", "down"), help="(add)")
    feedback.add_argument("--correction", help="the answer it should have given (add)")
    feedback.add_argument("--system", help="the system message it was asked with (add)")
    feedback.add_argument("--name", help="name of the new dataset (to-dataset)")
    feedback.add_argument("--labelled", action="store_true",
                          help="answers labelled good or bad, for KTO: every 👎 teaches too (to-dataset)")
    feedback.set_defaults(func=cmd_feedback)

    serve = sub.add_parser("serve", parents=[common], help="an OpenAI-compatible API for a job's model or a model")
    serve.add_argument("target", help="job id, model name, model folder, or OpenVINO or GGUF export folder")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--password", default=None,
                       help="API key clients must send (at least 8 characters); required when --host is not a "
                            "loopback address")
    serve.add_argument("--queue", type=int, default=None, metavar="N",
                       help="requests that may wait for the model (default 64); more are refused at once with 503")
    serve.set_defaults(func=cmd_serve)

    status = sub.add_parser("status", parents=[common], help="the dashboard: counts, recent jobs, machine load")
    status.set_defaults(func=cmd_status)

    from easytune.export.apps import APPS as EXPORT_APPS
    from easytune.export.formats import NAMES as EXPORT_FORMATS

    export = sub.add_parser("export", parents=[common],
                            help="export a finished job: merged model, LoRA adapter, OpenVINO INT8/INT4, "
                                 "GGUF F16/Q8_0/Q4_K_M or LoRA adapter")
    export.add_argument("job", help="job id")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="gguf-q4_k_m needs llama.cpp's quantiser (pip install llama-cpp-python)")
    export.add_argument("--out", help="folder to write (default: exports/<job>/<format> in the EasyTune home)")
    export.add_argument("--confirm-unsafe", action="store_true",
                        help="export although the latest safety check flagged the model or the latest evaluation "
                             "judged the run harmful (recorded in the model card)")
    export.set_defaults(func=cmd_export)

    exports = sub.add_parser("exports", parents=[common],
                             help="list exports, remove one and its folder, or add a GGUF export to LM Studio or "
                                  "Ollama on this machine")
    exports.add_argument("action", choices=("list", "rm", "add-to"))
    exports.add_argument("target", nargs="?", help="export id (rm, add-to)")
    exports.add_argument("--job", help="only this job's exports (list)")
    exports.add_argument("--app", choices=EXPORT_APPS,
                         help="(add-to) place the file in LM Studio's models folder, or `ollama create` it")
    exports.add_argument("--name", help="(add-to) its name there (default: easytune-<job>-<format>)")
    exports.set_defaults(func=cmd_exports)

    evaluate = sub.add_parser("eval", parents=[common],
                              help="blind evaluation of a finished job: base vs tuned on trained, held-out and "
                                   "general questions, with a verdict")
    evaluate.add_argument("job", help="job id")
    evaluate.add_argument("--limit", type=int, default=None, help="at most N questions per bucket (faster)")
    evaluate.add_argument("--questions", metavar="DATASET",
                          help="your own test questions (a dataset name or id, or a data file, imported first), "
                               "asked instead of the rows held out of training: e.g. the taught facts in other words")
    evaluate.add_argument("--answers", action="store_true",
                          help="also print every answer judged: the question, its reference, both models' answers")
    evaluate.set_defaults(func=cmd_eval)

    safety = sub.add_parser("safety", parents=[common],
                            help="does the tuned model still refuse harmful requests its base refused?")
    safety.add_argument("job", nargs="?", help="job id (or use --adapter)")
    safety.add_argument("--adapter", help="a LoRA adapter folder to check before use")
    safety.add_argument("--base", help="the adapter's base model: name, folder or hub id (default: from its config)")
    safety.set_defaults(func=cmd_safety)

    evals = sub.add_parser("evals", parents=[common], help="list stored evaluations and safety checks")
    evals.add_argument("action", choices=("list",))
    evals.add_argument("--job", help="only this job's")
    evals.add_argument("--dataset", help="only jobs trained on this dataset")
    evals.add_argument("--kind", choices=("quality", "safety"), help="only this kind")
    evals.set_defaults(func=cmd_evals)

    doctor = sub.add_parser("doctor", parents=[common], help="hardware, versions and the home folder")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if not any(arg in commands for arg in argv) and not {"-h", "--help"} & set(argv):
        argv = ["ui", *argv]  # `easytune` alone (or with only options) starts the app
    args = parser.parse_args(argv)
    args.json, args.lang = getattr(args, "json", False), getattr(args, "lang", None)
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "password")}
    settings = load_settings(**overrides, language=args.lang)
    args.lang = normalize_lang(settings.language)
    go_offline()  # before any command imports a library that would reach the network on its own
    try:
        return args.func(args, settings)
    except UserError as exc:
        if args.json:
            print(json.dumps({"error": exc.key, "params": exc.params, "message": exc.message(args.lang)},
                             ensure_ascii=False, default=str))
        print(exc.message(args.lang), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
