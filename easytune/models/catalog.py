"""The model catalog (presets/models.yaml): base models offered by name, with what they are good
for and their architecture numbers, so memory fit can be estimated before anything is downloaded.

    load_catalog()                  -> [CatalogEntry], read through ModelCatalog (the shared preset checker)
    get_entry("qwen2.5-0.5b-instruct") or get_entry("Qwen/Qwen2.5-0.5B-Instruct")
    list_catalog(settings, registered={"qwen2.5-0.5b-instruct": "/data/qwen"})
                                    -> [CatalogItem]: each entry, and whether and where it is on disk
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from easytune import settings as settings_module
from easytune.models.estimate import ModelShape
from easytune.presets import PresetError, bounds, check_preset, load_preset

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
HUB_PATTERN = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
LANG_PATTERN = re.compile(r"^[a-z]{2,3}$")
PARAMS_TOLERANCE = 0.01  # params_b must agree with the count from the shape within 1 %


class CatalogError(PresetError):
    """The catalog file breaks its schema (a packaging error, not something a user can fix)."""


# ---------------------------------------------------------------------------------------------
# the file, as the preset checker reads it (presets/models.yaml's header explains each field)


@dataclass(frozen=True)
class CatalogShape:
    layers: int = bounds(ge=1)
    hidden: int = bounds(ge=1)
    intermediate: int = bounds(ge=1)
    heads: int = bounds(ge=1)
    kv_heads: int = bounds(ge=1)
    vocab: int = bounds(ge=1)
    tie_embeddings: bool
    head_dim: int | None = bounds(None, ge=1)
    qk_norm: bool | None = None
    gated_mlp: bool | None = None

    def numbers(self) -> tuple[tuple[str, Any], ...]:
        """The numbers the file gives (absent optional ones are left to ModelShape's defaults)."""
        return tuple(sorted((k, v) for k, v in asdict(self).items() if v is not None))


@dataclass(frozen=True)
class CatalogModel:
    id: str
    name: str
    hub_id: str
    model_type: str
    params_b: float = bounds(gt=0)
    license: str
    gated: bool
    languages: tuple[str, ...]
    context_length: int = bounds(ge=1)
    chat_template: str
    good_for_zh: str
    good_for_en: str
    shape: CatalogShape
    modelscope_id: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not ID_PATTERN.match(self.id):
            problems.append("id must be lower case letters, digits, '.' and '-'")
        if not HUB_PATTERN.match(self.hub_id):
            problems.append("hub_id must look like owner/name")
        if self.modelscope_id and not HUB_PATTERN.match(self.modelscope_id):
            problems.append("modelscope_id must look like owner/name")
        if not self.languages or not all(LANG_PATTERN.match(x) for x in self.languages):
            problems.append("languages must be ISO 639-1 codes")
        if not self.good_for_zh.strip() or not self.good_for_en.strip():
            problems.append("good_for_zh and good_for_en must not be empty")
        if self.shape.heads % self.shape.kv_heads:
            problems.append("heads must be a multiple of kv_heads")
        else:
            counted = ModelShape(**dict(self.shape.numbers())).num_parameters / 1e9
            if abs(counted - self.params_b) > PARAMS_TOLERANCE * self.params_b:
                problems.append(f"params_b {self.params_b:g} disagrees with the shape ({counted:.2f}B)")
        if problems:
            raise ValueError(f"{self.id}: " + "; ".join(problems))

    def entry(self) -> CatalogEntry:
        return CatalogEntry(
            id=self.id, name=self.name, hub_id=self.hub_id, model_type=self.model_type, params_b=self.params_b,
            license=self.license, gated=self.gated, languages=self.languages, context_length=self.context_length,
            chat_template=self.chat_template, good_for_zh=self.good_for_zh.strip(),
            good_for_en=self.good_for_en.strip(), shape_numbers=self.shape.numbers(),
            modelscope_id=self.modelscope_id)


@dataclass(frozen=True)
class ModelCatalog:
    schema: Literal[1]
    models: tuple[CatalogModel, ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must be a non-empty list")
        for key in ("id", "hub_id"):
            names = [getattr(m, key) for m in self.models]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"duplicate {key}: {', '.join(twice)}")

    @cached_property
    def entries(self) -> tuple[CatalogEntry, ...]:
        return tuple(model.entry() for model in self.models)


# ---------------------------------------------------------------------------------------------
# what the product reads


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


def validate_catalog(data: Any, file: str = "models.yaml") -> list[CatalogEntry]:
    """Parsed catalog YAML → its entries; raises CatalogError naming every bad key."""
    return list(check_preset(ModelCatalog, data, file, CatalogError).entries)


def catalog_path() -> Path:
    return settings_module.PRESETS_DIR / "models.yaml"


def load_catalog(path: str | Path | None = None) -> list[CatalogEntry]:
    """The catalog's entries, checked; read again when the file changes."""
    return list(load_preset(ModelCatalog, path or catalog_path(), CatalogError).entries)


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
