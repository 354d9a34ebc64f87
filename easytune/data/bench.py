"""Import throughput benchmark: `python -m easytune.data.bench [--mb 1024]`.

Writes a synthetic JSONL (mixed Chinese/English instruction rows, a few duplicates, a little personal
data) of about the given size into a temporary folder, imports it, and prints rows/s and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

_EN = [
    "the",
    "model",
    "data",
    "answer",
    "question",
    "training",
    "example",
    "simple",
    "explain",
    "write",
    "list",
    "summary",
    "result",
    "value",
    "process",
    "language",
    "system",
    "report",
    "improve",
    "quality",
    "people",
    "city",
    "history",
    "science",
    "music",
    "water",
    "energy",
]
_ZH = list(
    "的一是在不了有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而"
    "方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性"
    "好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气"
)


def _sentence(rng: random.Random, zh: bool, n: int) -> str:
    if zh:
        return "".join(rng.choices(_ZH, k=n)) + "。"
    return " ".join(rng.choices(_EN, k=n)).capitalize() + "."


def write_jsonl(path: Path, megabytes: float, seed: int = 0) -> int:
    """Write about `megabytes` MB of instruction rows; returns the number of rows."""
    rng = random.Random(seed)
    target = int(megabytes * 1024 * 1024)
    written = rows = 0
    previous: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        while written < target:
            if previous and rng.random() < 0.02:
                line = rng.choice(previous)  # an exact duplicate
            else:
                zh = rng.random() < 0.5
                answer = " ".join(_sentence(rng, zh, rng.randint(8, 40)) for _ in range(rng.randint(1, 6)))
                if rng.random() < 0.01:
                    answer += " 联系电话 13812345678" if zh else " Contact: jane.doe@example.com"
                row = {
                    "instruction": _sentence(rng, zh, rng.randint(5, 20)),
                    "input": _sentence(rng, zh, rng.randint(3, 12)) if rng.random() < 0.3 else "",
                    "output": answer,
                }
                line = json.dumps(row, ensure_ascii=False) + "\n"
                if len(previous) < 1000:
                    previous.append(line)
            f.write(line)
            written += len(line.encode("utf-8"))
            rows += 1
    return rows


def main(argv: list[str] | None = None) -> int:
    from easytune.data.ingest import import_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1024, help="size of the generated JSONL in MB")
    parser.add_argument(
        "--workers", type=int, default=None, help="processes for the per-row work (default: automatic)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="easytune-bench-"))
    src = tmp / "bench.jsonl"
    t0 = time.perf_counter()
    rows = write_jsonl(src, args.mb)
    size = src.stat().st_size
    print(f"generated {rows:,} rows, {size / 2**20:.0f} MB in {time.perf_counter() - t0:.1f} s", flush=True)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()  # CPU time of this process (workers not included)
    report = import_file(src, out_dir=tmp / "out", workers=args.workers)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # worker processes, once they have ended
    workers_cpu = children.ru_utime + children.ru_stime
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, kilobytes on Linux
        peak_kb //= 1024
        rss_before //= 1024
    print(
        f"imported {report.rows_usable:,} usable / {report.rows_total:,} rows in {elapsed:.1f} s: "
        f"{report.rows_total / elapsed:,.0f} rows/s, {size / 2**20 / elapsed:.1f} MB/s "
        f"(CPU time {cpu:.1f} s here + {workers_cpu:.1f} s in {report.options['workers']} worker processes: "
        f"{report.rows_total / (cpu + workers_cpu):,.0f} rows per CPU-second)"
    )
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if sys.platform == "darwin":
        children_kb //= 1024
    print(
        f"peak RSS {peak_kb / 1024:.0f} MB (before import {rss_before / 1024:.0f} MB; "
        f"largest worker process {children_kb / 1024:.0f} MB)"
    )
    print(
        f"duplicates exact={report.quality['duplicates']['exact']} "
        f"near={report.quality['duplicates']['near']}, pii rows={report.quality['pii']['rows']}"
    )
    if args.keep:
        print(f"kept {tmp}")
    else:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
