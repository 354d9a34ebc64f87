"""First stage of an import: a batch of source records in, prepared rows out.

Everything that looks at one row on its own happens here (parse, normalise, serialise, hash, personal
data, statistics, MinHash signature, train/validation split), so it can run in worker processes for big
files. What needs all earlier rows (duplicates) and the writing stay in the importer, which consumes
batches in order.

Workers get their input one of two ways:
- a big UTF-8 JSON Lines file is cut into byte ranges that end at line breaks; each worker reads its range
  itself (the importer only hashes the bytes and counts line breaks, so line numbers stay exact);
- other sources (a JSON array) are read here and sent over in batches of raw records.
A batch comes back as a `Prepared`: a few columns and two blocks of finished output lines rather than a
tuple per row, which keeps what crosses between processes, and the in-order work, small.
"""

from __future__ import annotations

import hashlib
import os
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

from easytune.data.errors import RowError
from easytune.data.quality import (
    StatsBatch,
    digest_low,
    fingerprint_key,
    kept_key,
    measure,
    minhash_signatures,
    question_key,
    row_parts,
    scan_pii,
)
from easytune.data.readers import open_range, parse_json
from easytune.data.shapes import Normaliser, dump_row

BATCH = 1024  # records per batch sent to a worker
RANGE_BYTES = 4 << 20  # bytes of JSON Lines per worker task


@dataclass(frozen=True)
class StageConfig:
    mapping: dict
    max_chars: int | None
    mask_pii: bool
    keep_originals: bool  # usable rows carry their original (needed when duplicates are dropped)
    minhash_rows: int  # rows (by position) that get a MinHash signature
    val_ratio: float = 0.0  # share of rows that go to the validation split
    seed: int = 0  # of the split
    keep_values: tuple[str, ...] = ()  # values that look personal but are not (e.g. the company's hotline)


@dataclass
class Prepared:
    """One batch after the first stage. Usable rows are described column by column (index k); `pos[k]`
    is the row's position among the batch's records, which also orders it among the rejected ones."""

    records: int = 0  # records in the batch, usable and rejected
    blank: int = 0  # blank lines skipped while reading it (byte-range tasks)
    end: int | None = None  # where in the file it ends (byte-range tasks), for progress
    plans: dict = field(default_factory=dict)  # {shape: (fields, ignored)} for the shapes seen
    rejected: list = field(default_factory=list)  # (pos, line, source_line, reason_key, params, original)
    pos: array = field(default_factory=lambda: array("I"))
    lines: array = field(default_factory=lambda: array("q"))
    source_lines: list | None = None  # only for sources that have them (JSON arrays)
    shapes: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    fps: array = field(default_factory=lambda: array("Q"))  # fingerprint keys
    lows: array = field(default_factory=lambda: array("I"))  # digest_low() of the unmasked row
    sigs: list | None = None  # MinHash signature or None, for each row; None: no signatures in this batch
    asks: list | None = None  # with the signatures: each row's question_key() (0: not a question and answer)
    val: bytearray = field(default_factory=bytearray)  # 1: the row goes to the validation split
    train_out: bytes = b""  # the finished output lines, in order, of the rows that go to train ...
    val_out: bytes = b""  # ... and of those that go to validation
    ends: array = field(default_factory=lambda: array("Q"))  # where each row's line ends in its block
    originals: list | None = None  # with keep_originals
    stats: StatsBatch = field(default_factory=StatsBatch)
    pii: dict = field(default_factory=dict)  # k -> what scan_pii found, for the rows with personal data

    def __len__(self) -> int:
        return len(self.pos)


