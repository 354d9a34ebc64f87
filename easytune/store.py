"""SQLite metadata: the schema as ordered migrations, each applied once and recorded.

A shipped migration is never edited; a schema change is a new function appended to MIGRATIONS.
Opening a database always runs the ones it has not seen, so an older file is upgraded in place.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from easytune.deferred_imports import hidden
from easytune.i18n import UserError

with hidden("pandas"):  # sqlite-utils would import it only to type pandas timestamps, which are never stored
    import sqlite_utils


def _m001_initial(db: sqlite_utils.Database) -> None:
    db["datasets"].create({"id": str, "name": str, "source": str, "path": str, "shape": str,
                           "rows": int, "sha256": str, "created_at": float}, pk="id")
    db["models"].create({"id": str, "name": str, "source": str, "path": str, "created_at": float}, pk="id")
    db["jobs"].create({"id": str, "name": str, "state": str, "model": str, "dataset": str,
                       "job_dir": str, "pid": int, "pid_started_at": float, "error": str,
                       "created_at": float, "started_at": float, "finished_at": float}, pk="id")
    db["job_metrics"].create({"job_id": str, "step": int, "name": str, "value": float, "t": float},
                             foreign_keys=[("job_id", "jobs", "id")])
    db["job_metrics"].create_index(["job_id", "name", "step"])
    db["job_events"].create({"job_id": str, "t": float, "type": str, "level": str, "data": str},
                            foreign_keys=[("job_id", "jobs", "id")])
    db["job_events"].create_index(["job_id", "t"])


def _m002_event_offsets(db: sqlite_utils.Database) -> None:
    # Where the orchestrator stopped reading each job's events.jsonl, so a restarted app
    # re-attaches to a running job without replaying (and double-counting) its history.
    db["jobs"].add_column("events_offset", int, not_null_default=0)
    db["jobs"].add_column("progress", float, not_null_default=0.0)
    db["jobs"].add_column("total_steps", int, not_null_default=0)


def _m003_dataset_imports(db: sqlite_utils.Database) -> None:
    # Imported datasets keep their untouched original beside the cleaned, canonical files.
    db["datasets"].add_column("kind", str)  # main canonical kind: sft | preference | kto | text
    db["datasets"].add_column("original", str)  # path of the uploaded original
    db["datasets"].add_column("size_bytes", int)
    db["datasets"].add_column("rows_rejected", int)
    db["datasets"].create_index(["sha256"])


def _m004_model_registry(db: sqlite_utils.Database) -> None:
    db["models"].add_column("hub_id", str)
    db["models"].add_column("trust_remote_code", int, not_null_default=0)  # an explicit, recorded choice
    db["models"].add_column("owned", int, not_null_default=0)  # 1: EasyTune downloaded it and may delete it


def _m005_evaluations(db: sqlite_utils.Database) -> None:
    # Quality verdicts and safety checks of a job's model, kept so jobs can be compared later.
    db["evaluations"].create({"id": str, "job_id": str, "kind": str, "passed": int, "result": str,
                              "created_at": float}, pk="id")
    db["evaluations"].create_index(["job_id", "kind", "created_at"])


def _m006_exports(db: sqlite_utils.Database) -> None:
    db["exports"].create({"id": str, "job_id": str, "format": str, "path": str, "state": str,
                          "size_bytes": int, "verified": int, "tokens_per_s": float, "safety_confirmed": int,
                          "error": str, "created_at": float, "finished_at": float}, pk="id")
    db["exports"].create_index(["job_id", "created_at"])


def _m007_feedback(db: sqlite_utils.Database) -> None:
    # 👍/👎 and corrected answers from chat: the bad cases become the next run's training data.
    db["feedback"].create({"id": str, "target": str, "prompt": str, "answer": str, "rating": int,
                           "correction": str, "system": str, "created_at": float}, pk="id")


def _m008_ui_state(db: sqlite_utils.Database) -> None:
    # Where the user is in the wizard (step, model, data, job…), so a page reload picks up there.
    db["ui_state"].create({"key": str, "value": str, "updated_at": float}, pk="key")


def _m009_model_health(db: sqlite_utils.Database) -> None:
    # The sanity check at `models add` (does it answer in clean text, does it know language?) and, for
    # an imported GGUF file, where the folder came from (file, sha256, quantisation).
    db["models"].add_column("health", str)  # ok | broken | None (registered before the check existed)
    db["models"].add_column("health_reason", str)  # message key of why it is broken
    db["models"].add_column("health_detail", str)  # JSON: the answer, the loss, log(vocabulary)
    db["models"].add_column("origin", str)  # JSON: the GGUF file an import came from


def _m010_sweeps(db: sqlite_utils.Database) -> None:
    # Sweeps: short trials of one plan with some settings varied, each an ordinary job (easytune.sweep).
    # What was tried and how it did is kept here; the sampler's own memory is its study in sweeps.db.
    db["sweeps"].create({"id": str, "name": str, "state": str, "plan": str, "vary": str, "space": str,
                         "metric": str, "trials": int, "fraction": float, "prune_after": int, "first": str,
                         "driver_pid": int, "driver_started_at": float, "error": str, "created_at": float,
                         "finished_at": float}, pk="id")
    db["sweep_trials"].create({"sweep_id": str, "number": int, "job_id": str, "params": str, "state": str,
                               "metric": float, "val_loss": float, "cf_pct": float, "cf_score": float,
                               "facts_judged": int, "pruned_at": int, "error": str, "created_at": float,
                               "finished_at": float}, pk=("sweep_id", "number"),
                              foreign_keys=[("sweep_id", "sweeps", "id")])


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_initial", _m001_initial),
    ("002_event_offsets", _m002_event_offsets),
    ("003_dataset_imports", _m003_dataset_imports),
    ("004_model_registry", _m004_model_registry),
    ("005_evaluations", _m005_evaluations),
    ("006_exports", _m006_exports),
    ("007_feedback", _m007_feedback),
    ("008_ui_state", _m008_ui_state),
    ("009_model_health", _m009_model_health),
    ("010_sweeps", _m010_sweeps),
]


def migrate(db: sqlite_utils.Database, upto: int | None = None) -> list[str]:
    """Apply the migrations this database has not seen yet; return their names."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": float}, pk="name")
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for name, step in MIGRATIONS[:upto]:
        if name in done:
            continue
        with db.conn:  # one transaction: a migration lands whole or not at all
            step(db)
            db["_migrations"].insert({"name": name, "applied_at": time.time()})
        applied.append(name)
    return applied


