"""Reading the YAML files EasyTune ships and reads at start: the message catalogs and the presets.

PyYAML's own parser is written in Python; its libyaml binding reads the same documents into the same values
about fifteen times faster (the two catalogs of the app's first page: 0.17 s → 0.01 s each here). Wheels of
PyYAML carry libyaml; a PyYAML built without it is still read, more slowly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(path: Path) -> Any:
    """The document in `path` (UTF-8), as yaml.safe_load reads it."""
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
