"""The model catalog (presets/models.yaml): base models offered by name, with what they are good
for and their architecture numbers, so memory fit can be estimated before anything is downloaded.

    load_catalog()                  -> [CatalogEntry], checked against the schema below
    get_entry("qwen2.5-0.5b-instruct") or get_entry("Qwen/Qwen2.5-0.5B-Instruct")
    list_catalog(settings, registered={"qwen2.5-0.5b-instruct": "/data/qwen"})
                                    -> [CatalogItem]: each entry, and whether and where it is on disk
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from easytune import settings as settings_module
from easytune.models.estimate import ModelShape

SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
HUB_PATTERN = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
LANG_PATTERN = re.compile(r"^[a-z]{2,3}$")
PARAMS_TOLERANCE = 0.01  # params_b must agree with the count from the shape within 1 %

FIELDS: dict[str, tuple[type | tuple[type, ...], bool]] = {  # name: (type, required)
    "id": (str, True),
    "name": (str, True),
    "hub_id": (str, True),
    "model_type": (str, True),
    "modelscope_id": (str, False),
    "params_b": ((int, float), True),
    "license": (str, True),
    "gated": (bool, True),
    "languages": (list, True),
    "context_length": (int, True),
    "chat_template": (str, True),
    "good_for_zh": (str, True),
    "good_for_en": (str, True),
    "shape": (dict, True),
}
SHAPE_FIELDS: dict[str, tuple[type, bool]] = {
    "layers": (int, True),
    "hidden": (int, True),
    "intermediate": (int, True),
    "heads": (int, True),
    "kv_heads": (int, True),
    "vocab": (int, True),
    "head_dim": (int, False),
    "tie_embeddings": (bool, True),
    "qk_norm": (bool, False),
    "gated_mlp": (bool, False),
}


class CatalogError(ValueError):
    """The catalog file breaks its schema (a packaging error, not something a user can fix)."""


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    hub_id: str
    model_type: str
    params_b: float
    license: str
    gated: bool
    languages: tuple[str, ...]
    context_length: int
    chat_template: str
    good_for_zh: str
    good_for_en: str
    shape_numbers: tuple[tuple[str, Any], ...]
    modelscope_id: str | None = None

    def shape(self) -> ModelShape:
        numbers = dict(self.shape_numbers)
        return ModelShape(params=round(self.params_b * 1e9), **numbers)

    def good_for(self, lang: str | None = "zh") -> str:
        return self.good_for_en if (lang or "zh").lower().startswith("en") else self.good_for_zh

    @property
    def num_parameters(self) -> int:
        return round(self.params_b * 1e9)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("shape_numbers")
        data["languages"] = list(self.languages)
        data["shape"] = dict(self.shape_numbers)
        return data


def _check_fields(where: str, data: Any, spec: dict, problems: list[str]) -> None:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping")
        return
    for key in data:
        if key not in spec:
            problems.append(f"{where}: unknown field {key!r}")
    for key, (kind, required) in spec.items():
        if key not in data or data[key] is None:
            if required:
                problems.append(f"{where}: missing {key!r}")
            continue
        value = data[key]
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"{where}: {key!r} should be {getattr(kind, '__name__', kind)}, got {value!r}")


def validate_catalog(data: Any) -> list[CatalogEntry]:
    """Check parsed YAML against the schema; raise CatalogError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        raise CatalogError(f"catalog: expected `schema: {SCHEMA_VERSION}` and a `models:` list")
    models = data.get("models")
    if not isinstance(models, list) or not models:
        raise CatalogError("catalog: `models` must be a non-empty list")
    entries, seen_ids, seen_hub = [], set(), set()
    for index, item in enumerate(models):
        where = f"models[{index}]" + (f" ({item.get('id')})" if isinstance(item, dict) else "")
        before = len(problems)
        _check_fields(where, item, FIELDS, problems)
        if len(problems) > before:
            continue
        _check_fields(f"{where}.shape", item["shape"], SHAPE_FIELDS, problems)
        if len(problems) > before:
            continue
        if not ID_PATTERN.match(item["id"]):
            problems.append(f"{where}: id must be lower case letters, digits, '.' and '-'")
        if not HUB_PATTERN.match(item["hub_id"]):
            problems.append(f"{where}: hub_id must look like owner/name")
        if item.get("modelscope_id") and not HUB_PATTERN.match(item["modelscope_id"]):
            problems.append(f"{where}: modelscope_id must look like owner/name")
        if item["id"] in seen_ids or item["hub_id"] in seen_hub:
            problems.append(f"{where}: duplicate id or hub_id")
        seen_ids.add(item["id"])
        seen_hub.add(item["hub_id"])
        if not item["languages"] or not all(isinstance(x, str) and LANG_PATTERN.match(x)
                                            for x in item["languages"]):
            problems.append(f"{where}: languages must be ISO 639-1 codes")
        if not item["good_for_zh"].strip() or not item["good_for_en"].strip():
            problems.append(f"{where}: good_for_zh and good_for_en must not be empty")
        shape = item["shape"]
        if any(shape[k] <= 0 for k in ("layers", "hidden", "intermediate", "heads", "kv_heads", "vocab")):
            problems.append(f"{where}: shape numbers must be positive")
            continue
        if shape["heads"] % shape["kv_heads"]:
            problems.append(f"{where}: heads must be a multiple of kv_heads")
        if item["params_b"] <= 0 or item["context_length"] <= 0:
            problems.append(f"{where}: params_b and context_length must be positive")
            continue
        counted = ModelShape(**shape).num_parameters / 1e9
        if abs(counted - item["params_b"]) > PARAMS_TOLERANCE * item["params_b"]:
            problems.append(f"{where}: params_b {item['params_b']} disagrees with the shape ({counted:.2f}B)")
        entries.append(CatalogEntry(
            id=item["id"], name=item["name"], hub_id=item["hub_id"], model_type=item["model_type"],
            params_b=float(item["params_b"]),
            license=item["license"], gated=item["gated"], languages=tuple(item["languages"]),
            context_length=item["context_length"], chat_template=item["chat_template"],
            good_for_zh=item["good_for_zh"].strip(), good_for_en=item["good_for_en"].strip(),
            shape_numbers=tuple(sorted(shape.items())), modelscope_id=item.get("modelscope_id")))
    if problems:
        raise CatalogError("catalog:\n  " + "\n  ".join(problems))
    return entries


