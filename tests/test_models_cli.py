"""Models through the CLI: register a folder, inspect it, judge fit, refuse pickles, fail fast offline."""

import os
import shutil
import time

from support import ROOT, cli, cli_json

TINY = ROOT / "assets" / "tiny-model"


def test_register_inspect_and_remove_a_local_folder(home, tmp_path):
    folder = tmp_path / "my-model"
    shutil.copytree(TINY, folder)
    added = cli_json("models", "add", str(folder), "--name", "mine", home=home)
    assert added["model"]["name"] == "mine" and added["source"]["kind"] == "local"
    info = cli_json("models", "info", "mine", home=home)
    assert info["hidden_size"] >= 128 and info["has_chat_template"]
    assert set(info["linear_modules"]["attention_qkv"]) == {"q_proj", "k_proj", "v_proj"}
    assert "gate_proj" in info["linear_modules"]["feed_forward"]
    names = [m["name"] for m in cli_json("models", "list", home=home)["models"]]
    assert names[:2] == ["easytune-tiny", "mine"]
    cli("models", "rm", "mine", home=home)
    assert folder.is_dir(), "a user's own folder is never deleted"


def test_pickle_only_folder_is_refused_with_a_way_out(home, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TINY / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded, ever")
    result = cli("models", "add", str(folder), home=home, check=False)
    assert result.returncode == 2
    assert "safetensors" in result.stderr
    assert cli_json("models", "list", home=home)["models"][1:] == []


def test_hub_id_without_network_fails_fast_with_the_offline_recipe(home):
    started = time.monotonic()
    env_before = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        result = cli("models", "add", "Qwen/Qwen2.5-0.5B-Instruct", home=home, check=False)
    finally:
        if env_before is None:
            os.environ.pop("HF_HUB_OFFLINE")
        else:
            os.environ["HF_HUB_OFFLINE"] = env_before
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "local folder" in result.stderr
    assert time.monotonic() - started < 30  # an interpreter start; no network wait


def test_fit_verdict_for_a_big_model_names_what_would_help(home):
    result = cli_json("models", "fit", "qwen2.5-7b-instruct", "--method", "full", "--seq-len", "4096", home=home)
    assert result["verdict"]["status"] == "does_not_fit"
    assert result["verdict"]["suggestions"]
    small = cli_json("models", "fit", "easytune-tiny", "--seq-len", "256", home=home)
    assert small["verdict"]["status"] == "fits"
