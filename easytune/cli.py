"""`easytune`: the command line over the same services the UI calls.

Every command that reports something takes --json (one JSON document on stdout) so scripts and tests
read it; human output goes to stdout in the user's language (--lang, EASYTUNE_LANG, or the locale).
Imports stay inside the commands: `easytune ui` must not pay for the training stack.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from easytune.i18n import UserError, normalize_lang, t
from easytune.settings import load_settings


def _emit(args, data, human: str | None = None) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif human is not None:
        print(human)


def cmd_ui(args, settings) -> int:
    from easytune.ui.server import serve

    return serve(settings)


def _follow(settings, job_id: str, lang: str, quiet: bool) -> dict:
    """Follow a job until it ends, printing progress; Ctrl-C stops it cleanly."""
    from easytune import jobs

    shown_step, shown_events = 0, 0
    try:
        while True:
            job = jobs.sync_job(settings, job_id)
            if not quiet:
                loss = jobs.metrics(settings, job_id).get("loss", [])
                for step, value in loss[shown_step:]:
                    print(t("cli.train.step", lang, step=step, total=job["total_steps"], loss=f"{value:.4f}"),
                          file=sys.stderr, flush=True)
                shown_step = len(loss)
                logged = jobs.events(settings, job_id, types=("log",))
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
    from easytune import health, jobs

    series = jobs.metrics(settings, job["id"])
    loss, cf = series.get("loss", []), series.get("cf_pct", [])
    error = json.loads(job["error"]) if job.get("error") else None
    warnings = [dict(w, message=t(w["key"], lang, **w["params"]), advice=t(w["action"], lang))
                for w in health.assess(series, job["total_steps"])]
    return {**job, "first_loss": loss[0][1] if loss else None, "final_loss": loss[-1][1] if loss else None,
            "cf_pct": cf[-1][1] if cf else None, "warnings": warnings,
            "error_message": t(error["key"], lang, **error["params"]) if error else None}


def cmd_train(args, settings) -> int:
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(args.config)
    job = jobs.launch(settings, plan)
    if not args.json:
        print(t("cli.train.started", args.lang, job=job["id"], dir=job["job_dir"]), flush=True)
    if args.detach:
        _emit(args, job_summary(settings, job, args.lang))
        return 0
    job = _follow(settings, job["id"], args.lang, quiet=args.json)
    summary = job_summary(settings, job, args.lang)
    _emit(args, summary, t("cli.train.finished", args.lang, state=t("state." + job["state"], args.lang),
                           loss=summary["final_loss"], error=summary["error_message"] or ""))
    return 0 if job["state"] == "COMPLETED" else 1


def cmd_plan(args, settings) -> int:
    import yaml

    from easytune.plan.service import make_plan

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)} if args.set else None
    proposal = make_plan(settings, model=args.model, dataset=args.data, task=args.task, level=args.level,
                         overrides=overrides)
    if args.out:
        proposal.plan.save(Path(args.out), args.lang)
    report = proposal.to_dict(args.lang)
    lines = [f"{name} = {getattr(proposal.plan, name)}  — {entry['text']}" for name, entry in report["reasons"].items()]
    lines += [f"⚠ {w['text']}" for w in report["warnings"]]
    if args.out:
        lines.append(t("cli.plan.saved", args.lang, path=args.out))
    _emit(args, report, "\n".join(lines))
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
    if not args.job:
        raise UserError("cli.error.job_required", action=args.action)
    if args.action == "show":
        summary = job_summary(settings, jobs.get_job(settings, args.job), args.lang)
        _emit(args, summary, "\n".join(f"{k}: {v}" for k, v in summary.items()))
    elif args.action == "stop":
        job = jobs.stop_job(settings, args.job)
        _emit(args, job, t("state." + job["state"], args.lang))
    elif args.action == "logs":
        logged = jobs.events(settings, args.job)
        lines = [jobs.event_text(e["data"], args.lang) for e in logged]
        _emit(args, [e["data"] for e in logged], "\n".join(lines))
    return 0


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
                                      mask_pii=args.mask_pii, drop_duplicates=args.drop_duplicates)
        _emit(args, result, report_markdown(result["report"], args.lang, result["duplicate_of"]))
    elif args.action == "show":
        shown = datasets.show_dataset(settings, args.target, args.offset, args.limit)
        rows = "\n".join(json.dumps(r, ensure_ascii=False) for r in shown["preview"].get("rows", []))
        _emit(args, shown, rows)
    elif args.action == "rm":
        row = datasets.remove_dataset(settings, args.target)
        _emit(args, row, t("cli.data.removed", args.lang, name=row["name"]))
    elif args.action == "export":
        path = datasets.export_dataset(settings, args.target, args.out or f"{args.target}.jsonl")
        _emit(args, {"path": str(path)}, t("cli.data.exported", args.lang, path=path))
    return 0


def cmd_models(args, settings) -> int:
    from easytune.models import registry

    if args.action == "list":
        listing = registry.list_models(settings, args.lang)
        lines = [f"{m['name']:<28} {m['source']:<9} {m['path']}" for m in listing["models"]]
        lines += [t("cli.models.catalog_head", args.lang)]
        lines += [f"  {'✓' if c['on_disk'] else '·'} {c['id']:<32} {c['params_b']:>5}B  {c['good_for']}"
                  for c in listing["catalog"]]
        _emit(args, listing, "\n".join(lines))
        return 0
    if not args.target:
        raise UserError("cli.error.target_required", action=f"models {args.action}")
    if args.action == "add":
        added = registry.add_model(settings, args.target, name=args.name, trust_remote_code=args.trust_remote_code)
        warnings = [t(w["key"], args.lang, **w["params"]) for w in added["source"]["warnings"]]
        _emit(args, added, "\n".join([t("cli.models.added", args.lang, name=added["model"]["name"],
                                                                        path=added["model"]["path"]), *warnings]))
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

    if args.base:
        reply = chat.ask_base(settings, args.target, args.question, max_new_tokens=args.max_new_tokens)
    else:
        reply = chat.ask_job(settings, args.target, args.question, max_new_tokens=args.max_new_tokens)
    _emit(args, {"question": args.question, "answer": reply}, reply)
    return 0


def cmd_doctor(args, settings) -> int:
    from easytune.doctor import diagnose, render

    report = diagnose(settings)
    _emit(args, report, render(report, args.lang))
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
    common.add_argument("--lang", choices=("zh", "en"), default=None, help="language of messages")

    parser = argparse.ArgumentParser(prog="easytune", parents=[common],
                                     description="EasyTune: offline, intent-driven LLM fine-tuning.")
    sub = parser.add_subparsers(dest="command")

    ui = sub.add_parser("ui", parents=[common], help="start the web app (the default)")
    ui.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=None, help="port (default 7860)")
    ui.add_argument("--password", default=None, help="required when --host is not a loopback address")
    ui.set_defaults(func=cmd_ui)

    train = sub.add_parser("train", parents=[common], help="train from a plan YAML (the one the UI shows)")
    train.add_argument("--config", required=True, help="plan YAML")
    train.add_argument("--detach", action="store_true", help="start and return; follow with `jobs show`")
    train.set_defaults(func=cmd_train)

    plan = sub.add_parser("plan", parents=[common], help="choose every training setting from what you want, explained")
    plan.add_argument("--model", default="easytune-tiny")
    plan.add_argument("--data", required=True, help="dataset id or name, or demo:<name>")
    plan.add_argument("--task", default="chat", help="chat | domain | style | extraction | preference | pretrain")
    plan.add_argument("--level", default="L2", help="L1 style/format · L2 domain knowledge · L3 complex instructions")
    plan.add_argument("--set", action="append", metavar="KEY=VALUE", help="keep this setting as given")
    plan.add_argument("--out", help="write the plan YAML here (for `easytune train --config`)")
    plan.set_defaults(func=cmd_plan)

    jobs = sub.add_parser("jobs", parents=[common], help="list, inspect, stop jobs and read their logs")
    jobs.add_argument("action", choices=("list", "show", "stop", "logs"))
    jobs.add_argument("job", nargs="?")
    jobs.add_argument("--state", default=None, help="only jobs in this state (list)")
    jobs.set_defaults(func=cmd_jobs)

    data = sub.add_parser("data", parents=[common], help="import, list, show, remove and export datasets")
    data.add_argument("action", choices=("add", "list", "show", "rm", "export"))
    data.add_argument("target", nargs="?", help="a file to add, or a dataset id or name")
    data.add_argument("--name", help="name for the imported dataset (add)")
    data.add_argument("--map", action="append", metavar="ROLE=FIELD",
                      help="field mapping override, e.g. --map prompt=问题 --map response=答案 (add)")
    data.add_argument("--mask-pii", action="store_true", help="mask phone numbers, e-mail, IDs, cards (add)")
    data.add_argument("--drop-duplicates", action="store_true", help="leave out repeated rows (add)")
    data.add_argument("--search", help="only names containing this (list)")
    data.add_argument("--shape", help="only this shape, e.g. alpaca, sharegpt, preference (list)")
    data.add_argument("--offset", type=int, default=0, help="first row to show (show)")
    data.add_argument("--limit", type=int, default=20, help="rows to show (show)")
    data.add_argument("--out", help="file to write (export)")
    data.set_defaults(func=cmd_data)

    models = sub.add_parser("models", parents=[common], help="list, add, inspect, check fit of and remove models")
    models.add_argument("action", choices=("list", "add", "info", "fit", "rm"))
    models.add_argument("target", nargs="?", help="a folder, hub id, registered name or catalog id")
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

    chat = sub.add_parser("chat", parents=[common], help="ask a finished job's model (or a base model)")
    chat.add_argument("target", help="job id, or a model name with --base")
    chat.add_argument("-q", "--question", required=True)
    chat.add_argument("--base", action="store_true", help="TARGET is a base model, not a job")
    chat.add_argument("--max-new-tokens", type=int, default=128)
    chat.set_defaults(func=cmd_chat)

    doctor = sub.add_parser("doctor", parents=[common], help="hardware, versions and the home folder")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["ui", *argv]  # `easytune` alone starts the app
    args = build_parser().parse_args(argv)
    overrides = {k: getattr(args, k, None) for k in ("host", "port", "password")}
    settings = load_settings(**overrides, language=args.lang)
    args.lang = normalize_lang(settings.language)
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
