"""Import one data file: detect, stream, normalise, check, split, and write the cleaned dataset.

`import_file` writes `train.jsonl`, `val.jsonl`, `rejected.jsonl` and `report.json` into a temporary folder
beside `out_dir` and moves them into place only when everything went well, so a failed import leaves
`out_dir` untouched. Every source row ends up either usable (in train or val) or rejected (with its line
and a reason): rows_total == rows_usable + rows_rejected, always.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from easytune.data.advice import suggestions
from easytune.data.encoding import sniff
from easytune.data.errors import RowError
from easytune.data.pipeline import StageConfig, default_workers, run_stage
from easytune.data.quality import WAYS_MAX_ROWS, QualityCheck, ways_asked
from easytune.data.readers import Source, open_source
from easytune.data.shapes import Normaliser
from easytune.i18n import UserError, t

DEFAULT_MAX_BYTES = 20 * 1024**3
DEFAULT_MAX_RECORD_BYTES = 8 * 1024**2
DEFAULT_MAX_CHARS = 200_000
REPORT_REJECTED = 1000  # rejected rows listed in the report (all of them are in rejected.jsonl)
ORIGINAL_KEEP = 20_000  # characters of a rejected original kept in rejected.jsonl
PARALLEL_MIN_BYTES = 64 * 1024**2  # below this, worker processes cost more than they save
OUTPUT_FILES = ("train.jsonl", "val.jsonl", "rejected.jsonl", "report.json")

_TURN_KEYS = {
    "sharegpt": {"role": "from", "content": "value"},
    "openai": {"role": "role", "content": "content"},
}


@dataclass
class ImportReport:
    source: str
    size_bytes: int
    sha256: str
    container: str  # json | json_stream | jsonl | csv | tsv | xlsx | parquet | text
    encoding: str | None  # None for xlsx / parquet
    details: dict  # delimiter, sheet, text unit ...
    columns: list[str] | None  # header of tabular files
    shape: str  # alpaca | pairs | sharegpt | openai | preference | kto | text | mixed
    shapes: dict[str, int]  # usable rows per shape
    kinds: dict[str, int]  # usable rows per canonical kind (sft / preference / kto / text)
    mapping: dict[str, str]  # role -> source field, for the main shape
    mappings: dict[str, dict]  # the same for every shape seen
    mapping_source: str  # auto | user
    ignored_fields: list[str]
    rows_total: int
    rows_usable: int
    rows_rejected: int
    rows_dropped_duplicates: int
    blank_skipped: int
    rejected_by_reason: dict[str, int]
    rejected: list[dict]  # first REPORT_REJECTED: {line, [source_line], reason, params}
    rejected_truncated: bool
    splits: dict[str, int]
    val_ratio: float
    seed: int
    options: dict
    quality: dict
    suggestions: list[dict] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class NoUsableRows(UserError):
    """Every row was rejected. Carries the report so the rejection breakdown can still be shown."""

    def __init__(self, report: ImportReport):
        first = report.rejected[0] if report.rejected else None
        super().__init__("data.no_usable_rows", total=report.rows_total, line=first["line"] if first else 0)
        self.report = report
        self.first = first

    def message(self, lang: str | None = "zh") -> str:
        text = super().message(lang)
        if self.first:
            text += " " + t(self.first["reason"], lang, **self.first["params"])
        return text


def describe(entry: dict, lang: str | None = "zh") -> str:
    """A rejected row or a suggestion ({key|reason, params}) in the user's language."""
    return t(entry.get("reason") or entry["key"], lang, **entry.get("params", {}))


