"""Where the user is in the wizard, kept in SQLite so a reload picks up there.

Each browser tab has its own place (its id lives in the tab's sessionStorage, which survives a reload but
not a new tab), so two tabs — or two people on one server — do not steer each other. A tab seen for the
first time starts where the most recently used tab left off. The language is a preference of the user,
shared by every tab.
"""

from __future__ import annotations

import json
import time

from easytune.settings import Settings
from easytune.store import open_db

PLACE = ("step", "model", "dataset", "task", "level", "job")  # per tab
SHARED = ("lang",)  # the same in every tab
FORGET_AFTER_S = 90 * 86400  # a tab unused this long is forgotten when a new one starts
# The id a tab reads from its sessionStorage, made on its first load. crypto.randomUUID needs a secure
# context, which a plain-HTTP page off loopback is not, so the id is drawn from Math.random there.
TAB_ID_JS = """() => {
  let id = sessionStorage.getItem('easytune-tab');
  if (!id) {
    id = (self.crypto && crypto.randomUUID) ? crypto.randomUUID()
      : Math.random().toString(36).slice(2) + Date.now().toString(36);
    sessionStorage.setItem('easytune-tab', id);
  }
  return id;
}"""


def _split(key: str) -> tuple[str, str]:
    """'tab/step' → ('tab', 'step'); a shared key (or one from before tabs had places) has no tab."""
    tab, _, name = key.rpartition("/")
    return tab, name


def recall(settings: Settings, tab: str | None = None) -> dict:
    """The shared preferences, and this tab's place (or, for a new tab, the newest place of any tab)."""
    rows = sorted(open_db(settings.db_path)["ui_state"].rows, key=lambda row: row["updated_at"])
    values: dict = {}
    own = {name for key in (r["key"] for r in rows) for owner, name in [_split(key)] if owner == tab}
    for row in rows:  # oldest first, so the newest value of each name wins
        owner, name = _split(row["key"])
        if name in SHARED and not owner or name in PLACE and (owner == tab or not own):
            values[name] = json.loads(row["value"])
    return values


def remember(settings: Settings, tab: str | None = None, **values) -> None:
    """Store shared preferences for everyone and place values for this tab; a new tab starts from the
    newest place so that what it did not set itself still reads as it did on its first load."""
    db = open_db(settings.db_path)
    now = time.time()
    rows = [{"key": name, "value": json.dumps(v, ensure_ascii=False), "updated_at": now}
            for name, v in values.items() if name in SHARED and v is not None]
    place = {name: v for name, v in values.items() if name in PLACE and v is not None}
    if place and tab:
        if not any(_split(key)[0] == tab for key in (r["key"] for r in db["ui_state"].rows)):
            inherited = {name: v for name, v in recall(settings, tab).items() if name in PLACE}
            place = {**inherited, **place}
            db["ui_state"].delete_where("updated_at < ?", [now - FORGET_AFTER_S])
        rows += [{"key": f"{tab}/{name}", "value": json.dumps(v, ensure_ascii=False), "updated_at": now}
                 for name, v in place.items()]
    elif place:  # no tab (Python callers): the place every new tab starts from
        rows += [{"key": name, "value": json.dumps(v, ensure_ascii=False), "updated_at": now}
                 for name, v in place.items()]
    if rows:
        db["ui_state"].upsert_all(rows, pk="key")
