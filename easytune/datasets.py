"""Datasets the user can train on: the built-in demos, and the files they import.

An import keeps the untouched original in `uploads/<id>/`, writes the cleaned canonical rows to
`datasets/<id>/` (train.jsonl, val.jsonl, rejected.jsonl, report.json) and records it in SQLite —
all of it or, on any failure, none of it.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from easytune.data.readers import supported_formats
from easytune.i18n import UserError
from easytune.jobs.events import ACTIVE_STATES
from easytune.settings import ASSETS_DIR, Settings
from easytune.store import open_db

DEMO_DIR = ASSETS_DIR / "demo"
DEMO_PREFIX = "demo:"


@dataclass(frozen=True)
class ResolvedDataset:
    name: str
    train_file: Path
    val_file: Path | None
    sha256: str
    rows: int
    kind: str = "sft"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def demo_names() -> list[str]:
    return [DEMO_PREFIX + p.stem for p in sorted(DEMO_DIR.glob("*.jsonl"))]


def count_rows(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def import_share(val_rows: int, total_rows: int) -> float:
    """The validation share an import's split amounts to, as a plan states it (three decimals, at most half)."""
    return min(0.5, round(val_rows / max(1, total_rows), 3))


def held_out(count: int, ratio: float, seed: int) -> set[int]:
    """Which of `count` rows a plan holds out for validation: shuffled with the plan's seed, the first
    `ratio` of them. The one rule for a job's files (job_split) and the base line before any job."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    return set(order[:int(count * ratio)])


def job_split(data: ResolvedDataset, val_ratio: float, seed: int, folder: Path) -> tuple[Path, Path | None]:
    """(train file, validation file or None) of a job, decided once, when it is created: the worker trains
    on the first and validates on the second, and evaluation reads the same two, so neither splits again.
    The import's own split stands where the plan keeps its share (which the planner proposes); any other
    share re-splits all the rows by `held_out` into `folder`, and 0 trains on every row."""
    train_rows, val_rows = ([line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
                            if path else [] for path in (data.train_file, data.val_file))
    rows = train_rows + val_rows
    if val_ratio == (import_share(len(val_rows), len(rows)) if val_rows else 0.0):
        return data.train_file, data.val_file
    held = held_out(len(rows), val_ratio, seed)
    folder.mkdir(parents=True, exist_ok=True)
    train, val = folder / "train.jsonl", folder / "val.jsonl"
    train.write_text("".join(f"{row}\n" for i, row in enumerate(rows) if i not in held), encoding="utf-8")
    if not held:
        return train, None
    val.write_text("".join(f"{row}\n" for i, row in enumerate(rows) if i in held), encoding="utf-8")
    return train, val


def _find(settings: Settings, ref: str) -> dict | None:
    return next(open_db(settings.db_path)["datasets"].rows_where("id = ? or name = ?", [ref, ref]), None)


def _row(settings: Settings, ref: str) -> dict:
    row = _find(settings, ref)
    if row is None:
        known = demo_names() + [r["name"] for r in list_datasets(settings)]
        raise UserError("datasets.unknown", name=ref, known=", ".join(known))
    return row


def resolve_dataset(settings: Settings, name: str) -> ResolvedDataset:
    """The files a job trains on, for a demo name, a dataset id or name, or a data file (imported first, as
    `easytune data add` would; the same file again finds its import by content)."""
    if name.startswith(DEMO_PREFIX):
        path = DEMO_DIR / f"{name[len(DEMO_PREFIX):]}.jsonl"
        if not path.is_file():
            raise UserError("datasets.unknown", name=name, known=", ".join(demo_names()))
        return ResolvedDataset(name, path, None, file_sha256(path), count_rows(path))
    row = _find(settings, name)
    if row is None and Path(name).expanduser().is_file():  # a file named directly: imported, once (by content)
        row = add_dataset(settings, name)["dataset"]
    row = row or _row(settings, name)  # (unknown: the error names what is known)
    folder = Path(row["path"])
    val = folder / "val.jsonl"
    return ResolvedDataset(row["name"], folder / "train.jsonl", val if val.is_file() and val.stat().st_size else None,
                           row["sha256"], row["rows"], row["kind"] or "sft")


def demo_report(settings: Settings, name: str) -> dict:
    """A demo's import report, as importing its file would write it (the planner reads its lengths, languages and
    questions as it reads an upload's): made once per home, file content and version of the importer, under
    cache/. Nothing is held out: a job splits a demo itself."""
    from easytune.data.ingest import import_file

    resolved = resolve_dataset(settings, name)
    folder = settings.folder("cache") / "demo-reports" / f"{resolved.train_file.stem}-{_report_key(resolved)}"
    report = folder / "report.json"
    if not report.is_file():
        import_file(resolved.train_file, out_dir=folder, val_ratio=0)
    return json.loads(report.read_text(encoding="utf-8"))


def _report_key(resolved: ResolvedDataset) -> str:
    """What a demo's report depends on: the file's content and the importer's own code (the data package and
    the key facts it counts answers by), so a new version of EasyTune reports afresh."""
    import easytune.data
    import easytune.evaluation.facts

    code = sorted(Path(easytune.data.__file__).parent.glob("*.py")) + [Path(easytune.evaluation.facts.__file__)]
    digest = hashlib.sha256(resolved.sha256.encode())
    for module in code:
        digest.update(module.read_bytes())
    return digest.hexdigest()[:12]


# ---- import ---------------------------------------------------------------------------------------

def add_dataset(settings: Settings, path: str | Path, *, name: str | None = None, mapping: dict | None = None,
                mask_pii: bool = False, keep_values: tuple[str, ...] = (), drop_duplicates: bool = False,
                val_ratio: float = 0.1, progress=None) -> dict:
    """Import a file. Returns {"dataset": row, "report": report dict, "duplicate_of": id or None}.
    `val_ratio` of the rows is held out for validation (0: every row is trained on). `keep_values`: values
    that look like personal data but are not (the company's own hotline), never masked nor counted."""
    from easytune.data.ingest import content_hash, import_file

    source = Path(path).expanduser()
    _require_regular_file(source)
    limit = settings.max_upload_mb * 1024 * 1024
    if source.stat().st_size > limit:
        raise UserError("datasets.too_large", size_mb=source.stat().st_size // (1024 * 1024),
                        limit_mb=settings.max_upload_mb)
    sha = content_hash(source)
    same = next(open_db(settings.db_path)["datasets"].rows_where("sha256 = ?", [sha]), None)
    if same is not None and not mapping and not mask_pii and not keep_values and not drop_duplicates:
        report = json.loads((Path(same["path"]) / "report.json").read_text(encoding="utf-8"))
        return {"dataset": same, "report": report, "duplicate_of": same["id"]}

    dataset_id = "ds-" + uuid.uuid4().hex[:10]
    upload_dir = settings.folder("uploads") / dataset_id
    out_dir = settings.folder("datasets") / dataset_id
    try:
        upload_dir.mkdir(parents=True)
        original = upload_dir / source.name
        shutil.copy2(source, original)  # the original is kept as it came, whatever happens to the rows
        report = import_file(original, out_dir=out_dir, mapping=mapping, mask_pii=mask_pii,
                             keep_values=tuple(keep_values), val_ratio=val_ratio,
                             drop_duplicates=drop_duplicates, max_bytes=limit, progress=progress)
        kinds = report.kinds or {"sft": report.rows_usable}
        row = {"id": dataset_id, "name": _unique_name(settings, name or source.stem), "source": "upload",
               "path": str(out_dir), "shape": report.shape, "rows": report.rows_usable, "sha256": sha,
               "created_at": time.time(), "kind": max(kinds, key=kinds.get), "original": str(original),
               "size_bytes": report.size_bytes, "rows_rejected": report.rows_rejected}
        open_db(settings.db_path)["datasets"].insert(row)
    except BaseException:
        shutil.rmtree(upload_dir, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return {"dataset": row, "report": report.to_dict(), "duplicate_of": None}


def _require_regular_file(source: Path) -> None:
    """Only a plain file is imported: a folder is a mistake worth its own words, and a device or pipe
    (/dev/zero, a FIFO) would be read forever."""
    if source.is_file():
        return
    if source.is_dir():
        raise UserError("datasets.is_folder", path=str(source), formats=supported_formats())
    if source.exists():
        raise UserError("datasets.not_regular_file", path=str(source), formats=supported_formats())
    raise UserError("datasets.no_file", path=str(source))


def _unique_name(settings: Settings, wanted: str) -> str:
    taken = {row["name"] for row in list_datasets(settings)}
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted}-{n}", n + 1
    return name


# ---- managing ------------------------------------------------------------------------------------

def list_datasets(settings: Settings, search: str | None = None, shape: str | None = None,
                  sort: str = "created_at desc") -> list[dict]:
    where, args = [], []
    if search:
        where.append("name like ?")
        args.append(f"%{search}%")
    if shape:
        where.append("shape = ?")
        args.append(shape)
    if sort not in ("created_at desc", "created_at", "name", "rows desc"):
        sort = "created_at desc"
    return list(open_db(settings.db_path)["datasets"].rows_where(" and ".join(where) or None, args or None,
                                                                 order_by=sort))


def show_dataset(settings: Settings, ref: str, offset: int = 0, limit: int = 20, split: str = "train") -> dict:
    from easytune.data.ingest import preview

    row = _row(settings, ref)
    report = json.loads((Path(row["path"]) / "report.json").read_text(encoding="utf-8"))
    return {"dataset": row, "report": report, "preview": preview(row["path"], offset, limit, split=split)}


def rename_dataset(settings: Settings, ref: str, new_name: str) -> dict:
    row = _row(settings, ref)
    if not new_name.strip():
        raise UserError("datasets.empty_name")
    open_db(settings.db_path)["datasets"].update(row["id"], {"name": _unique_name(settings, new_name.strip())})
    return _row(settings, row["id"])


def remove_dataset(settings: Settings, ref: str) -> dict:
    """Delete the rows and files; refused while a job still needs them."""
    row = _row(settings, ref)
    db = open_db(settings.db_path)
    marks = ",".join("?" * len(ACTIVE_STATES))
    busy = list(db["jobs"].rows_where(f"dataset in (?, ?) and state in ({marks})",
                                      [row["id"], row["name"], *ACTIVE_STATES]))
    if busy:
        raise UserError("datasets.in_use", name=row["name"], job=busy[0]["id"])
    db["datasets"].delete(row["id"])
    shutil.rmtree(row["path"], ignore_errors=True)
    if row.get("original"):
        shutil.rmtree(Path(row["original"]).parent, ignore_errors=True)
    return row


def file_name(name: str) -> str:
    """A dataset's name as a file name. A name is only ever shown: separators, `..`, leading dots and
    control characters are replaced, so a file named after it stays in the folder it was meant for."""
    stem = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', "-", name).strip(" .-")
    stem = stem.encode("utf-8")[:200].decode("utf-8", "ignore")  # file systems limit names to 255 bytes
    return f"{stem or 'dataset'}.jsonl"


def export_dataset(settings: Settings, ref: str, out: str | Path | None = None) -> Path:
    """The cleaned canonical rows (train then validation) as one JSON Lines file: `out`, or a file named
    after the dataset in the folder `out` (by default the home's downloads folder)."""
    row = _row(settings, ref)
    out = Path(out).expanduser() if out is not None else settings.folder("downloads")
    if out.is_dir():
        out = out / file_name(row["name"])
    with open(out, "wb") as target:
        for split in ("train.jsonl", "val.jsonl"):
            part = Path(row["path"]) / split
            if part.is_file():
                with open(part, "rb") as f:
                    shutil.copyfileobj(f, target)
    return out


def preview_rows(settings: Settings, name: str, limit: int = 20) -> list[dict]:
    """The first rows as (question, answer) pairs for a quick look."""
    resolved = resolve_dataset(settings, name)
    out = []
    with open(resolved.train_file, encoding="utf-8") as f:
        for line in f:
            if len(out) >= limit:
                break
            row = json.loads(line)
            messages = row.get("messages", [])
            user = next((m["content"] for m in messages if m["role"] == "user"), row.get("text", ""))
            answer = next((m["content"] for m in messages if m["role"] == "assistant"), row.get("chosen", ""))
            out.append({"user": user, "assistant": answer})
    return out


def reimport_dataset(settings: Settings, ref: str, *, mapping: dict[str, str] | None = None, mask_pii: bool = False,
                     keep_values: tuple[str, ...] = (), drop_duplicates: bool = False, progress=None) -> dict:
    """Import the kept original again — with a corrected field mapping, personal data masked or duplicates
    left out. The new rows replace the old ones under the same name; the old dataset is removed only once
    the new import succeeded."""
    row = _row(settings, ref)
    if not row.get("original") or not Path(row["original"]).is_file():
        raise UserError("datasets.no_original", name=row["name"])
    result = add_dataset(settings, row["original"], name=f"{row['name']}~", mapping=mapping, mask_pii=mask_pii,
                         keep_values=keep_values, drop_duplicates=drop_duplicates, progress=progress)
    if result["duplicate_of"]:  # nothing asked to change: the same import as before
        return result
    remove_dataset(settings, row["id"])
    result["dataset"] = rename_dataset(settings, result["dataset"]["id"], row["name"])
    return result


def token_lengths(settings: Settings, dataset: str, model: str) -> dict:
    """Token-length statistics of the training rows with this model's tokenizer, and rows over its context."""
    from easytune.data.tokens import context_length, measure
    from easytune.models.registry import resolve_path

    model_path = resolve_path(settings, model)
    resolved = resolve_dataset(settings, dataset)
    result = measure(resolved.train_file, model_path, context_length(model_path))
    return {"dataset": resolved.name, "model": model, **result}
