"""Every message key the model modules use exists in zh and en, with the same placeholders."""

from __future__ import annotations

import re
import string
from pathlib import Path

import yaml

from easytune.i18n import LOCALES_DIR

MODULES = Path(__file__).resolve().parents[2] / "easytune" / "models"
KEY = re.compile(r"""["'](models\.[a-z_]+)["']""")


def _catalog(lang: str) -> dict:
    return yaml.safe_load((LOCALES_DIR / lang / "models.yaml").read_text(encoding="utf-8"))


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_both_languages_have_the_same_keys_and_placeholders():
    zh, en = _catalog("zh"), _catalog("en")
    assert set(zh) == set(en)
    for key in zh:
        assert key.startswith("models.")
        assert _fields(zh[key]) == _fields(en[key]), key
        assert zh[key].strip() and en[key].strip()


def test_every_key_used_in_code_exists():
    zh = _catalog("zh")
    used = set()
    for path in MODULES.glob("*.py"):
        used |= set(KEY.findall(path.read_text(encoding="utf-8")))
    used |= {f"models.verdict_{s}" for s in ("fits", "tight", "does_not_fit")}
    used.discard("models.yaml")
    missing = sorted(k for k in used if k not in zh)
    assert not missing, missing