class Stage:
    def __init__(self, cfg: StageConfig, tokenizer_len: Callable[[str], int] | None = None):
        self.cfg = cfg
        self.tokenizer_len = tokenizer_len
        self.normaliser = Normaliser(cfg.mapping)
        self.threshold = int(cfg.val_ratio * (1 << 64))
        # Keyed BLAKE2b of the row's digest decides its split. Keying costs a whole extra block, so the
        # keyed state is made once and copied for each row (same result as blake2b(digest, key=...)).
        self.split_hash = hashlib.blake2b(digest_size=8, key=str(cfg.seed).encode())

    def _signatures(self, texts: list[bytes]) -> list:
        try:
            sigs = []
            for i in range(0, len(texts), BATCH):  # a batch at a time: numpy's temporaries stay small
                sigs += minhash_signatures([t.decode("utf-8", "surrogatepass") for t in texts[i : i + BATCH]])
            return sigs
        except ImportError:  # pragma: no cover - numpy comes with pyarrow
            return [None] * len(texts)

    def run(self, records: Iterable[tuple], sig_rows: int = 0) -> Prepared:
        """Prepare one batch of records (line, value, raw, source_line, error), in order; the first
        `sig_rows` of them get a MinHash signature."""
        cfg = self.cfg
        max_chars, mask_pii = cfg.max_chars, cfg.mask_pii
        keep = frozenset(kept_key(value) for value in cfg.keep_values)
        normaliser = self.normaliser
        tokenizer_len = self.tokenizer_len
        blake2b = hashlib.blake2b
        threshold, split_hash = self.threshold, self.split_hash
        p = Prepared()
        plans, rejected, stats = p.plans, p.rejected, p.stats
        originals = p.originals = [] if cfg.keep_originals else None
        source_lines: list = []
        train_parts: list[bytes] = []
        val_parts: list[bytes] = []
        train_len = val_len = 0
        sig_texts: list[bytes] = []  # normalised text of the rows that get a signature
        sig_of: list[int] = []  # their k
        sig_asks: list[int] = []  # and what they ask
        pos = -1
        for pos, (line, value, raw, source_line, err) in enumerate(records):
            original = raw if raw is not None else value
            if err is None:
                try:
                    if value is None:
                        value = parse_json(raw, source_line or line)
                    row, shape, plan = normaliser(value)
                    parts = row_parts(row)
                    all_text = "\n".join(parts[0] + parts[1] + parts[2])
                    if max_chars and len(all_text) > max_chars:
                        raise RowError("too_long", chars=len(all_text), limit=max_chars)
                    try:
                        data = dump_row(row).encode("utf-8")
                    except UnicodeEncodeError:
                        if any("\udc80" <= c <= "\udcff" for c in all_text):
                            raise RowError("bad_encoding") from None
                        raise RowError("invalid_characters") from None
                except RowError as e:
                    err = e
            if err is not None:
                rejected.append((pos, line, source_line, err.key, err.params, original))
                continue
            if shape not in plans:
                plans[shape] = (dict(plan.fields), plan.ignored[:20]) if plan is not None else ({}, ())
            k = len(p.pos)
            # The row's texts as UTF-8, once, for the checks below that work on bytes (they all encode
            # successfully: dump_row above would have failed otherwise).
            text_bytes = all_text.encode("utf-8", "surrogatepass")
            fp, fp_bytes = fingerprint_key(all_text, text_bytes)
            stats.append(measure(row, parts, all_text, tokenizer_len, n_bytes=len(text_bytes)))
            pii = scan_pii(row, all_text, mask_pii, text_bytes, keep)
            if pii is not None:
                p.pii[k] = pii
            out = dump_row(row).encode("utf-8") if pii is not None and pii[2] else data
            digest = blake2b(data, digest_size=16).digest()  # of the unmasked row: masking changes no verdict
            if source_line is None:
                out = out[:-1] + b',"line":%d}\n' % line
            else:
                out = out[:-1] + b',"line":%d,"source_line":%d}\n' % (line, source_line)
            # The split depends on the content (and the seed) only, so it is the same wherever it is made.
            if threshold:
                h = split_hash.copy()
                h.update(digest)
                to_val = int.from_bytes(h.digest(), "little") < threshold
            else:
                to_val = False
            if to_val:
                val_parts.append(out)
                val_len += len(out)
                p.val.append(1)
                p.ends.append(val_len)
            else:
                train_parts.append(out)
                train_len += len(out)
                p.val.append(0)
                p.ends.append(train_len)
            p.pos.append(pos)
            p.lines.append(line)
            source_lines.append(source_line)
            p.shapes.append(shape)
            p.kinds.append(row["kind"])
            p.fps.append(fp)
            p.lows.append(digest_low(digest))
            if originals is not None:
                originals.append(original)
            if pos < sig_rows:
                sig_of.append(k)
                sig_texts.append(fp_bytes)
                sig_asks.append(question_key(parts))
        p.records = pos + 1
        p.train_out = b"".join(train_parts)
        p.val_out = b"".join(val_parts)
        if any(s is not None for s in source_lines):
            p.source_lines = source_lines
        if sig_of:
            p.sigs, p.asks = [None] * len(p.pos), [0] * len(p.pos)
            for k, sig, asked in zip(sig_of, self._signatures(sig_texts), sig_asks):
                p.sigs[k], p.asks[k] = sig, asked
        return p


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


