"""Every presets/*.yaml is read through its typed class, and a broken value is refused with the file and
the key path named."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Literal

import pytest
import yaml

from easytune.evaluation.config import EvaluationConfig
from easytune.health import HealthThresholds
from easytune.models.catalog import CatalogError, ModelCatalog
from easytune.plan.rules import Intents, IntentsError
from easytune.plan.schema import TrainingPlan
from easytune.presets import PresetError, as_dict, bounds, check_preset, load_preset
from easytune.settings import PRESETS_DIR

# file -> (its class, the error it raises); demo.yaml is a plan file, read by TrainingPlan itself
PRESET_CLASSES = {
    "intents.yaml": (Intents, IntentsError),
    "models.yaml": (ModelCatalog, CatalogError),
    "health.yaml": (HealthThresholds, PresetError),
    "evaluation.yaml": (EvaluationConfig, PresetError),
}


def raw(name: str):
    return yaml.safe_load((PRESETS_DIR / name).read_text(encoding="utf-8"))


def test_every_preset_file_has_a_class():
    assert {p.name for p in PRESETS_DIR.glob("*.yaml")} == {*PRESET_CLASSES, "demo.yaml"}


@pytest.mark.parametrize("name", sorted(PRESET_CLASSES))
def test_every_preset_loads_through_its_class(name):
    cls, error = PRESET_CLASSES[name]
    preset = load_preset(cls, PRESETS_DIR / name, error)
    assert isinstance(preset, cls)
    assert load_preset(cls, PRESETS_DIR / name, error) is preset  # cached until the file changes
    if name in ("health.yaml", "evaluation.yaml"):  # no optional keys: the plain view is the file itself
        assert as_dict(preset) == raw(name)


def test_the_demo_preset_is_a_plan():
    assert TrainingPlan.load(PRESETS_DIR / "demo.yaml").model


def _set(data, path: tuple, value):
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value


_DELETE = object()

BROKEN = [
    # file, key path, value, the words the error must hold
    ("intents.yaml", ("levels", "L2", "learning_rate"), "fast", "levels.L2.learning_rate: expected float"),
    ("intents.yaml", ("levels", "L1", "r_range"), [4, 0], "levels.L1.r_range[1]: expected a number ≥ 1"),
    ("intents.yaml", ("tasks", "style", "colour"), "red", "tasks.style.colour: unknown field 'colour'"),
    ("intents.yaml", ("tasks", "chat", "needs"), ["sft", "pictures"], "tasks.chat.needs[1]: expected one of"),
    ("intents.yaml", ("levels", "L4"), {}, "levels.L4: unknown field 'L4'"),
    ("intents.yaml", ("validation", "ratio"), 1.5, "validation.ratio: expected a number ≤ 1"),
    ("intents.yaml", ("seq_len", "round_to"), _DELETE, "seq_len: missing 'round_to'"),
    ("intents.yaml", ("throughput", "cuda_tflops", 1, "bf16"), -1, "throughput.cuda_tflops[1].bf16"),
    ("health.yaml", ("forgetting", "warn_pct"), "ten", "forgetting.warn_pct: expected float"),
    ("health.yaml", ("stall", "evals"), 0, "stall.evals: expected a number ≥ 1"),
    ("health.yaml", ("overfitting", "patience"), 3, "overfitting.patience: unknown field"),
    ("evaluation.yaml", ("verdict", "learned_match"), 10, "verdict.learned_match: expected a number ≤ 1"),
    ("evaluation.yaml", ("rows", "seen"), 2.5, "rows.seen: expected int"),
    ("evaluation.yaml", ("answer", "budget"), 1, "answer.budget: unknown field"),
    ("models.yaml", ("models", 0, "gated"), "no", "models[0].gated: expected bool"),
    ("models.yaml", ("models", 1, "shape", "vocab"), 0, "models[1].shape.vocab: expected a number ≥ 1"),
]


@pytest.mark.parametrize("name,path,value,words", BROKEN, ids=[f"{b[0]}:{b[3].split(':')[0]}" for b in BROKEN])
def test_a_broken_value_names_the_file_and_the_key(name, path, value, words):
    cls, error = PRESET_CLASSES[name]
    data = copy.deepcopy(raw(name))
    _set(data, path, value)
    with pytest.raises(error) as caught:
        check_preset(cls, data, name, error)
    message = str(caught.value)
    assert message.startswith(f"{name}:") and words in message, message
    assert isinstance(caught.value, PresetError) and caught.value.file == name


def test_a_file_edit_is_read_again(tmp_path):
    path = tmp_path / "health.yaml"
    path.write_text((PRESETS_DIR / "health.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = load_preset(HealthThresholds, path)
    data = raw("health.yaml")
    data["too_few_steps"] = 7
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    after = load_preset(HealthThresholds, path)
    assert before.too_few_steps == 20 and after.too_few_steps == 7


# the checker's own rules, on a small class


@dataclass(frozen=True)
class _Inner:
    size: int = bounds(ge=1, le=10)


@dataclass(frozen=True)
class _Sample:
    kind: Literal["a", "b"]
    inner: _Inner
    ratio: float = bounds(0.5, gt=0, lt=1)
    pair: tuple[int, int] = (1, 2)
    by_device: dict[Literal["cpu", "gpu"], int] = bounds(None, ge=0)
    anything: dict[str, str] | None = None
    either: str | dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.pair[0] > self.pair[1]:
            raise ValueError("pair must be [low, high]")


def _problems(data) -> list[str]:
    with pytest.raises(PresetError) as caught:
        check_preset(_Sample, data, "sample.yaml")
    return caught.value.problems


def test_the_checker_builds_typed_values():
    sample = check_preset(_Sample, {"kind": "a", "inner": {"size": 3}, "ratio": 1 / 4, "pair": [2, 5],
                                    "by_device": {"cpu": 1, "gpu": 0}, "either": {"x": "y"}}, "sample.yaml")
    assert sample == _Sample(kind="a", inner=_Inner(3), ratio=0.25, pair=(2, 5), by_device={"cpu": 1, "gpu": 0},
                             either={"x": "y"})
    assert check_preset(_Sample, {"kind": "b", "inner": {"size": 1}, "ratio": 1 / 2}, "s").by_device is None


@pytest.mark.parametrize("data,problem", [
    ({"kind": "c", "inner": {"size": 1}}, "kind: expected one of a, b, got 'c'"),
    ({"kind": "a", "inner": {"size": True}}, "inner.size: expected int, got True"),
    ({"kind": "a", "inner": {"size": 11}}, "inner.size: expected a number ≤ 10, got 11"),
    ({"kind": "a", "inner": {"size": 1}, "ratio": 1}, "ratio: expected a number < 1, got 1.0"),
    ({"kind": "a", "inner": {"size": 1}, "pair": [1]}, "pair: expected a list of 2, got [1]"),
    ({"kind": "a", "inner": {"size": 1}, "pair": [3, 2]}, "(top): pair must be [low, high]"),
    ({"kind": "a", "inner": {"size": 1}, "by_device": {"cpu": 1}}, "by_device: missing 'gpu'"),
    ({"kind": "a", "inner": {"size": 1}, "by_device": {"cpu": 1, "gpu": -1}}, "by_device.gpu: expected a number ≥ 0"),
    ({"kind": "a", "inner": {"size": 1}, "either": 3}, "either: expected str or dict[str, str], got 3"),
    ({"kind": "a"}, "(top): missing 'inner'"),
    ({"kind": "a", "inner": {"size": 1}, "extra": 1}, "extra: unknown field 'extra'"),
])
def test_the_checker_names_each_problem(data, problem):
    problems = _problems(data)
    assert any(problem in p for p in problems), problems


def test_every_problem_is_reported_at_once():
    problems = _problems({"kind": "z", "inner": {"size": 0}, "colour": "red"})
    assert len(problems) == 3
