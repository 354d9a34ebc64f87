"""First stage of an import: a batch of source records in, prepared rows out.

Everything that looks at one row on its own happens here (parse, normalise, serialise, hash, personal
data, statistics, MinHash signature), so it can run in worker processes for big files. What needs all
earlier rows (duplicates, the split, writing) stays in the importer, which consumes batches in order.

Prepared items are plain tuples:
- usable:   (True, line, source_line, original, shape, kind, out, digest, fp, sig, stats, pii)
            out = canonical JSON (UTF-8) to write, masked if asked; digest = hash of the unmasked row;
- rejected: (False, line, source_line, reason_key, params, original).
"""

from __future__ import annotations

import hashlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice

from easytune.data.errors import RowError
from easytune.data.formats import Normaliser, dump_row
from easytune.data.quality import fingerprint_key, measure, minhash_signatures, row_parts, scan_pii
from easytune.data.readers import parse_json

BATCH = 1024  # records per batch


@dataclass(frozen=True)
class StageConfig:
    mapping: dict
    max_chars: int | None
    mask_pii: bool
    keep_originals: bool  # usable rows carry their original (needed when duplicates are dropped)
    minhash_rows: int  # rows (by position) that get a MinHash signature


class Stage:
    def __init__(self, cfg: StageConfig, tokenizer_len: Callable[[str], int] | None = None):
        self.cfg = cfg
        self.tokenizer_len = tokenizer_len
        self.normaliser = Normaliser(cfg.mapping)

    def _signatures(self, texts: list[bytes]) -> list:
        try:
            return minhash_signatures([t.decode("utf-8", "surrogatepass") for t in texts])
        except ImportError:  # pragma: no cover - numpy comes with pyarrow
            return [None] * len(texts)

    def run(self, batch: list[tuple], first_index: int) -> tuple[list[tuple], dict]:
        """Prepare one batch; `first_index` is the 0-based position of its first record in the file.
        Returns (items, {shape: (fields, ignored)} for the shapes seen in this batch)."""
        cfg = self.cfg
        normaliser = self.normaliser
        tokenizer_len = self.tokenizer_len
        blake2b = hashlib.blake2b
        items: list = []
        plans: dict = {}
        for line, value, raw, source_line, err in batch:
            original = raw if raw is not None else value
            if err is None:
                try:
                    if value is None:
                        value = parse_json(raw, source_line or line)
                    row, shape, plan = normaliser(value)
                    parts = row_parts(row)
                    all_text = "\n".join(parts[0] + parts[1] + parts[2])
                    if cfg.max_chars and len(all_text) > cfg.max_chars:
                        raise RowError("too_long", chars=len(all_text), limit=cfg.max_chars)
                    try:
                        data = dump_row(row).encode("utf-8")
                    except UnicodeEncodeError:
                        if any("\udc80" <= c <= "\udcff" for c in all_text):
                            raise RowError("bad_encoding") from None
                        raise RowError("invalid_characters") from None
                except RowError as e:
                    err = e
            if err is not None:
                items.append((False, line, source_line, err.key, err.params, original))
                continue
            if shape not in plans:
                plans[shape] = (dict(plan.fields), plan.ignored[:20]) if plan is not None else ({}, ())
            fp, fp_bytes = fingerprint_key(all_text)
            stats = measure(row, parts, all_text, tokenizer_len)
            pii = scan_pii(row, all_text, cfg.mask_pii)
            out = dump_row(row).encode("utf-8") if pii is not None and pii[2] else data
            keep = original if cfg.keep_originals else None
            digest = blake2b(data, digest_size=16).digest()  # of the unmasked row: masking changes no verdict
            items.append(
                [True, line, source_line, keep, shape, row["kind"], out, digest, fp, fp_bytes, stats, pii]
            )
        sigs: dict[int, bytes | None] = {}
        if cfg.minhash_rows and first_index < cfg.minhash_rows:
            wanted = [i for i, item in enumerate(items) if item[0] and first_index + i < cfg.minhash_rows]
            sigs = dict(zip(wanted, self._signatures([items[i][9] for i in wanted])))
        for i, item in enumerate(items):
            if item[0]:
                item[9] = sigs.get(i)  # the signature, or None (the normalised text is not sent back)
        return [tuple(item) for item in items], plans


def batches(records: Iterable[tuple], size: int = BATCH) -> Iterator[tuple[list[tuple], int]]:
    """(batch, index of its first record)."""
    it = iter(records)
    index = 0
    while batch := list(islice(it, size)):
        yield batch, index
        index += len(batch)


# --------------------------------------------------------------------------------------- worker processes

_worker_stage: Stage | None = None


def _init_worker(cfg: StageConfig) -> None:
    global _worker_stage
    _worker_stage = Stage(cfg)


def _run_in_worker(batch: list[tuple], first_index: int):
    return _worker_stage.run(batch, first_index)


def default_workers() -> int:
    """Worker processes for a big file: all cores but one for the reader/writer, at most 4
    (beyond that the in-order second stage in this process is the limit)."""
    cpus = os.cpu_count() or 1
    return max(1, min(4, cpus - 1)) if cpus >= 3 else 1


def _ping() -> bool:
    return True


def _start_pool(cfg: StageConfig, workers: int) -> ProcessPoolExecutor | None:
    """A started pool, or None when worker processes cannot run here (the caller then works alone)."""
    import multiprocessing

    # "spawn": a fresh interpreter, safe beside the threads of a running interface.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(cfg,),
    )
    try:
        for future in [pool.submit(_ping) for _ in range(workers)]:
            future.result(timeout=120)
    except Exception:  # noqa: BLE001 - e.g. a child cannot re-import the main program (interactive use)
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


def run_stage(
    records: Iterable[tuple],
    cfg: StageConfig,
    *,
    workers: int = 1,
    tokenizer_len: Callable[[str], int] | None = None,
    used: dict | None = None,
) -> Iterator[tuple[list[tuple], dict]]:
    """Prepared batches in file order, computed here (workers <= 1) or in `workers` processes.
    `used["workers"]` tells how many processes actually did the work (0: this one)."""
    pool = _start_pool(cfg, workers) if workers > 1 and tokenizer_len is None else None
    if used is not None:
        used["workers"] = workers if pool is not None else 0
    if pool is None:
        stage = Stage(cfg, tokenizer_len)
        for batch, index in batches(records):
            yield stage.run(batch, index)
        return
    with pool:
        pending: deque = deque()
        try:
            for batch, index in batches(records):
                pending.append(pool.submit(_run_in_worker, batch, index))
                if len(pending) >= 2 * workers:  # bounded: a few batches in flight, never the whole file
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
