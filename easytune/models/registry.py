"""The models the user works with: the built-in one, registered folders and hub ids, and the catalog.

The registry (SQLite `models`) remembers where a model is and whether its custom code is trusted —
an explicit, recorded choice. Removing a model forgets it; files are deleted only when EasyTune
downloaded them itself and the user asks.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from easytune.i18n import UserError
from easytune.models import sources
from easytune.settings import Settings
from easytune.store import open_db


def registered(settings: Settings) -> list[dict]:
    return list(open_db(settings.db_path)["models"].rows_where(order_by="created_at desc"))


def _find(settings: Settings, ref: str) -> dict | None:
    return next(open_db(settings.db_path)["models"].rows_where("id = ? or name = ? or hub_id = ?",
                                                               [ref, ref, ref]), None)


def resolve_path(settings: Settings, ref: str) -> str:
    """The checked local folder for a model reference: a registered name, or anything sources resolves."""
    row = _find(settings, ref)
    if row is not None:
        return sources.resolve(row["path"], trust_remote_code=bool(row["trust_remote_code"])).path
    return sources.resolve(ref).path


def add_model(settings: Settings, ref: str, *, name: str | None = None, trust_remote_code: bool = False,
              progress=None) -> dict:
    """Register a local folder or a hub id (downloaded when a network is there, else a clear message)."""
    source = sources.resolve(ref, trust_remote_code=trust_remote_code, fetch=True, progress=progress)
    existing = _find(settings, source.path) or (source.hub_id and _find(settings, source.hub_id))
    if existing:
        return {"model": existing, "source": source.to_dict(), "already": True}
    row = {"id": "m-" + uuid.uuid4().hex[:8], "name": name or Path(source.hub_id or source.path).name,
           "source": source.kind, "path": source.path, "hub_id": source.hub_id, "created_at": time.time(),
           "trust_remote_code": int(trust_remote_code), "owned": int(source.kind == "download")}
    open_db(settings.db_path)["models"].insert(row)
    return {"model": row, "source": source.to_dict(), "already": False}


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

    mine = [{"id": sources.BUILTIN_ID, "name": sources.BUILTIN_ID, "source": "builtin",
             "path": str(sources.builtin_path())}] + registered(settings)
    catalog = list_catalog(settings, {r["hub_id"] or r["name"]: r["path"] for r in registered(settings)})
    return {"models": mine, "hf_cache": [m.to_dict() for m in sources.scan_hf_cache()],
            "catalog": [item.to_dict(lang) for item in catalog]}


def model_info(settings: Settings, ref: str) -> dict:
    from easytune.models.inspect import inspect_model

    row = _find(settings, ref)
    path = resolve_path(settings, ref)
    return inspect_model(path, trust_remote_code=bool(row and row["trust_remote_code"])).to_dict()


def fit(settings: Settings, ref: str, *, method: str = "lora", seq_len: int = 1024, batch: int = 4,
        grad_checkpointing: bool = False, lora_r: int = 16, dtype: str | None = None) -> dict:
    """Will this training fit in this machine's memory? The estimate, the verdict and what would help."""
    from easytune.models.catalog import get_entry
    from easytune.models.estimate import estimate_memory, verdict
    from easytune.models.hardware import probe

    hardware = probe(settings.home)
    device = hardware.accelerator
    entry = get_entry(ref)  # a catalog model can be judged before it is downloaded
    shape = entry if entry is not None else model_info(settings, ref)
    dtype = dtype or ("bf16" if hardware.bf16 and device != "cpu" else "fp32")
    estimate = estimate_memory(shape, method, seq_len, batch, grad_checkpointing, dtype, lora_r, device=device)
    judged = verdict(estimate, hardware.training_memory(), device=device)
    return {"estimate": estimate.to_dict(), "verdict": judged.to_dict(), "hardware": hardware.to_dict()}
