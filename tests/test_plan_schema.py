"""The TrainingPlan: YAML round trip, and early, named errors for bad settings."""

from dataclasses import fields

import pytest

from easytune.i18n import UserError
from easytune.plan.schema import TrainingPlan
from easytune.settings import PRESETS_DIR


def test_yaml_round_trip_is_exact():
    plan = TrainingPlan(learning_rate=3e-4, epochs=2.5, lora_r=16, scheduler="linear", dataset="demo:identity_en")
    for lang in ("en", "zh"):
        assert TrainingPlan.from_yaml(plan.to_yaml(lang)) == plan


def test_yaml_carries_help_as_comments():
    text = TrainingPlan().to_yaml("zh")
    assert "learning_rate: 0.0002  # 每次更新的步长" in text


def test_one_help_text_feeds_the_yaml_the_expert_form_and_the_explanation(monkeypatch):
    """A setting's help is its catalog entry: change the entry and every door shows the change."""
    from easytune.i18n import catalog
    from easytune.plan.explain import explain_setting, explain_settings, explanation_text
    from easytune.plan.schema import plan_fields
    from easytune.ui.texts import Texts
    from easytune.ui.wizard import _field_input

    for lang in ("en", "zh"):
        monkeypatch.setitem(catalog(lang), "plan.field.learning_rate", f"the one help text ({lang})")
    assert "learning_rate: 0.0002  # the one help text (en)\n" in TrainingPlan().to_yaml("en")
    assert explain_setting("learning_rate", "zh")["help"] == "the one help text (zh)"
    assert "    the one help text (en)\n" in explanation_text(explain_settings("en"), "en")
    field = next(f for f in plan_fields() if f.name == "learning_rate")
    texts = Texts("en")
    assert _field_input(field, 2e-4, texts).info == "the one help text (en)"
    assert texts.updates("zh")[0]["info"] == "the one help text (zh)"  # and after the language switch


def test_help_lives_in_the_catalog_not_beside_the_fields():
    """A comment after a field would be a second copy of its help, free to drift from the catalog's."""
    import inspect
    import re

    from easytune.plan.schema import plan_fields

    source = inspect.getsource(TrainingPlan)
    for f in plan_fields():
        line = re.search(rf"^    {f.name}: .*$(?:\n {{20,}}.*$)*", source, re.M).group(0)
        assert "#" not in line, line


def test_explaining_every_setting_says_what_it_accepts_and_its_default():
    from easytune.plan.explain import explain_settings

    entries = {e["name"]: e for e in explain_settings("en")}
    assert list(entries) == [f.name for f in fields(TrainingPlan)]
    assert entries["lora_r"]["accepts"] == "1 … 256" and entries["lora_r"]["default"] == 8
    assert [c["value"] for c in entries["scheduler"]["choices"]] == ["cosine", "linear", "constant"]
    assert entries["keep_best"]["accepts"] == "true or false"
    zh = {e["name"]: e for e in explain_settings("zh")}
    assert "余弦（逐渐放缓）" in zh["scheduler"]["accepts"]  # choices in the reader's words, beside the YAML value


@pytest.mark.parametrize("key, error", [("learnin_rate", "plan.unknown_key"), ("colour", "plan.unknown_key_no_hint")])
def test_an_unknown_setting_is_one_error_wherever_it_is_written(key, error):
    from easytune.plan.explain import explain_setting

    for attempt in (lambda: TrainingPlan.from_dict({key: 1}), lambda: explain_setting(key, "en")):
        with pytest.raises(UserError) as err:
            attempt()
        assert err.value.key == error
        for lang in ("en", "zh"):
            assert key in err.value.message(lang) and "easytune plan --explain" in err.value.message(lang)
            assert ("learning_rate" in err.value.message(lang)) == (error == "plan.unknown_key")


@pytest.mark.parametrize("text, key, field", [
    ("learnin_rate: 0.1", "plan.unknown_key", "learning_rate"),
    ("lora_r: 0", "plan.out_of_range", "lora_r"),
    ("batch_size: 2.5", "plan.bad_type", "batch_size"),
    ("epochs: many", "plan.bad_type", "epochs"),
    ("scheduler: wavy", "plan.bad_choice", "scheduler"),
    ("method: [lora", "plan.bad_yaml", None),
])
def test_bad_settings_fail_early_naming_the_field(text, key, field):
    with pytest.raises(UserError) as err:
        TrainingPlan.from_yaml(text)
    assert err.value.key == key
    for lang in ("en", "zh"):
        message = err.value.message(lang)
        if field:
            assert field in message


def test_every_shipped_plan_preset_loads():
    plans = list(PRESETS_DIR.glob("demo*.yaml"))
    assert plans
    for path in plans:
        TrainingPlan.load(path)
