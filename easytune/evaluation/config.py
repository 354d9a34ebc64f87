"""presets/evaluation.yaml: sizes, answer budgets and verdict thresholds, as data."""

from __future__ import annotations

from functools import lru_cache

import yaml

from easytune.settings import PRESETS_DIR

CONFIG_FILE = PRESETS_DIR / "evaluation.yaml"


@lru_cache(maxsize=1)
def evaluation_config() -> dict:
    return yaml.safe_load(CONFIG_FILE.read_text(encoding="utf-8"))