def _run_in_worker(batch: list[tuple], sig_rows: int) -> Prepared:
    return _worker_stage.run(batch, sig_rows)


def _run_range(path, codec: str, start: int, end: int, first_line: int, max_record_bytes: int, sig_rows: int):
    """Read one byte range of a JSON Lines file and prepare its records."""
    source = open_range(path, codec, start, end, first_line, max_record_bytes)
    source.parse = False  # parsed in the stage
    try:
        prepared = _worker_stage.run(source.records(), sig_rows)
    finally:
        source.close()
    prepared.blank = source.blank
    prepared.end = end
    return prepared


def default_workers(source=None) -> int:
    """Worker processes for a big file. A JSON Lines file the workers read themselves leaves little to do
    here, so it gets every core (at most 4); otherwise all cores but one, for the reader/writer here,
    at most 4 (beyond that the in-order second stage in this process is the limit)."""
    cpus = os.cpu_count() or 1
    if _splittable(source):
        return max(1, min(4, cpus))
    return max(1, min(4, cpus - 1)) if cpus >= 3 else 1


def _splittable(source) -> bool:
    splittable = getattr(source, "splittable", None)
    return splittable is not None and splittable()


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
    source,
    cfg: StageConfig,
    *,
    workers: int = 1,
    tokenizer_len: Callable[[str], int] | None = None,
    used: dict | None = None,
) -> Iterator[Prepared]:
    """Prepared batches of `source` in file order, computed here (workers <= 1) or in `workers` processes.
    `used["workers"]` tells how many processes actually did the work (0: this one).

    Signatures: a batch gets them for its records among the first cfg.minhash_rows of the file. Where the
    position of a byte range's first record is not known yet (earlier ranges still in flight), it is at
    least the number of records handed out so far; the range gets signatures as if it were exactly that
    (a few too many at most), and the consumer ignores those past the limit."""
    pool = _start_pool(cfg, workers) if workers > 1 and tokenizer_len is None else None
    if used is not None:
        used["workers"] = workers if pool is not None else 0
    limit = cfg.minhash_rows
    if pool is None:
        stage = Stage(cfg, tokenizer_len)
        for batch, index in batches(source.records()):
            yield stage.run(batch, max(0, limit - index))
        return
    source.parse = False  # parsing is part of the first stage, done by the workers
    with pool:
        pending: deque = deque()
        done = 0  # records in the batches handed out of here so far

        def submit_all() -> Iterator[Prepared]:
            nonlocal done
            if _splittable(source):
                for start, end, first_line in source.ranges(RANGE_BYTES):
                    task = (source.path, source.text.codec, start, end, first_line, source.max_record_bytes)
                    pending.append(pool.submit(_run_range, *task, max(0, limit - done)))
                    if len(pending) >= 2 * workers:  # bounded: a few tasks in flight, never the whole file
                        yield pending.popleft().result()
            else:
                for batch, index in batches(source.records()):
                    pending.append(pool.submit(_run_in_worker, batch, max(0, limit - index)))
                    if len(pending) >= 2 * workers:
                        yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()

        try:
            for prepared in submit_all():
                done += prepared.records
                yield prepared
        finally:
            for future in pending:
                future.cancel()
