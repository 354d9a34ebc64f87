"""Model sources: local folders, the built-in model, the HF cache, downloads that fail fast offline."""

from __future__ import annotations

import json
import socket
import time

import pytest
from models_helpers import copy_model, make_hf_cache, write_json

from easytune import settings as settings_module
from easytune.i18n import UserError, t
from easytune.models import sources


def raised(excinfo) -> UserError:
    err = excinfo.value
    # the message renders in both languages with the parameters given
    assert err.message("en") and err.message("zh")
    return err


def test_complete_local_folder_resolves(tiny_model_dir):
    source = sources.resolve(str(tiny_model_dir))
    assert source.kind == "local"
    assert source.path == str(tiny_model_dir)
    assert source.size_bytes > 0 and not source.needs_remote_code and source.warnings == []
    assert set(source.to_dict()) >= {"ref", "kind", "path", "hub_id", "needs_remote_code", "warnings"}


@pytest.mark.parametrize("removed, named", [
    (("config.json",), "config.json"),
    (("tokenizer_config.json",), "tokenizer_config.json"),
    (("tokenizer.json",), "tokenizer.json"),
    (("model.safetensors",), "*.safetensors"),
])
def test_missing_files_are_named(tiny_model_dir, tmp_path, removed, named):
    folder = copy_model(tiny_model_dir, tmp_path / "m", skip=removed)
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(folder))
    err = raised(excinfo)
    assert err.key == "models.folder_incomplete"
    assert named in err.params["missing"]
    assert named in err.message("en") and str(folder) in err.message("zh")


def test_sentencepiece_tokenizer_is_accepted(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m", skip=("tokenizer.json",))
    (folder / "tokenizer.model").write_bytes(b"\x00sentencepiece")
    assert sources.check_folder(folder).ok


def test_pickle_only_folder_is_refused_with_conversion_advice(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m", skip=("model.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(folder))
    err = raised(excinfo)
    assert err.key == "models.pickle_weights_refused"
    assert "pytorch_model.bin" in err.message("en")
    assert "safe_serialization=True" in err.message("en") and "safe_serialization=True" in err.message("zh")


def test_pickle_beside_safetensors_is_ignored_with_a_warning(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    source = sources.resolve(str(folder))
    assert [w["key"] for w in source.warnings] == ["models.pickle_files_ignored"]


def test_sharded_weights_need_every_shard(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m", skip=("model.safetensors",))
    data = (tiny_model_dir / "model.safetensors").read_bytes()
    (folder / "model-00001-of-00002.safetensors").write_bytes(data)
    write_json(folder / "model.safetensors.index.json", {"metadata": {}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}})
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(folder))
    err = raised(excinfo)
    assert err.key == "models.shards_missing" and err.params["count"] == 1
    assert "model-00002-of-00002.safetensors" in err.message("en")
    (folder / "model-00002-of-00002.safetensors").write_bytes(data)
    assert sources.resolve(str(folder)).sharded


def test_adapter_folder_and_bad_paths(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    write_json(adapter / "adapter_config.json", {"peft_type": "LORA"})
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(adapter))
    assert raised(excinfo).key == "models.adapter_not_base"
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(tmp_path / "nope" / "model"))
    assert raised(excinfo).key == "models.path_not_found"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(tmp_path / "file.txt"))
    assert raised(excinfo).key == "models.path_not_folder"
    with pytest.raises(UserError) as excinfo:
        sources.resolve("not a model")
    assert raised(excinfo).key == "models.ref_unknown"
    with pytest.raises(UserError) as excinfo:
        sources.resolve("  ")
    assert raised(excinfo).key == "models.ref_empty"


