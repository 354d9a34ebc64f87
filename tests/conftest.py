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


@pytest.fixture(scope="session")
def demo_job(tmp_path_factory) -> tuple[Path, dict]:
    """(home, job summary) of one finished demo run — LoRA on the tiny model, shop FAQ zh — shared by
    every test that only reads a trained job (training is the expensive part of the suite)."""
    from support import cli_json, write_plan

    home = tmp_path_factory.mktemp("demo-home")
    plan = write_plan(home.parent / "demo-plan.yaml")
    job = cli_json("train", "--config", str(plan), home=home)
    assert job["state"] == "COMPLETED", job
    return home, job
