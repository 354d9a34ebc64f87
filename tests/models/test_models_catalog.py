"""The model catalog: schema, accurate numbers, and what is already on disk."""

from __future__ import annotations

import copy

import pytest
import yaml
from models_helpers import copy_model, make_hf_cache

from easytune.models.catalog import (
    CatalogError,
    catalog_path,
    get_entry,
    list_catalog,
    load_catalog,
    validate_catalog,
)

REQUIRED_FAMILIES = {
    "Qwen/Qwen2.5-0.5B-Instruct", "Qwen/Qwen2.5-1.5B-Instruct", "Qwen/Qwen2.5-3B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-0.6B", "Qwen/Qwen3-1.7B", "Qwen/Qwen3-4B",
    "meta-llama/Llama-3.2-1B-Instruct", "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
}


def raw():
    return yaml.safe_load(catalog_path().read_text(encoding="utf-8"))


def test_catalog_loads_through_the_schema():
    entries = load_catalog()
    hub_ids = {e.hub_id for e in entries}
    assert REQUIRED_FAMILIES <= hub_ids
    assert any(e.hub_id.startswith("THUDM/glm-4") for e in entries)
    assert any("Phi" in e.hub_id for e in entries) and any("gemma" in e.hub_id for e in entries)
    for entry in entries:
        data = entry.to_dict()
        assert set(data) >= {"id", "hub_id", "params_b", "license", "languages", "context_length",
                             "chat_template", "good_for_zh", "good_for_en", "shape"}
        assert set(data["shape"]) >= {"layers", "hidden", "intermediate", "heads", "kv_heads", "vocab"}
        assert entry.good_for("zh") == entry.good_for_zh and entry.good_for("en") == entry.good_for_en
        assert any("\u4e00" <= ch <= "\u9fff" for ch in entry.good_for_zh)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["models"][0].pop("hub_id"), "missing 'hub_id'"),
    (lambda d: d["models"][0].update(params_b="big"), "params_b"),
    (lambda d: d["models"][0]["shape"].update(layers=3), "disagrees with the shape"),
    (lambda d: d["models"][1].update(id=d["models"][0]["id"]), "duplicate"),
    (lambda d: d["models"][0].update(colour="red"), "unknown field"),
    (lambda d: d["models"][0]["shape"].update(kv_heads=5), "multiple of kv_heads"),
    (lambda d: d["models"][0].update(languages=["Chinese"]), "ISO 639-1"),
    (lambda d: d.update(schema=2), "schema"),
])
def test_schema_catches_mistakes(mutate, message):
    data = copy.deepcopy(raw())
    mutate(data)
    with pytest.raises(CatalogError, match=message):
        validate_catalog(data)


def test_numbers_match_the_real_architectures():
    """Build each catalog model's structure from its numbers (meta device) and count parameters."""
    from transformers import CONFIG_MAPPING

    from easytune.models.inspect import inspect_config

    for entry in load_catalog():
        shape = dict(entry.shape_numbers)
        kwargs = dict(num_hidden_layers=shape["layers"], hidden_size=shape["hidden"],
                      intermediate_size=shape["intermediate"], num_attention_heads=shape["heads"],
                      num_key_value_heads=shape["kv_heads"], vocab_size=shape["vocab"],
                      tie_word_embeddings=shape["tie_embeddings"],
                      max_position_embeddings=entry.context_length)
        if "head_dim" in shape:
            kwargs["head_dim"] = shape["head_dim"]
        info = inspect_config(CONFIG_MAPPING[entry.model_type](**kwargs))
        assert abs(info.num_parameters / 1e9 - entry.params_b) <= 0.01 * entry.params_b, entry.id
        found = (info.num_layers, info.hidden_size, info.intermediate_size, info.num_key_value_heads,
                 info.vocab_size)
        assert found == tuple(shape[k] for k in ("layers", "hidden", "intermediate", "kv_heads", "vocab"))
        assert info.qk_norm == shape.get("qk_norm", False), entry.id


def test_get_entry_by_id_or_hub_id():
    assert get_entry("qwen2.5-0.5b-instruct").hub_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert get_entry("qwen/qwen2.5-0.5b-instruct").id == "qwen2.5-0.5b-instruct"
    assert get_entry("nothing/here") is None


def test_list_catalog_marks_what_is_on_disk(settings, hf_cache, tiny_model_dir, tmp_path):
    make_hf_cache(hf_cache, "Qwen/Qwen3-0.6B", tiny_model_dir)
    registered = copy_model(tiny_model_dir, tmp_path / "my-llama")
    copy_model(tiny_model_dir, settings.home / "models" / "google--gemma-3-1b-it")
    items = {item.entry.id: item for item in list_catalog(settings, registered={
        "meta-llama/Llama-3.2-1B-Instruct": registered, "qwen2.5-7b-instruct": tmp_path / "gone"})}
    assert items["qwen3-0.6b"].on_disk and items["qwen3-0.6b"].source == "hf_cache"
    assert items["qwen3-0.6b"].complete
    assert items["llama-3.2-1b-instruct"].source == "registered"
    assert items["llama-3.2-1b-instruct"].path == str(registered)
    assert items["gemma-3-1b-it"].source == "app_folder"
    assert not items["qwen2.5-7b-instruct"].on_disk  # registered, but the folder is gone
    assert not items["qwen2.5-0.5b-instruct"].on_disk and items["qwen2.5-0.5b-instruct"].path is None
    data = items["qwen3-0.6b"].to_dict(lang="en")
    assert data["on_disk"] is True and data["good_for"] == items["qwen3-0.6b"].entry.good_for_en
