"""Where the user is in the wizard, kept in SQLite so a reload (or another browser) picks up there."""

from __future__ import annotations

import json
import time

from easytune.settings import Settings
from easytune.store import open_db

KEYS = ("step", "model", "dataset", "task", "level", "job", "lang")


def recall(settings: Settings) -> dict:
    rows = open_db(settings.db_path)["ui_state"].rows
    return {row["key"]: json.loads(row["value"]) for row in rows if row["key"] in KEYS}


def remember(settings: Settings, **values) -> None:
    now = time.time()
    open_db(settings.db_path)["ui_state"].upsert_all(
        [{"key": k, "value": json.dumps(v, ensure_ascii=False), "updated_at": now}
         for k, v in values.items() if k in KEYS and v is not None], pk="key")
