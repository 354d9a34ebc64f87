"""Shared fixtures: a private EASYTUNE_HOME per test (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("EASYTUNE_HOME", str(path))
    monkeypatch.setenv("EASYTUNE_LANG", "en")
    return path


@pytest.fixture
def settings(home):
    from easytune.settings import load_settings

    return load_settings()
