"""The demo job's LoRA adapter as a GGUF file in llama.cpp's adapter format: its metadata and tensor names are
llama.cpp's, B carries the q/k row order of a GGUF base, and W + scale·B·A rebuilt from the file is the merged
model's weight. Where llama-cpp-python is installed, llama.cpp applies it on an F16 GGUF of the base and
answers like the trained model."""

import json
import shutil
from pathlib import Path

import pytest
from test_export import job_answers, private_home, questions, settings_for
from test_export_gguf_llamacpp import llama_answers

from easytune.export.formats import module_usable
from support import ROOT

pytestmark = pytest.mark.slow
TINY = ROOT / "assets" / "tiny-model"


@pytest.fixture(scope="module")
def exported(demo_job, tmp_path_factory):
    from easytune.export import export_job

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path_factory.mktemp("export-lora") / "home")
    return home, job, export_job(settings_for(home), job["id"], "gguf-lora")


def read(path: Path):
    import gguf

    reader = gguf.GGUFReader(str(path))
    return reader, {t.name: t for t in reader.tensors}


def test_adapter_file_carries_llama_cpps_adapter_metadata_and_names(exported):
    home, job, result = exported
    folder = Path(result["path"])
    assert result["state"] == "READY" and result["verified"]
    assert {p.name for p in folder.iterdir()} == {"adapter-f32.gguf", "README.md", "easytune_export.json"}
    adapter_config = json.loads((Path(job["job_dir"]) / "adapter" / "adapter_config.json").read_text())
    reader, tensors = read(folder / "adapter-f32.gguf")
    value = lambda key: reader.fields[key].contents()
    assert (value("general.type"), value("adapter.type"), value("general.architecture")) == ("adapter", "lora", "llama")
    assert value("adapter.lora.alpha") == adapter_config["lora_alpha"]
    r = adapter_config["r"]
    blocks, kinds = 4, ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
    assert set(tensors) == {f"blk.{i}.{kind}.weight.lora_{side}" for i in range(blocks) for kind in kinds
                            for side in "ab"}
    config = json.loads((TINY / "config.json").read_text())
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    # llama.cpp's shape check: a's ne = (in, r), b's ne = (r, out), against the weight's ne = (in, out)
    assert tuple(tensors["blk.0.attn_k.weight.lora_a"].shape) == (config["hidden_size"], r)
    assert tuple(tensors["blk.0.attn_k.weight.lora_b"].shape) == (r, config["num_key_value_heads"] * head_dim)
    assert tuple(tensors["blk.1.ffn_down.weight.lora_a"].shape) == (config["intermediate_size"], r)
    assert {t.tensor_type.name for t in tensors.values()} == {"F32"}
    check = result["verification"]["gguf_lora"]
    assert check["metadata_ok"] and check["weights_match"] and check["max_weight_error"] < 1e-5


def test_rebuilt_weights_are_the_merged_models_in_gguf_row_order(exported):
    """Independently of the check: peft merges the adapter; llama.cpp's F16 writer permutes q/k rows of that
    merge; the file's B (already permuted) times A added to the permuted base must give the same weight."""
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from easytune.export.gguf import permute_for_rope

    home, job, result = exported
    config = json.loads((TINY / "config.json").read_text())
    adapter_config = json.loads((Path(job["job_dir"]) / "adapter" / "adapter_config.json").read_text())
    scale = adapter_config["lora_alpha"] / adapter_config["r"]
    base = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).state_dict()
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32),
                                       Path(job["job_dir"]) / "adapter").merge_and_unload().state_dict()
    _, tensors = read(Path(result["path"]) / "adapter-f32.gguf")
    for block, proj, heads in ((2, "q", config["num_attention_heads"]), (3, "k", config["num_key_value_heads"]),
                               (1, "v", None)):
        name = f"model.layers.{block}.self_attn.{proj}_proj.weight"
        order = (lambda w, heads=heads: permute_for_rope(w, heads)) if heads else (lambda w: w)
        a = np.array(tensors[f"blk.{block}.attn_{proj}.weight.lora_a"].data)
        b = np.array(tensors[f"blk.{block}.attn_{proj}.weight.lora_b"].data)
        rebuilt = order(base[name].numpy()) + scale * b @ a
        assert np.abs(rebuilt - order(merged[name].numpy())).max() < 1e-6
        if heads:  # and A un-permuted with B un-permuted would not be (the permutation matters)
            assert np.abs(base[name].numpy() + scale * b @ a - merged[name].numpy()).max() > 1e-4


def test_answers_from_the_file_match_the_trained_model(exported):
    check = exported[2]["verification"]
    assert check["identical"] == check["total"] == 3 and check["agreement"] == 1.0


@pytest.mark.skipif(not module_usable("llama_cpp"), reason="llama-cpp-python is not installed")
def test_llama_cpp_applies_the_adapter_on_an_f16_base_and_answers_like_the_trained_model(exported, tmp_path):
    from easytune.export.gguf import write_gguf_file

    home, job, result = exported
    assert result["verification"]["llama_cpp"]["identical"] == 3
    base = tmp_path / "base-f16.gguf"
    write_gguf_file(TINY, base, "F16")
    asked = questions(3, 3)
    trained = job_answers(settings_for(home), job["id"], asked)
    assert llama_answers(base, asked, Path(result["path"]) / "adapter-f32.gguf") == trained
    assert llama_answers(base, asked) != trained, "without the adapter the base answers otherwise"


def test_an_adapter_llama_cpp_cannot_carry_is_refused_before_anything_is_written(demo_job, tmp_path, monkeypatch):
    import easytune.chat
    from easytune.export import export_job, list_exports
    from easytune.i18n import UserError

    demo_home, job = demo_job
    settings = settings_for(private_home(demo_home, tmp_path / "home"))
    dora = tmp_path / "dora-adapter"
    shutil.copytree(Path(job["job_dir"]) / "adapter", dora)
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    monkeypatch.setattr(easytune.chat, "job_model", lambda settings, job_id: (str(TINY), str(dora)))
    target = tmp_path / "out"
    with pytest.raises(UserError) as refused:
        export_job(settings, job["id"], "gguf-lora", out_dir=target)
    assert refused.value.key == "export.error.gguf_lora_config"
    assert "use_dora" in refused.value.message("en") and "use_dora" in refused.value.message("zh")
    assert not target.exists() and list_exports(settings) == []
