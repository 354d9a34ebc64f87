"""Export a finished job: write the format into a hidden staging folder next to the target, check that
the result answers like the trained model, add the model card, and only then rename it into place.
The `exports` table follows each one: EXPORTING → READY | FAILED (with the reason's message key)."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from easytune.export.formats import FORMATS, get_format
from easytune.i18n import UserError
from easytune.jobs.events import ACTIVE_STATES
from easytune.jobs.folder import JobFolder
from easytune.settings import Settings
from easytune.store import dumps, open_db

# What an export leaves free on the disk besides itself: a share of its own size, at least a little and at
# most what the system needs to keep working — so a 1 MB adapter is not refused for a merged model's margin.
KEEP_FREE_SHARE = 0.25
KEEP_FREE_MIN = 32 * 2**20
KEEP_FREE_MAX = 512 * 2**20
Progress = Callable[[float, str], None]


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def latest_evaluation(settings: Settings, job_id: str, kind: str) -> dict | None:
    """The newest row of `evaluations` of this kind for the job (its result JSON decoded), or None."""
    db = open_db(settings.db_path)
    rows = list(db["evaluations"].rows_where("job_id = ? and kind = ?", [job_id, kind],
                                             order_by="created_at desc", limit=1))
    return dict(rows[0], result=json.loads(rows[0]["result"] or "{}")) if rows else None


def needed_bytes(fmt: str, model_path: str, adapter_path: str | None) -> int:
    spec = FORMATS[fmt]
    if spec.writer == "adapter":
        return int(folder_size(Path(adapter_path)) * spec.space_factor) + 16 * 2**20
    weights = sum(f.stat().st_size for f in Path(model_path).glob("*.safetensors"))
    return int(weights * spec.space_factor) + 16 * 2**20


def keep_free_for(need: int) -> int:
    return min(KEEP_FREE_MAX, max(KEEP_FREE_MIN, int(need * KEEP_FREE_SHARE)))


def check_disk(target: Path, need: int, keep_free_bytes: int) -> None:
    probe = target
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + keep_free_bytes:
        raise UserError("export.error.disk", path=str(probe), need=human_size(need), free=human_size(free),
                        reserve=human_size(keep_free_bytes))


def _check_target(db, target: Path) -> None:
    """A target may be new, empty, or an earlier export (replaced once the new one is verified)."""
    earlier = list(db["exports"].rows_where("path = ?", [str(target)]))
    if any(row["state"] == "EXPORTING" for row in earlier):
        raise UserError("export.error.in_progress", path=str(target))
    if target.exists() and not earlier and (not target.is_dir() or any(target.iterdir())):
        raise UserError("export.error.out_exists", path=str(target))


def _build(fmt: str, stage: Path, model_path: str, adapter_path: str | None, report: Progress,
           name: str | None = None) -> dict:
    from easytune.export import build

    spec = FORMATS[fmt]
    if spec.writer == "adapter":
        report(0.1, "export.progress.copy")
        return build.write_adapter(adapter_path, stage)
    if spec.writer == "merged":
        report(0.1, "export.progress.merge")
        return build.write_merged(model_path, adapter_path, stage)
    if spec.writer == "gguf-lora":
        from easytune.export.gguf_lora import write_gguf_lora

        report(0.2, "export.progress.convert_gguf_lora")
        return write_gguf_lora(model_path, adapter_path, stage, name=name)
    source = Path(model_path)
    if adapter_path:  # OpenVINO and GGUF convert a whole model: merge first, into a scratch folder in the stage
        report(0.1, "export.progress.merge")
        source = stage / ".merged"
        build.write_merged(model_path, adapter_path, source)
    if spec.writer == "gguf":
        from easytune.export.gguf import write_gguf

        report(0.3, "export.progress.convert_gguf")
        details = write_gguf(source, stage, fmt, name=name)
    else:
        report(0.3, "export.progress.convert")
        details = build.write_openvino(source, stage, spec.openvino_bits)
    if adapter_path:
        shutil.rmtree(source)
    return details


def _move_into_place(stage: Path, target: Path, export_id: str) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{export_id}"
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_job(settings: Settings, job_id: str, fmt: str, *, out_dir: str | Path | None = None,
               confirm_unsafe: bool = False, progress: Progress | None = None, lang: str | None = None,
               keep_free_bytes: int | None = None) -> dict:
    """Export a finished job as `fmt` (a name in formats.FORMATS); returns the READY row with the verification.

    progress(fraction 0..1, message key) reports the steps. keep_free_bytes is the disk space the export
    must leave free (by default scaled to the export's size: keep_free_for). Raises UserError for what the
    user can fix; a failed export leaves a FAILED row and no folder at the target.
    """
    from easytune.chat import job_model
    from easytune.jobs import get_job

    report = progress or (lambda fraction, key: None)
    spec = get_format(fmt)
    spec.check_available()
    job = get_job(settings, job_id)
    if job["state"] in ACTIVE_STATES:
        raise UserError("export.error.still_training", job=job_id, state=job["state"])
    model_path, adapter_path = job_model(settings, job_id)
    if spec.writer in ("adapter", "gguf-lora") and adapter_path is None:
        raise UserError("export.error.no_adapter", job=job_id)
    if spec.writer == "gguf":  # a model GGUF cannot hold is refused before anything is written
        from easytune.export.gguf import check_supported

        check_supported(model_path, adapter_path or model_path)
    if spec.writer == "gguf-lora":
        from easytune.export.gguf_lora import check_lora_supported

        check_lora_supported(model_path, adapter_path)
    resolved = JobFolder(job["job_dir"]).resolved()
    if not Path(resolved["train_file"]).is_file():  # the check asks the model questions from it
        raise UserError("export.error.no_data", job=job_id, path=resolved["train_file"])
    safety = latest_evaluation(settings, job_id, "safety")
    unsafe = safety is not None and not safety["passed"]
    if unsafe and not confirm_unsafe:
        raise UserError("export.error.unsafe", job=job_id)
    quality = latest_evaluation(settings, job_id, "quality")
    harmful = quality is not None and quality["result"].get("verdict") == "harmful"
    if harmful and not confirm_unsafe:  # "this run did harm": asked first, like a failed safety check
        raise UserError("export.error.harmful", job=job_id)
    unsafe = unsafe or harmful  # what the confirmation covered, kept with the export and in its card

    target = Path(out_dir or settings.folder("exports") / job_id / fmt).expanduser().resolve()
    db = open_db(settings.db_path)
    _check_target(db, target)
    export_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    db["exports"].insert({"id": export_id, "job_id": job_id, "format": fmt, "path": str(target), "state": "EXPORTING",
                          "size_bytes": 0, "verified": 0, "tokens_per_s": None, "safety_confirmed": int(unsafe),
                          "error": None, "created_at": time.time(), "finished_at": None})
    # Hidden and named as unfinished: a half-written export never looks like a complete one.
    stage = target.parent / f".{target.name}.partial-{export_id}"
    try:
        report(0.02, "export.progress.check")
        need = needed_bytes(fmt, model_path, adapter_path)
        check_disk(target, need, keep_free_for(need) if keep_free_bytes is None else keep_free_bytes)
        stage.mkdir(parents=True)
        details = _build(fmt, stage, model_path, adapter_path, report, name=job["name"])
        report(0.7, "export.progress.verify")
        verification = _verify(fmt, stage, model_path, adapter_path, resolved["train_file"])
        report(0.9, "export.progress.card")
        _write_card(settings, job, resolved, fmt, stage, target, verification, details, safety, unsafe, lang)
        size = folder_size(stage)
        _move_into_place(stage, target, export_id)
    except BaseException as exc:
        key, params = failure_reason(exc, target)
        _fail(db, export_id, key, params)
        if isinstance(exc, UserError) or not isinstance(exc, Exception):
            raise  # a UserError says it already; Ctrl-C and friends go on up
        raise UserError(key, **params) from exc
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    with db.conn:
        db.execute("delete from exports where path = ? and id != ?", [str(target), export_id])
        db["exports"].update(export_id, {"state": "READY", "size_bytes": size, "verified": 1,
                                         "tokens_per_s": served_speed(verification), "finished_at": time.time()})
    report(1.0, "export.progress.done")
    return {**_public(db["exports"].get(export_id)), "verification": verification, **details}


def failure_reason(exc: BaseException, target: Path) -> tuple[str, dict]:
    """(message key, params) recorded for a failed export."""
    if isinstance(exc, UserError):
        return exc.key, exc.params
    if isinstance(exc, OSError) and exc.errno is not None:  # not writable, not a folder, disk filled up meanwhile
        return "export.error.write", {"path": str(target), "detail": exc.strerror or str(exc)}
    if isinstance(exc, Exception):
        return "export.error.crash", {"detail": str(exc)[:500]}
    return "export.error.interrupted", {}  # Ctrl-C, or the app shutting down


def _verify(fmt: str, stage: Path, model_path: str, adapter_path: str | None, train_file: str) -> dict:
    from easytune.export.verify import verify_export

    verification = verify_export(fmt, stage, model_path, adapter_path, train_file)
    if not verification["passed"]:
        # the figures of the reader that fell short: llama.cpp's where it read the file and disagreed
        failed = verification.get("llama_cpp") or {}
        figures = failed if failed and not failed["passed"] else verification
        raise UserError("export.error.not_verified", agreement=f"{figures['agreement'] * 100:.1f}",
                        threshold=f"{figures['threshold'] * 100:.0f}",
                        identical=figures["identical"], total=figures["total"])
    return verification


def served_speed(verification: dict) -> float | None:
    """Tokens/s as the export's users get them: llama.cpp's for a GGUF file it read, else the check's reader's."""
    return (verification.get("llama_cpp") or {}).get("tokens_per_s") or verification["tokens_per_s"]


def _write_card(settings, job: dict, resolved: dict, fmt: str, stage: Path, target: Path, verification: dict,
                details: dict, safety: dict | None, unsafe: bool, lang: str | None) -> None:
    from easytune.export.card import library_versions, model_card
    from easytune.jobs import metrics

    lang = lang or settings.language
    card = model_card(lang=lang, fmt=fmt, path=str(target), job=job, resolved=resolved,
                      plan_yaml=JobFolder(job["job_dir"]).plan().to_yaml(lang),  # its comments in the card's language
                      metrics=metrics(settings, job["id"]), quality=latest_evaluation(settings, job["id"], "quality"),
                      safety=safety, safety_confirmed=unsafe, verification=verification, details=details)
    (stage / "README.md").write_text(card, encoding="utf-8")
    record = {"job_id": job["id"], "format": fmt, "verification": verification, "safety_confirmed": unsafe,
              "versions": library_versions(), **details}
    (stage / "easytune_export.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")


def _fail(db, export_id: str, key: str, params: dict) -> None:
    db["exports"].update(export_id, {"state": "FAILED", "error": dumps({"key": key, "params": params}),
                                     "finished_at": time.time()})


def _public(row: dict) -> dict:
    return {**row, "verified": bool(row["verified"]), "safety_confirmed": bool(row["safety_confirmed"]),
            "error": json.loads(row["error"]) if row.get("error") else None}


def list_exports(settings: Settings, job_id: str | None = None) -> list[dict]:
    where, args = ("job_id = ?", [job_id]) if job_id else (None, None)
    rows = open_db(settings.db_path)["exports"].rows_where(where, args, order_by="created_at desc")
    return [_public(row) for row in rows]


def remove_export(settings: Settings, export_id: str) -> dict:
    """Forget an export and delete its folder — only a folder inside the app's exports folder; one the
    user chose elsewhere (--out) is left where it is."""
    db = open_db(settings.db_path)
    try:
        row = db["exports"].get(export_id)
    except Exception:  # sqlite_utils.db.NotFoundError
        raise UserError("export.error.unknown", id=export_id) from None
    if row["state"] == "EXPORTING":
        raise UserError("export.error.in_progress", path=row["path"])
    root = settings.folder("exports").resolve()
    path = Path(row["path"]).resolve()
    inside = path != root and path.is_relative_to(root)
    deleted = inside and path.is_dir()
    if deleted:
        shutil.rmtree(path)
        if path.parent != root and not any(path.parent.iterdir()):
            path.parent.rmdir()  # the job's folder under exports/, now empty
    db["exports"].delete(export_id)
    return {**_public(row), "deleted_folder": deleted}