def test_broken_config_is_reported(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(UserError) as excinfo:
        sources.resolve(str(folder))
    assert raised(excinfo).key == "models.bad_config"


def test_custom_code_is_flagged_and_off_by_default(tiny_model_dir, tmp_path):
    folder = copy_model(tiny_model_dir, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    write_json(folder / "config.json", config)
    source = sources.resolve(str(folder))
    assert source.needs_remote_code and not source.trust_remote_code
    assert [w["key"] for w in source.warnings] == ["models.remote_code_warning"]
    trusted = sources.resolve(str(folder), trust_remote_code=True)
    assert trusted.trust_remote_code and trusted.warnings[0]["key"] == "models.remote_code_trusted"

    config["model_type"] = "my_custom_arch"  # unknown to transformers: its code would have to run
    write_json(folder / "config.json", config)
    with pytest.raises(UserError) as excinfo:
        sources.load_safe(folder)
    assert raised(excinfo).key == "models.remote_code_required"


def test_builtin_model(monkeypatch, tiny_model_dir, tmp_path):
    assets = tmp_path / "assets"
    copy_model(tiny_model_dir, assets / "tiny-model")
    monkeypatch.setattr(settings_module, "ASSETS_DIR", assets)
    source = sources.resolve(sources.BUILTIN_ID)
    assert source.kind == "builtin" and source.path == str(assets / "tiny-model")
    monkeypatch.setattr(settings_module, "ASSETS_DIR", tmp_path / "elsewhere")
    with pytest.raises(UserError) as excinfo:
        sources.resolve(sources.BUILTIN_ID)
    assert raised(excinfo).key == "models.builtin_missing"


def test_hf_cache_scan_and_offline_resolution(hf_cache, tiny_model_dir, monkeypatch):
    snapshot = make_hf_cache(hf_cache, "acme/tiny-chat", tiny_model_dir)
    make_hf_cache(hf_cache, "acme/half-done", tiny_model_dir, skip=("model.safetensors",))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = {m.repo_id: m for m in sources.scan_hf_cache()}
    assert set(found) == {"acme/tiny-chat", "acme/half-done"}
    tiny = found["acme/tiny-chat"]
    assert tiny.path == str(snapshot) and tiny.has_safetensors and tiny.complete
    assert tiny.size_bytes >= (tiny_model_dir / "model.safetensors").stat().st_size
    assert not found["acme/half-done"].has_safetensors and not found["acme/half-done"].complete
    assert set(tiny.to_dict()) >= {"repo_id", "path", "size_bytes", "has_safetensors"}

    started = time.monotonic()
    source = sources.resolve("acme/tiny-chat")  # offline: straight from the cache
    assert time.monotonic() - started < 1
    assert source.kind == "hf_cache" and source.path == str(snapshot) and source.hub_id == "acme/tiny-chat"


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert sources.hf_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert sources.hf_cache_dir() == tmp_path / "c"
    assert sources.scan_hf_cache() == []  # a cache that does not exist is just empty


def test_hub_id_not_in_cache_says_how_to_get_it(hf_cache):
    with pytest.raises(UserError) as excinfo:
        sources.resolve("acme/absent")
    err = raised(excinfo)
    assert err.key == "models.not_in_cache" and str(hf_cache) in err.message("en")


def test_download_fails_fast_in_offline_mode(hf_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(UserError) as excinfo:
        sources.resolve("acme/absent", fetch=True)
    assert time.monotonic() - started < 1
    err = raised(excinfo)
    assert err.key == "models.offline_mode"
    assert "local folder" in err.message("en") and str(hf_cache) in err.message("en")
    assert "本地文件夹" in err.message("zh")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:{port}",  # refused at once
    "http://10.255.255.1:81",  # a black hole: only the timeout ends it
])
def test_download_fails_fast_without_network(hf_cache, monkeypatch, endpoint):
    monkeypatch.setenv("HF_ENDPOINT", endpoint.format(port=_closed_port()))
    calls = []
    started = time.monotonic()
    with pytest.raises(UserError) as excinfo:
        sources.download("acme/absent", progress=calls.append)
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, elapsed
    err = raised(excinfo)
    assert err.key == "models.hub_unreachable" and "HF_ENDPOINT" in err.message("en")
    assert calls == []


def test_modelscope_needs_its_package(monkeypatch):
    monkeypatch.setattr(sources, "modelscope_available", lambda: False)
    with pytest.raises(UserError) as excinfo:
        sources.resolve("modelscope:qwen/Qwen2.5-0.5B-Instruct")
    err = raised(excinfo)
    assert err.key == "models.modelscope_missing" and "pip install modelscope" in err.message("zh")


def test_load_safe_reads_safetensors_only(tiny_model_dir):
    with pytest.raises(ValueError):
        sources.load_safe(tiny_model_dir, use_safetensors=False)
    model = sources.load_safe(tiny_model_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    tokenizer = sources.load_tokenizer(tiny_model_dir)
    assert tokenizer("hello world")["input_ids"]


def test_messages_exist_in_both_languages():
    for key in ("models.offline_mode", "models.hub_unreachable", "models.folder_incomplete"):
        assert t(key, "en", hub_id="a/b", cache="c", endpoint="e", path="p", missing="m")
        assert t(key, "zh", hub_id="a/b", cache="c", endpoint="e", path="p", missing="m")


CONCURRENT_FIRST_LOADS = """
import sys, threading
from easytune.chat import load_model
from easytune.models.inspect import inspect_model
from easytune.models.sources import load_config, load_tokenizer

folder = sys.argv[1]
calls = [lambda: inspect_model(folder), lambda: load_tokenizer(folder), lambda: load_config(folder),
         lambda: load_model(folder, None)]
errors = []

def run(call):
    try:
        call()
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=run, args=(call,)) for call in calls * 2]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors)
"""


def test_the_apps_threads_may_load_models_at_the_same_moment_in_a_fresh_process(tiny_model_dir):
    """Two tabs planning and chatting at once, before anything imported transformers: each load works
    (transformers' lazy names, resolved by two threads at once, used to fail with "cannot import name")."""
    import subprocess
    import sys

    for _ in range(3):  # a race: a few fresh processes
        done = subprocess.run([sys.executable, "-c", CONCURRENT_FIRST_LOADS, str(tiny_model_dir)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == "[]"
