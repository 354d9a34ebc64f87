"""Every user-facing string, in zh and en, comes from here.

One catalog per language: easytune/locales/<lang>/*.yaml, merged; each file holds one area's keys
(`core.yaml`, `data.yaml`, …) with dotted names, and {placeholders} for str.format. A key missing in
one language is a test failure, never a silent fallback in front of a user.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from easytune.yaml_files import read_yaml

LANGUAGES = ("zh", "en")
LOCALES_DIR = Path(__file__).resolve().parent / "locales"


@cache
def catalog(lang: str) -> dict[str, str]:
    merged: dict[str, str] = {}
    for path in sorted((LOCALES_DIR / lang).glob("*.yaml")):
        for key, text in (read_yaml(path) or {}).items():
            if key in merged:
                raise ValueError(f"{path}: key {key!r} is defined twice")
            merged[key] = text
    return merged


def normalize_lang(lang: str | None) -> str:
    lang = (lang or "zh").lower()
    return "en" if lang.startswith("en") else "zh"


def t(message_key: str, lang: str | None = "zh", /, **params) -> str:
    text = catalog(normalize_lang(lang)).get(message_key)
    if text is None:
        raise KeyError(f"message {message_key!r} is missing from the {normalize_lang(lang)} catalog")
    return text.format(**params) if params else text


class UserError(Exception):
    """Something the user can fix. Carries a message key, so each door shows it in its language."""

    def __init__(self, message_key: str, /, **params):
        super().__init__(message_key)
        self.key = message_key
        self.params = params

    def message(self, lang: str | None = "zh") -> str:
        return t(self.key, lang, **self.params)

    def __str__(self) -> str:
        return self.message("en")
