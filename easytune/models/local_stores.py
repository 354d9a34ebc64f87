"""GGUF models other apps keep on this computer: Ollama's store and LM Studio's folders. Read only.

- Ollama (`OLLAMA_MODELS`, default ~/.ollama/models): `manifests/<registry>/<namespace>/<model>/<tag>`
  is a JSON manifest whose layer of media type `application/vnd.ollama.image.model` names the GGUF
  blob by digest (`blobs/sha256-<hex>`). Names read as Ollama prints them: `llama3.2:1b` for its own
  library, `owner/model:tag` otherwise.
- LM Studio (~/.lmstudio/models, ~/.cache/lm-studio/models): `<publisher>/<repo>/<file>.gguf`;
  vision projectors (`mmproj-*.gguf`) are not language models and are left out.

References a user can type: `ollama:llama3.2:1b`, `lmstudio:publisher/repo/file.gguf`, or the file's path.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from easytune.i18n import UserError

OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_LIBRARY = ("registry.ollama.ai", "library")


@dataclass
class StoredModel:
    ref: str  # what `models add` takes
    store: str  # ollama | lmstudio
    name: str
    path: str  # the GGUF file
    size_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def ollama_root() -> Path:
    return Path(os.environ.get("OLLAMA_MODELS") or Path.home() / ".ollama" / "models").expanduser()


def lmstudio_roots() -> list[Path]:
    return [Path.home() / ".lmstudio" / "models", Path.home() / ".cache" / "lm-studio" / "models"]


def _ollama_name(manifest: Path, manifests: Path) -> str:
    *where, model, tag = manifest.relative_to(manifests).parts
    prefix = "" if tuple(where) == OLLAMA_LIBRARY else "/".join(where[1:] if where[:1] == [OLLAMA_LIBRARY[0]]
                                                                 else where) + "/"
    return f"{prefix}{model}:{tag}"


def scan_ollama(root: Path | None = None) -> list[StoredModel]:
    root = root or ollama_root()
    manifests = root / "manifests"
    found = []
    for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()) if manifests.is_dir() else []:
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            continue
        for layer in layers:
            if isinstance(layer, dict) and layer.get("mediaType") == OLLAMA_MODEL_LAYER:
                blob = root / "blobs" / str(layer.get("digest", "")).replace(":", "-")
                if blob.is_file():
                    name = _ollama_name(manifest, manifests)
                    found.append(StoredModel(f"ollama:{name}", "ollama", name, str(blob), blob.stat().st_size))
    return found


def scan_lmstudio(roots: list[Path] | None = None) -> list[StoredModel]:
    found = []
    for root in roots or lmstudio_roots():
        if not root.is_dir():
            continue
        for file in sorted(root.rglob("*.gguf")):
            if file.name.lower().startswith("mmproj") or not file.is_file():
                continue
            name = file.relative_to(root).as_posix()
            found.append(StoredModel(f"lmstudio:{name}", "lmstudio", name, str(file), file.stat().st_size))
    return found


def scan_all() -> list[StoredModel]:
    return scan_ollama() + scan_lmstudio()


def find(ref: str) -> StoredModel | None:
    """The stored model an `ollama:` or `lmstudio:` reference names; a bare Ollama name works too."""
    if ref.startswith("ollama:"):
        wanted = ref.removeprefix("ollama:")
        wanted = wanted if ":" in wanted else wanted + ":latest"
        models = scan_ollama()
        return next((m for m in models if m.name == wanted), None) or _missing("ollama", ref)
    if ref.startswith("lmstudio:"):
        return next((m for m in scan_lmstudio() if m.ref == ref), None) or _missing("lmstudio", ref)
    return None


def _missing(store: str, ref: str):
    where = str(ollama_root()) if store == "ollama" else ", ".join(str(p) for p in lmstudio_roots())
    raise UserError(f"models.{store}_not_found", ref=ref, where=where)
