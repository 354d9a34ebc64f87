"""The one list of export formats, as each door shows it, and Q4_K_M refused with its reason where llama.cpp's
quantiser is missing — run everywhere, with llama-cpp-python installed or not (its absence is simulated)."""

import subprocess
import sys

import pytest

from support import ROOT

QUANTISER_HINT = "pip install llama-cpp-python"


@pytest.fixture
def no_llama_cpp(monkeypatch):
    """This process sees no llama_cpp: find_spec answers None and an import fails, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "llama_cpp", None)


def test_cli_and_ui_list_the_registry_formats():
    import argparse

    from easytune.cli import build_parser
    from easytune.export.formats import FORMATS, NAMES
    from easytune.ui import evaluate_step

    export = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["export"]
    assert tuple(next(a for a in export._actions if a.dest == "format").choices) == NAMES
    assert evaluate_step.FORMATS == NAMES
    assert {"gguf-f16", "gguf-q8_0", "gguf-q4_k_m", "gguf-lora"} <= set(NAMES) and NAMES == tuple(FORMATS)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_format_is_named_in_both_languages(lang):
    from easytune.export.formats import FORMATS
    from easytune.i18n import t

    for name, spec in FORMATS.items():
        assert t(f"ui.eval.format.{name}", lang) and t(f"export.card.format.{name}", lang)
        if spec.needs_module:
            assert QUANTISER_HINT in t(f"ui.eval.format_missing.{name}", lang)
            assert QUANTISER_HINT in t(spec.missing_key, lang, format=name)


def test_q4_k_m_is_listed_but_marked_unavailable_without_llama_cpp(no_llama_cpp):
    from easytune.export.formats import FORMATS, label_key
    from easytune.i18n import t

    assert not FORMATS["gguf-q4_k_m"].available()
    assert label_key("gguf-q4_k_m") == "ui.eval.format_missing.gguf-q4_k_m"
    assert "llama.cpp" in t(label_key("gguf-q4_k_m"), "en") and "llama.cpp" in t(label_key("gguf-q4_k_m"), "zh")
    assert label_key("gguf-q8_0") == "ui.eval.format.gguf-q8_0"  # the formats that need nothing stay as they are


def test_q4_k_m_export_is_refused_with_the_reason_without_llama_cpp(no_llama_cpp, settings):
    from easytune.export import export_job, list_exports
    from easytune.i18n import UserError

    with pytest.raises(UserError) as refused:
        export_job(settings, "any-job", "gguf-q4_k_m")  # refused before the job is even looked up
    assert refused.value.key == "export.error.needs_llama_cpp"
    for lang in ("en", "zh"):
        assert QUANTISER_HINT in refused.value.message(lang) and "gguf-q4_k_m" in refused.value.message(lang)
    assert list_exports(settings) == []


def test_q4_k_m_is_refused_by_the_cli_with_a_clear_exit_without_llama_cpp(tmp_path):
    import os

    code = ("import sys; sys.modules['llama_cpp'] = None; from easytune.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    for lang, words in (("en", "needs llama.cpp's quantiser"), ("zh", "需要 llama.cpp 的量化工具")):
        env = dict(os.environ, EASYTUNE_HOME=str(tmp_path / "home"), EASYTUNE_LANG=lang)
        done = subprocess.run([sys.executable, "-c", code, "export", "any-job", "--format", "gguf-q4_k_m"],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert done.returncode == 2 and words in done.stderr and QUANTISER_HINT in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_a_broken_llama_cpp_install_counts_as_missing(monkeypatch, settings):
    """Installed but not importable (a dependency missing, its library unloadable): refused the same way."""
    import importlib

    from easytune.export.formats import FORMATS, module_usable

    real_import = importlib.import_module

    def failing(name, *args):
        if name == "llama_cpp":
            raise ImportError("No module named 'diskcache'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "llama_cpp" else None)
    monkeypatch.setattr(importlib, "import_module", failing)
    assert FORMATS["gguf-q4_k_m"].available() and not module_usable("llama_cpp")
    from easytune.i18n import UserError

    with pytest.raises(UserError) as refused:
        FORMATS["gguf-q4_k_m"].check_available()
    assert refused.value.key == "export.error.needs_llama_cpp"


def test_listing_the_formats_loads_no_native_library():
    code = ("import sys; from easytune.ui import evaluate_step; from easytune.export.formats import label_key; "
            "[label_key(f) for f in evaluate_step.FORMATS]; print('llama_cpp' in sys.modules, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["False", "False"], done.stdout + done.stderr


def test_step_four_chats_only_with_the_exports_that_answer_alone(monkeypatch, settings):
    """The registry says which exports are a model by themselves; an adapter answers only on its base."""
    from easytune.export import service
    from easytune.export.formats import FORMATS
    from easytune.ui import evaluate_step

    rows = [{"format": name, "state": "READY", "path": f"/exports/{name}"} for name in FORMATS]
    rows.append({"format": "merged", "state": "FAILED", "path": "/exports/failed"})
    monkeypatch.setattr(service, "list_exports", lambda settings, job_id: rows)
    paths = [value for _, value in evaluate_step.chat_targets(settings, "job-1", "en")["choices"]]
    assert paths == ["job-1"] + [f"/exports/{name}" for name, spec in FORMATS.items() if spec.answers_alone]
    assert "/exports/adapter" not in paths and "/exports/gguf-lora" not in paths and "/exports/merged" in paths
