"""The models the user works with: the built-in one, registered folders, hub ids, GGUF files (Ollama,
LM Studio, llama.cpp), and the catalog.

The registry (SQLite `models`) remembers where a model is, whether its custom code is trusted — an
explicit, recorded choice — and whether it passed the sanity check (easytune.models.sanity): a model
that answers in byte-level debris or predicts text no better than chance is registered as broken,
and nothing trains on it. Removing a model forgets it; files are deleted only when EasyTune wrote
them itself (a download, a GGUF import) and the user asks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from pathlib import Path

from easytune.i18n import UserError, t
from easytune.models import local_stores, sources
from easytune.settings import Settings
from easytune.store import open_db


def registered(settings: Settings) -> list[dict]:
    return list(open_db(settings.db_path)["models"].rows_where(order_by="created_at desc"))


def _find(settings: Settings, ref: str) -> dict | None:
    return next(open_db(settings.db_path)["models"].rows_where("id = ? or name = ? or hub_id = ? or path = ?",
                                                               [ref, ref, ref, ref]), None)


def resolve_path(settings: Settings, ref: str) -> str:
    """The checked local folder for a model reference: a registered name, or anything sources resolves."""
    row = _find(settings, ref)
    if row is not None:
        return sources.resolve(row["path"], trust_remote_code=bool(row["trust_remote_code"])).path
    return sources.resolve(ref).path


def add_model(settings: Settings, ref: str, *, name: str | None = None, trust_remote_code: bool = False,
              progress=None) -> dict:
    """Register a local folder, a hub id (downloaded when a network is there, else a clear message), or
    a GGUF file / `ollama:NAME` / `lmstudio:PATH` (converted into a folder under the home); then check it."""
    from easytune.models.gguf_import import is_gguf

    ref = (ref or "").strip()
    stored = local_stores.find(ref)
    if stored is not None or is_gguf(Path(ref).expanduser()):
        return _add_gguf(settings, Path(stored.path if stored else ref).expanduser(), name=name,
                         label=stored.name if stored else None, origin=stored.store if stored else "file",
                         progress=progress)
    source = sources.resolve(ref, trust_remote_code=trust_remote_code, fetch=True, progress=progress)
    existing = _find(settings, source.path) or (source.hub_id and _find(settings, source.hub_id))
    if existing:
        return {"model": existing, "source": source.to_dict(), "already": True}
    check = None if source.kind == "builtin" else _checked(source.path, trust_remote_code)
    row = {"id": "m-" + uuid.uuid4().hex[:8], "name": name or Path(source.hub_id or source.path).name,
           "source": source.kind, "path": source.path, "hub_id": source.hub_id, "created_at": time.time(),
           "trust_remote_code": int(trust_remote_code), "owned": int(source.kind == "download"), **_health(check)}
    open_db(settings.db_path)["models"].insert(row)
    return _added(row, source.to_dict(), check)


def _checked(path: str, trust_remote_code: bool) -> dict | None:
    """The sanity check, where the model can be loaded here at all (None: too large for this machine's
    free memory; it is listed unchecked, and the worker's step-0 validation loss is its first test)."""
    import psutil

    from easytune.models.sanity import run_check

    if sources.folder_size(Path(path)) > 0.5 * psutil.virtual_memory().available:
        return None
    return run_check(path, trust_remote_code=trust_remote_code)


def _health(check: dict | None) -> dict:
    if check is None:
        return {"health": None, "health_reason": None, "health_detail": None}
    return {"health": "ok" if check["ok"] else "broken", "health_reason": check["reason"],
            "health_detail": json.dumps(check, ensure_ascii=False)}


def _added(row: dict, source: dict, check: dict | None, already: bool = False) -> dict:
    """add_model's answer; a failed sanity check is the first warning, so every door shows it."""
    if check is not None and not check["ok"]:
        source["warnings"].insert(0, {"key": check["reason"], "params": broken_params(row)})
    return {"model": row, "source": source, "check": check, "already": already}


def added_lines(added: dict, lang: str) -> tuple[list[str], list[str]]:
    """What every door says once a model is added, as (facts, warnings): where it is, what the check asked
    and heard, whether an earlier conversion of the same file was reused; then what to look out for."""
    row, source, check = added["model"], added["source"], added.get("check")
    facts = [t("cli.models.added", lang, name=row["name"], path=row["path"])]
    if check and check["ok"]:
        facts.append(t("models.health_ok", lang, **broken_params(row)))
    if (source.get("origin") or {}).get("reused"):
        facts.append(t("models.gguf_reused", lang, path=row["path"]))
    return facts, [t(w["key"], lang, **w["params"]) for w in source["warnings"]]


def _add_gguf(settings: Settings, path: Path, *, name: str | None, label: str | None, origin: str,
              progress=None) -> dict:
    from easytune.models.gguf_import import import_gguf

    if not path.is_file():
        raise UserError("models.path_not_found", path=str(path))
    folder, record, check = import_gguf(settings, path, label=label, origin=origin, progress=progress)
    source = {"ref": str(path), "kind": "gguf", "path": str(folder), "hub_id": None, "warnings": [],
              "size_bytes": sources.folder_size(folder), "origin": record}
    existing = _find(settings, str(folder))
    if existing:
        return _added(existing, source, check, already=True)
    row = {"id": "m-" + uuid.uuid4().hex[:8], "name": name or label or path.stem, "source": "gguf",
           "path": str(folder), "hub_id": None, "created_at": time.time(), "trust_remote_code": 0, "owned": 1,
           "origin": json.dumps(record, ensure_ascii=False), **_health(check)}
    open_db(settings.db_path)["models"].insert(row)
    return _added(row, source, check)


def broken_params(row: dict) -> dict:
    detail = json.loads(row.get("health_detail") or "{}")
    return {"name": row["name"], "answer": (detail.get("answer") or "")[:80], "question": detail.get("question", ""),
            "loss": detail.get("loss"), "log_vocab": detail.get("log_vocab"), "error": detail.get("error", "")}


def require_trainable(settings: Settings, ref: str) -> None:
    """Nothing trains on a model registered as broken: the reason, in the user's words, instead."""
    row = _find(settings, ref)
    if row is not None and row.get("health") == "broken":
        reason = row["health_reason"] or "models.sanity_load"
        raise UserError(reason.replace(".sanity_", ".broken_"), **broken_params(row))


def remove_model(settings: Settings, ref: str, *, delete_files: bool = False) -> dict:
    row = _find(settings, ref)
    if row is None:
        raise UserError("registry.unknown", ref=ref)
    open_db(settings.db_path)["models"].delete(row["id"])
    if delete_files and row["owned"]:  # never a folder the user brought
        shutil.rmtree(row["path"], ignore_errors=True)
    return row


def list_models(settings: Settings, lang: str = "en") -> dict:
    """Everything that can be trained on, and the catalog with what is already on disk."""
    from easytune.models.catalog import list_catalog

    mine = [{"id": sources.BUILTIN_ID, "name": sources.BUILTIN_ID, "source": "builtin", "health": "ok",
             "path": str(sources.builtin_path())}] + registered(settings)
    catalog = list_catalog(settings, {r["hub_id"] or r["name"]: r["path"] for r in registered(settings)})
    imported = {json.loads(r["origin"])["file"] for r in registered(settings) if r.get("origin")}
    stores = [dict(m.to_dict(), added=str(Path(m.path).resolve()) in imported) for m in local_stores.scan_all()]
    return {"models": mine, "hf_cache": [m.to_dict() for m in sources.scan_hf_cache()], "gguf_stores": stores,
            "catalog": [item.to_dict(lang) for item in catalog]}


def model_info(settings: Settings, ref: str) -> dict:
    """The model's description (easytune.models.inspect), kept under cache/ for the folder as it is: inspecting
    builds the model's skeleton, which needs the training libraries (seconds to import) that a plan, a fit or
    the models page otherwise does without."""
    from easytune.models import inspect

    row = _find(settings, ref)
    path = resolve_path(settings, ref)
    trust = bool(row and row["trust_remote_code"])
    cached = settings.folder("cache") / "model-info" / f"{_info_key(Path(path), trust, inspect.__file__)}.json"
    if cached.is_file():
        return json.loads(cached.read_text(encoding="utf-8"))
    info = inspect.inspect_model(path, trust_remote_code=trust).to_dict()
    partial = cached.with_name(f".{cached.name}.{uuid.uuid4().hex[:8]}.partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_text(json.dumps(info), encoding="utf-8")
    partial.replace(cached)  # whole or not at all, whichever process writes it
    return info


def _info_key(folder: Path, trust: bool, inspector: str) -> str:
    """What a description depends on: the folder's files as they are (name, size, time written), the trust
    choice and the inspector's own code, so an edited config or a new version of EasyTune inspects afresh."""
    digest = hashlib.sha256(f"{folder.resolve()}|{trust}".encode())
    digest.update(Path(inspector).read_bytes())
    for item in sorted(folder.iterdir()):
        state = item.stat()
        digest.update(f"|{item.name}:{state.st_size}:{state.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def fit(settings: Settings, ref: str, *, method: str = "lora", seq_len: int = 1024, batch: int = 4,
        grad_checkpointing: bool = False, lora_r: int = 16, dtype: str | None = None) -> dict:
    """Will this training fit in this machine's memory? The estimate, the verdict and what would help."""
    from easytune.models.catalog import get_entry, load_catalog
    from easytune.models.estimate import as_shape, estimate_memory, verdict
    from easytune.models.hardware import probe

    hardware = probe(settings.home)
    device = hardware.accelerator
    entry = get_entry(ref)  # a catalog model can be judged before it is downloaded
    shape = entry if entry is not None else model_info(settings, ref)
    if dtype is None:  # what precision "auto" will train in here (on a CPU, as measured for this size)
        from easytune.models.calibrate import auto_precision, cpu_trains_bf16

        cpu_bf16 = (device == "cpu" and method in ("lora", "qlora")
                    and cpu_trains_bf16(settings, as_shape(shape).num_parameters))
        dtype = auto_precision(device, gpu_bf16=hardware.bf16, cpu_bf16=cpu_bf16)
    estimate = estimate_memory(shape, method, seq_len, batch, grad_checkpointing, dtype, lora_r, device=device)
    judged = verdict(estimate, hardware.training_memory(), catalog=load_catalog(), device=device)
    return {"estimate": estimate.to_dict(), "verdict": judged.to_dict(), "hardware": hardware.to_dict()}
