"""Migrations: applied once, recorded, and an older database is upgraded in place."""

import sqlite_utils

from easytune.store import MIGRATIONS, migrate, open_db


def test_applying_migrations_twice_is_a_no_op(tmp_path):
    db = sqlite_utils.Database(tmp_path / "a.db")
    assert migrate(db) == [name for name, _ in MIGRATIONS]
    schema = db.schema
    assert migrate(db) == []
    assert db.schema == schema


def test_an_older_database_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    migrate(old, upto=1)  # a database written by the first release
    old["jobs"].insert({"id": "j1", "name": "kept", "state": "COMPLETED"})
    assert "events_offset" not in old["jobs"].columns_dict
    old.close()

    db = open_db(path)
    assert "events_offset" in db["jobs"].columns_dict
    assert db["jobs"].get("j1")["name"] == "kept"
    assert db["jobs"].get("j1")["events_offset"] == 0
    assert {row["name"] for row in db["_migrations"].rows} == {name for name, _ in MIGRATIONS}