_migrated: set[Path] = set()


SQLITE_IOERR, SQLITE_FULL = 10, 13  # primary result codes (the low byte of an extended one)
NEARLY_FULL_BYTES = 1 << 20  # below this, an I/O error is the full disk: SQLite cannot even size its -shm file


class _Connection(sqlite3.Connection):
    """A connection whose writes, failing on a full disk, say so as a UserError naming where — at every door
    (CLI, app, worker) — instead of SQLite's "database or disk is full" traceback. SQLite has already
    rolled the change back, so nothing saved before is lost."""

    path: Path

    def execute(self, *args):
        with self._disk_full_said():
            return super().execute(*args)

    def executemany(self, *args):
        with self._disk_full_said():
            return super().executemany(*args)

    def executescript(self, *args):
        with self._disk_full_said():
            return super().executescript(*args)

    def commit(self):
        with self._disk_full_said():
            return super().commit()

    def __exit__(self, *exc_info):  # `with db.conn:` commits here
        with self._disk_full_said():
            return super().__exit__(*exc_info)

    @contextlib.contextmanager
    def _disk_full_said(self):
        try:
            yield
        except sqlite3.OperationalError as exc:
            code = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF
            free = shutil.disk_usage(self.path.parent).free
            if code == SQLITE_FULL or (code == SQLITE_IOERR and free < NEARLY_FULL_BYTES):
                raise UserError("store.disk_full", path=str(self.path), free=f"{free / 2**20:.1f} MB") from exc
            raise


def open_db(path: Path) -> sqlite_utils.Database:
    """A fresh connection (one per caller and thread; SQLite connections are not shared)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), factory=_Connection)
    conn.path = path
    db = sqlite_utils.Database(conn)
    db.conn.execute("PRAGMA busy_timeout = 10000")  # the app and a CLI may write at the same time
    if path not in _migrated:
        db.enable_wal()
        migrate(db)
        _migrated.add(path)
    return db


def dumps(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False)