def content_hash(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes, read in chunks."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _open(path: Path, mapping: dict, *, max_bytes: int | None, max_record_bytes: int) -> Source:
    sniffed = sniff(path, max_bytes=max_bytes)
    return open_source(path, sniffed, max_record_bytes=max_record_bytes, sheet=mapping.get("sheet"))


def _check_columns(source: Source, normaliser: Normaliser) -> None:
    """Tabular files have one header for all rows: refuse up front when it cannot be mapped."""
    if source.columns is None:
        return
    columns = ", ".join(source.columns[:20])
    for role, src in normaliser.mapping.items():
        if role not in ("shape", "sheet", "role", "content") and src not in source.columns:
            raise UserError("data.mapping_field_missing", field=src, columns=columns)
    plan = normaliser.plan(source.columns)
    if plan.shape == "unknown":
        raise UserError("data.unknown_columns", columns=columns)
    if plan.shape == "missing_answer":
        raise UserError("data.no_answer_column", field=plan.fields["prompt"], columns=columns)
    if plan.shape == "missing_prompt":
        raise UserError("data.no_prompt_column", field=plan.fields["response"], columns=columns)


def import_file(
    path: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    mapping: dict | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    max_chars: int | None = DEFAULT_MAX_CHARS,
    tokenizer_len: Callable[[str], int] | None = None,
    context_len: int | None = None,
    val_ratio: float = 0.1,
    seed: int = 0,
    drop_duplicates: bool = False,
    mask_pii: bool = False,
    keep_values: tuple[str, ...] = (),
    minhash_rows: int = 50_000,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import `path` into `out_dir` (train.jsonl, val.jsonl, rejected.jsonl, report.json). See module doc.

    mapping: role -> source field (roles: prompt, input, response, system, history, messages, tools, chosen,
    rejected, label, text; plus `shape` to force a shape, `role`/`content` for turn keys, `sheet` for xlsx).
    minhash_rows: how many rows (from the start) are also compared by MinHash for near-duplicates.
    workers: processes for the per-row work; None = automatic (several for JSON files of 64 MB and more,
    when no tokenizer is given), 1 = all in this process.
    Raises UserError for a file that cannot be imported at all; then nothing is written to out_dir.
    """
    started = time.monotonic()
    if not 0 <= val_ratio < 1:
        raise ValueError("val_ratio must be in [0, 1)")
    path, out_dir = Path(path), Path(out_dir)
    normaliser = Normaliser(mapping)
    source = _open(path, normaliser.mapping, max_bytes=max_bytes, max_record_bytes=max_record_bytes)
    try:
        _check_columns(source, normaliser)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.importing-", dir=out_dir.parent))
        try:
            report = _run(
                source,
                normaliser,
                tmp,
                path=path,
                max_chars=max_chars,
                tokenizer_len=tokenizer_len,
                context_len=context_len,
                val_ratio=val_ratio,
                seed=seed,
                drop_duplicates=drop_duplicates,
                mask_pii=mask_pii,
                keep_values=tuple(keep_values),
                minhash_rows=minhash_rows,
                progress=progress,
                mapping_given=bool(mapping),
                max_record_bytes=max_record_bytes,
                workers=workers,
            )
            report.files = {name.split(".")[0]: str(out_dir / name) for name in OUTPUT_FILES}
            report.elapsed_s = round(time.monotonic() - started, 3)
            (tmp / "report.json").write_text(
                json.dumps(report.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8"
            )
            _move_into(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    finally:
        source.close()
    return report


def _move_into(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    for name in OUTPUT_FILES:
        os.replace(tmp / name, out_dir / name)
    shutil.rmtree(tmp, ignore_errors=True)


def _run(
    source: Source,
    normaliser: Normaliser,
    tmp: Path,
    *,
    path: Path,
    max_chars,
    tokenizer_len,
    context_len,
    val_ratio,
    seed,
    drop_duplicates,
    mask_pii,
    keep_values,
    minhash_rows,
    progress,
    mapping_given,
    max_record_bytes,
    workers,
) -> ImportReport:
    quality = QualityCheck(
        tokenizer=tokenizer_len is not None,
        context_len=context_len,
        mask_pii=mask_pii,
        keep_values=keep_values,
        minhash_rows=minhash_rows,
    )
    cfg = StageConfig(
        mapping=normaliser.mapping,
        max_chars=max_chars,
        mask_pii=mask_pii,
        keep_originals=drop_duplicates,
        keep_values=keep_values,
        minhash_rows=minhash_rows,
        val_ratio=val_ratio,
        seed=seed,
    )
    if workers is None:
        big = source.size >= PARALLEL_MIN_BYTES and source.container in ("jsonl", "json", "json_stream")
        workers = default_workers(source) if big and tokenizer_len is None else 1
    used: dict = {}
    total = usable = n_val = dropped = 0
    reasons: Counter = Counter()
    rejected_list: list[dict] = []
    shapes: Counter = Counter()
    kinds: Counter = Counter()
    plans: dict[str, dict] = {}
    ignored: dict[str, None] = {}
    size = source.size
    if progress is not None:
        progress(0, size)

    with (
        open(tmp / "train.jsonl", "wb", buffering=1 << 20) as train_f,
        open(tmp / "val.jsonl", "wb", buffering=1 << 20) as val_f,
        open(tmp / "rejected.jsonl", "wb", buffering=1 << 20) as rej_f,
    ):

        def reject(line, source_line, key: str, params: dict, original) -> None:
            reasons[key] += 1
            entry = {"line": line}
            if source_line is not None:
                entry["source_line"] = source_line
            entry.update(reason=key, params=params)
            if len(rejected_list) < REPORT_REJECTED:
                rejected_list.append(dict(entry))
            if isinstance(original, str) and len(original) > ORIGINAL_KEEP:
                original = original[:ORIGINAL_KEEP]
            entry["original"] = original
            rej_f.write(
                (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode(
                    "utf-8", "backslashreplace"
                )
            )

        for prep in run_stage(source, cfg, workers=workers, tokenizer_len=tokenizer_len, used=used):
            for shape, (fields, names) in prep.plans.items():
                if shape not in plans:
                    plans[shape] = dict(fields)
                    if shape in _TURN_KEYS and not normaliser.mapping.get("role"):
                        plans[shape].update(_TURN_KEYS[shape])
                    for name in names:
                        ignored[name] = None
            first = total  # position in the file of the batch's first record
            total += prep.records
            source.blank += prep.blank
            lines, pos, sigs, rejected = prep.lines, prep.pos, prep.sigs, prep.rejected
            written = 0  # the stage's rejections written so far (rejected.jsonl is in file order)
            kept: list[int] | None = None  # the rows kept, once one was dropped as a duplicate
            for k in range(len(prep)):
                sig = sigs[k] if sigs is not None and first + pos[k] < minhash_rows else None
                dup = quality.duplicate(prep.fps[k], prep.lows[k], lines[k], sig, prep.asks[k] if sig else 0)
                if dup is None or not drop_duplicates:
                    if kept is not None:
                        kept.append(k)
                    continue
                if kept is None:
                    kept = list(range(k))
                while written < len(rejected) and rejected[written][0] < pos[k]:
                    reject(*rejected[written][1:])
                    written += 1
                dropped += 1
                reject(
                    lines[k],
                    prep.source_lines[k] if prep.source_lines else None,
                    "data.reject." + ("duplicate" if dup[0] == "exact" else "near_duplicate"),
                    {"first_line": dup[1]},
                    prep.originals[k],
                )
            for entry in rejected[written:]:
                reject(*entry[1:])

            quality.add_batch(prep.stats, lines, kept)
            if kept is None:  # every usable row stays: the batch's blocks of output go out as they are
                for k, found in prep.pii.items():
                    quality.add_pii(found, lines[k])
                usable += len(prep)
                shapes.update(prep.shapes)
                kinds.update(prep.kinds)
                n_val += prep.val.count(1)
                train_f.write(prep.train_out)
                val_f.write(prep.val_out)
            else:
                keep = set(kept)
                for k, found in prep.pii.items():
                    if k in keep:
                        quality.add_pii(found, lines[k])
                usable += len(kept)
                shapes.update(prep.shapes[k] for k in kept)
                kinds.update(prep.kinds[k] for k in kept)
                blocks = (memoryview(prep.train_out), memoryview(prep.val_out))
                files = (train_f, val_f)
                starts = [0, 0]  # where the next row's line starts in each block
                for k, (to_val, end) in enumerate(zip(prep.val, prep.ends)):
                    if k in keep:
                        files[to_val].write(blocks[to_val][starts[to_val] : end])
                        n_val += to_val
                    starts[to_val] = end
            if progress is not None:
                progress(source.bytes_done if prep.end is None else prep.end, size)

    if progress is not None:
        progress(size, size)
    if total == 0:
        raise UserError("data.no_rows", name=path.name)

    main_shape = shapes.most_common(1)[0][0] if len(shapes) == 1 else ("mixed" if shapes else "none")
    main_mapping = plans.get(shapes.most_common(1)[0][0], {}) if shapes else {}
    report = ImportReport(
        source=path.name,
        size_bytes=size,
        sha256=source.sha256() or content_hash(path),
        container=source.container,
        encoding=source.encoding,
        details=source.details,
        columns=source.columns,
        shape=main_shape,
        shapes=dict(shapes),
        kinds=dict(kinds),
        mapping=main_mapping,
        mappings=plans,
        mapping_source="user" if mapping_given else "auto",
        ignored_fields=list(ignored),
        rows_total=total,
        rows_usable=usable,
        rows_rejected=total - usable,
        rows_dropped_duplicates=dropped,
        blank_skipped=source.blank,
        rejected_by_reason=dict(reasons),
        rejected=rejected_list,
        rejected_truncated=total - usable > len(rejected_list),
        splits={"train": usable - n_val, "val": n_val},
        val_ratio=val_ratio,
        seed=seed,
        options={
            "drop_duplicates": drop_duplicates,
            "mask_pii": mask_pii,
            "max_chars": max_chars,
            "max_record_bytes": max_record_bytes,
            "context_len": context_len,
            "tokenizer": tokenizer_len is not None,
            "workers": used.get("workers", 0),
        },
        quality={**quality.summary(usable, dict(kinds)), "ways_asked": ways_asked(
            [tmp / "train.jsonl", tmp / "val.jsonl"]) if 0 < usable <= WAYS_MAX_ROWS else None},
    )
    assert report.rows_total == report.rows_usable + report.rows_rejected
    if usable == 0:
        if set(reasons) == {"data.reject.unknown_shape"}:
            raise UserError("data.unknown_shape_file", fields=rejected_list[0]["params"]["fields"])
        raise NoUsableRows(report)
    report.suggestions = suggestions(report.to_dict())
    return report


# ------------------------------------------------------------------------------------------------ preview


def _is_cleaned_file(p: Path) -> bool:
    return p.is_file() and p.name in OUTPUT_FILES[:3] and (p.parent / "report.json").is_file()


def preview(
    path_or_dir: str | os.PathLike,
    offset: int = 0,
    limit: int = 20,
    *,
    split: str = "train",
    mapping: dict | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> dict:
    """One page of rows.

    - a cleaned folder (or one of its .jsonl files): canonical rows of `split` (train / val / rejected);
    - a source file: what would be detected (container, encoding, shape per row, mapping) and the rows
      converted to canonical form, or why each would be rejected, without writing anything.
    """
    p = Path(path_or_dir)
    offset, limit = max(0, int(offset)), max(0, int(limit))
    if p.is_dir() or _is_cleaned_file(p):
        folder = p if p.is_dir() else p.parent
        file = folder / (f"{split}.jsonl" if p.is_dir() else p.name)
        if not file.is_file():
            raise UserError("data.preview_missing", name=file.name)
        rows = []
        with open(file, "rb") as f:
            for i, raw in enumerate(f):
                if i < offset:
                    continue
                if len(rows) >= limit:
                    break
                rows.append(json.loads(raw))
        total = None
        report_path = folder / "report.json"
        if report_path.is_file():
            rep = json.loads(report_path.read_text(encoding="utf-8"))
            key = file.name.split(".")[0]
            total = rep["rows_rejected"] if key == "rejected" else rep["splits"].get(key)
        has_more = (offset + len(rows) < total) if total is not None else len(rows) == limit
        return {
            "kind": "cleaned",
            "split": file.name.split(".")[0],
            "offset": offset,
            "limit": limit,
            "total": total,
            "has_more": has_more,
            "rows": rows,
        }

    normaliser = Normaliser(mapping)
    source = _open(p, normaliser.mapping, max_bytes=None, max_record_bytes=max_record_bytes)
    try:
        rows, shapes, plans = [], Counter(), {}
        seen = 0
        has_more = False
        for line, value, raw, source_line, err in source.records():
            seen += 1
            if seen <= offset:
                continue
            if len(rows) >= limit:
                has_more = True
                break
            entry = {"line": line}
            if source_line is not None:
                entry["source_line"] = source_line
            if err is None:
                try:
                    row, shape, plan = normaliser(value)
                    entry.update(shape=shape, row=row)
                    shapes[shape] += 1
                    if plan is not None and shape not in plans:
                        plans[shape] = dict(plan.fields)
                        if shape in _TURN_KEYS and not normaliser.mapping.get("role"):
                            plans[shape].update(_TURN_KEYS[shape])
                except RowError as e:
                    err = e
            if err is not None:
                entry.update(reason=err.key, params=err.params, original=raw if raw is not None else value)
            rows.append(entry)
        main = shapes.most_common(1)[0][0] if shapes else None
        return {
            "kind": "source",
            "container": source.container,
            "encoding": source.encoding,
            "details": source.details,
            "columns": source.columns,
            "shape": main if len(shapes) <= 1 else "mixed",
            "shapes": dict(shapes),
            "mapping": plans.get(main, {}),
            "mappings": plans,
            "mapping_source": "user" if mapping else "auto",
            "offset": offset,
            "limit": limit,
            "has_more": has_more,
            "rows": rows,
        }
    finally:
        source.close()
