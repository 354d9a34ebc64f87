"""The TrainingPlan: YAML round trip, and early, named errors for bad settings."""

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