def catalog_path() -> Path:
    return settings_module.PRESETS_DIR / "models.yaml"


@lru_cache(maxsize=8)
def _load(path: str, mtime: float) -> tuple[CatalogEntry, ...]:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    return tuple(validate_catalog(data))


def load_catalog(path: str | Path | None = None) -> list[CatalogEntry]:
    path = Path(path) if path else catalog_path()
    return list(_load(str(path), path.stat().st_mtime))


def get_entry(key: str, catalog: Iterable[CatalogEntry] | None = None) -> CatalogEntry | None:
    """An entry by catalog id or hub id (case-insensitive)."""
    key = (key or "").strip().lower()
    for entry in catalog if catalog is not None else load_catalog():
        if key in (entry.id.lower(), entry.hub_id.lower()):
            return entry
    return None


@dataclass
class CatalogItem:
    entry: CatalogEntry
    on_disk: bool
    path: str | None
    source: str | None  # registered | app_folder | hf_cache
    complete: bool  # the folder passes the model-folder check

    def to_dict(self, lang: str | None = None) -> dict:
        data = self.entry.to_dict()
        data.update(on_disk=self.on_disk, path=self.path, source=self.source, complete=self.complete)
        if lang:
            data["good_for"] = self.entry.good_for(lang)
        return data


def _registered_map(registered) -> dict[str, str]:
    if not registered:
        return {}
    pairs = registered.items() if isinstance(registered, Mapping) else registered
    return {str(k).lower(): str(v) for k, v in pairs}


def list_catalog(settings=None, registered: Mapping[str, str | Path] | Iterable | None = None, *,
                 cache_dir: str | Path | None = None, catalog: Iterable[CatalogEntry] | None = None
                 ) -> list[CatalogItem]:
    """Every catalog entry with where it is on disk, found without the network.

    Looked for, in order: `registered` (catalog id or hub id -> folder, as the app's database keeps
    them), the app's own models folder (<home>/models/<owner>--<name>), the Hugging Face cache.
    """
    from easytune.models.sources import check_folder, find_in_cache

    registered_map = _registered_map(registered)
    app_models = Path(settings.home) / "models" if settings is not None else None
    items = []
    for entry in catalog if catalog is not None else load_catalog():
        found: tuple[str, Path] | None = None
        for key in (entry.id.lower(), entry.hub_id.lower()):
            if key in registered_map and Path(registered_map[key]).expanduser().is_dir():
                found = ("registered", Path(registered_map[key]).expanduser())
                break
        if found is None and app_models is not None:
            for name in (entry.hub_id.replace("/", "--"), entry.id):
                if (app_models / name).is_dir():
                    found = ("app_folder", app_models / name)
                    break
        if found is None:
            snapshot = find_in_cache(entry.hub_id, cache_dir)
            if snapshot is not None:
                found = ("hf_cache", snapshot)
        if found is None:
            items.append(CatalogItem(entry=entry, on_disk=False, path=None, source=None, complete=False))
        else:
            source, folder = found
            items.append(CatalogItem(entry=entry, on_disk=True, path=str(folder), source=source,
                                     complete=check_folder(folder).ok))
    return items
