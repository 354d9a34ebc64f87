"""Where a base model comes from: the built-in tiny model, a local folder, the Hugging Face cache on
disk, or a download. Every route ends in a validated local folder holding safetensors weights.

    resolve("easytune-tiny")                  the built-in model (assets/tiny-model)
    resolve("/data/models/Qwen2.5-0.5B")      a local folder, checked file by file
    resolve("Qwen/Qwen2.5-0.5B-Instruct")     the Hugging Face cache, offline; download=True fetches it
    resolve("modelscope:qwen/Qwen2.5-0.5B-Instruct")   ModelScope, when its package is installed

Hub downloads report their progress and continue where they stopped (easytune.models.hub_download).

Weights are only ever read from safetensors: pickle checkpoints (.bin/.pt/.pth/.ckpt) can run code
when loaded, so a folder holding nothing else is refused with the way to convert it. Custom model
code (`auto_map` in config.json) runs only when the caller passes trust_remote_code=True.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from easytune import settings as settings_module
from easytune.i18n import UserError
from easytune.models.hub_download import DownloadCallback, DownloadProgress, fetch_snapshot, repo_files
from easytune.models.stack import import_stack

BUILTIN_ID = "easytune-tiny"
MODELSCOPE_PREFIXES = ("modelscope:", "ms:")
DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"
CONNECT_TIMEOUT_S = 2.5  # the whole reachability check, DNS included

# what a download fetches: weights as safetensors, configs, tokenizer and chat template files (and
# the model's own Python files only when its custom code is trusted)
ALLOW_PATTERNS = ["*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
CODE_PATTERNS = ["*.py"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
TOKENIZER_ALTERNATIVES = [  # any one of these, beside tokenizer_config.json
    ("tokenizer.json",), ("tokenizer.model",), ("spiece.model",), ("vocab.json", "merges.txt"),
    ("vocab.txt",), ("*.tiktoken",),
]
SAFETENSORS_HEADER_LIMIT = 100 * 2**20  # the format's own bound on its JSON header
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")

Progress = DownloadCallback  # gets a DownloadProgress: bytes done of the total, files being fetched, speed


# ---------------------------------------------------------------------------------------------
# checking a folder


@dataclass
class FolderCheck:
    """What a model folder holds, and what it lacks."""

    path: str
    ok: bool
    missing: list[str] = field(default_factory=list)  # file names, as shown to the user
    safetensors: list[str] = field(default_factory=list)
    pickle_files: list[str] = field(default_factory=list)
    sharded: bool = False
    missing_shards: list[str] = field(default_factory=list)
    is_adapter: bool = False
    needs_remote_code: bool = False
    model_type: str | None = None
    size_bytes: int = 0
    problem: str | None = None  # message key of the first problem, when not ok
    problem_params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def raise_if_bad(self) -> FolderCheck:
        if not self.ok:
            raise UserError(self.problem, **self.problem_params)
        return self


def _has(folder: Path, pattern: str) -> bool:
    return any(folder.glob(pattern)) if "*" in pattern else (folder / pattern).is_file()


def folder_size(folder: Path) -> int:
    """Bytes of the files in a folder (links followed, as in the Hugging Face cache)."""
    total = 0
    for item in Path(folder).rglob("*"):
        try:
            if item.is_file():
                total += item.stat().st_size
        except OSError:
            continue
    return total


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError("models.bad_config", path=str(path), error=str(exc)[:200]) from exc
    if not isinstance(data, dict):
        raise UserError("models.bad_config", path=str(path), error="not a JSON object")
    return data


def needs_remote_code(config: dict) -> bool:
    """A config whose `auto_map` points at Python files shipped with the model."""
    sub = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return bool(config.get("auto_map") or sub.get("auto_map"))


def check_folder(path: str | Path) -> FolderCheck:
    """Look at a folder without loading anything. Never raises for a bad folder: see `.ok`."""
    folder = Path(path).expanduser()
    check = FolderCheck(path=str(folder), ok=False)
    if not folder.exists():
        check.problem, check.problem_params = "models.path_not_found", {"path": str(folder)}
        return check
    if not folder.is_dir():
        check.problem, check.problem_params = "models.path_not_folder", {"path": str(folder)}
        return check

    check.safetensors = sorted(p.name for p in folder.glob("*.safetensors"))
    check.pickle_files = sorted(p.name for p in folder.iterdir()
                                if p.suffix.lower() in PICKLE_SUFFIXES and p.is_file())
    check.is_adapter = (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()
    check.size_bytes = folder_size(folder)

    if check.is_adapter:
        check.problem, check.problem_params = "models.adapter_not_base", {"path": str(folder)}
        return check

    if not (folder / "config.json").is_file():
        check.missing.append("config.json")
    else:
        try:
            config = read_config(folder)
        except UserError as exc:
            check.problem, check.problem_params = exc.key, exc.params
            return check
        check.model_type = config.get("model_type")
        check.needs_remote_code = needs_remote_code(config)

    if not (folder / "tokenizer_config.json").is_file():
        check.missing.append("tokenizer_config.json")
    if not any(all(_has(folder, name) for name in names) for names in TOKENIZER_ALTERNATIVES):
        check.missing.append("tokenizer.json | tokenizer.model | vocab.json + merges.txt")

    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        indexes = sorted(folder.glob("*.safetensors.index.json"))
        index = indexes[0] if indexes else None
    if index is not None:
        check.sharded = True
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            shards = []
            check.missing.append(f"{index.name} (unreadable)")
        check.missing_shards = [s for s in shards if not (folder / s).is_file()]

    if not check.safetensors:
        if check.pickle_files:
            check.problem = "models.pickle_weights_refused"
            check.problem_params = {"path": str(folder), "files": ", ".join(check.pickle_files[:5])}
            return check
        check.missing.append("*.safetensors")
    bad_weights = _weights_problem(folder, check.safetensors)
    if bad_weights is not None:
        check.problem, check.problem_params = bad_weights
        return check
    if check.missing_shards:
        check.problem = "models.shards_missing"
        check.problem_params = {"path": str(folder), "count": len(check.missing_shards),
                                "files": ", ".join(check.missing_shards[:5])}
        return check
    if check.missing:
        check.problem = "models.folder_incomplete"
        check.problem_params = {"path": str(folder), "missing": ", ".join(check.missing)}
        return check
    check.ok = True
    return check


def _weights_problem(folder: Path, names: list[str]) -> tuple[str, dict] | None:
    """(message key, params) for the first *.safetensors file that is a link out of the folder or not
    safetensors at all — refused here, with the file named, rather than by the loader's traceback."""
    home = Path(os.path.realpath(folder))
    # The Hugging Face cache's snapshot folders link each file to the repository's blobs/ folder.
    blobs = home.parent.parent / "blobs" if home.parent.name == "snapshots" else None
    for name in names:
        path = folder / name
        params = {"file": name, "path": str(folder)}
        target = Path(os.path.realpath(path))  # a link loop resolves to itself rather than raising
        if path.is_symlink() and not (target.is_relative_to(home) or (blobs and target.is_relative_to(blobs))):
            return "models.weights_link_outside", {**params, "target": str(target)}
        if not is_safetensors(path):
            return "models.weights_not_safetensors", params
    return None


def is_safetensors(path: Path) -> bool:
    """Whether a file is laid out as safetensors: an 8-byte little-endian header length, that many bytes of
    JSON object, then the tensors' bytes, each tensor's range inside them. Reads the header only (a device
    or a pipe named *.safetensors is not opened)."""
    if not path.is_file():
        return False
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if not 2 <= length <= min(SAFETENSORS_HEADER_LIMIT, size - 8):
                return False
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(header, dict):
        return False
    data_bytes = size - 8 - length
    for tensor_name, entry in header.items():
        if tensor_name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_bytes):
            return False  # not this format, or cut short: a tensor lies past the end of the file
    return True


def validate_folder(path: str | Path) -> FolderCheck:
    """check_folder, raising the UserError that names what is wrong."""
    return check_folder(path).raise_if_bad()


# ---------------------------------------------------------------------------------------------
# the Hugging Face cache


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


USER_OFFLINE = "EASYTUNE_USER_HF_HUB_OFFLINE"  # the user's own choice, kept when the app turns the hub off


def is_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network at all.

    The app sets HF_HUB_OFFLINE=1 for the libraries it runs, so that nothing reaches the network
    unasked; a download the user starts follows the user's own setting, kept by keep_offline_choice.
    """
    if USER_OFFLINE in os.environ:
        return _env_flag(USER_OFFLINE)
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("TRANSFORMERS_OFFLINE")


def keep_offline_choice() -> None:
    """Remember whether the user asked for offline mode, before the app sets HF_HUB_OFFLINE itself."""
    os.environ.setdefault(USER_OFFLINE, "1" if is_offline() else "0")


def hf_cache_dir() -> Path:
    """The hub cache, read from the environment now (HF_HUB_CACHE, HF_HOME, XDG_CACHE_HOME)."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass
class CachedModel:
    repo_id: str
    path: str  # the snapshot folder
    revision: str
    size_bytes: int
    has_safetensors: bool
    complete: bool  # passes check_folder
    problem: str | None
    last_modified: float

    def to_dict(self) -> dict:
        return asdict(self)


def _repo_folder(cache_dir: Path, repo_id: str) -> Path:
    return cache_dir / ("models--" + repo_id.replace("/", "--"))


def _snapshot_of(repo_folder: Path, revision: str = "main") -> Path | None:
    snapshots = repo_folder / "snapshots"
    if not snapshots.is_dir():
        return None
    ref = repo_folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
        if (snapshots / commit).is_dir():
            return snapshots / commit
    if (snapshots / revision).is_dir():  # a commit hash given as the revision
        return snapshots / revision
    candidates = [p for p in snapshots.iterdir() if p.is_dir() and (p / "config.json").exists()]
    return max(candidates, key=lambda p: p.stat().st_mtime) if candidates else None


def scan_hf_cache(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Models in the Hugging Face cache on disk. Reads the disk only, never the network."""
    cache = Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()
    if not cache.is_dir():
        return []
    found = []
    for repo_folder in sorted(cache.glob("models--*")):
        repo_id = repo_folder.name[len("models--"):].replace("--", "/", 1)
        snapshot = _snapshot_of(repo_folder)
        if snapshot is None:
            continue
        check = check_folder(snapshot)
        if check.model_type is None and not (snapshot / "config.json").exists():
            continue  # a dataset or tokenizer-only repository kept in the model cache
        blobs = repo_folder / "blobs"
        size = folder_size(blobs) if blobs.is_dir() else check.size_bytes
        found.append(CachedModel(
            repo_id=repo_id, path=str(snapshot), revision=snapshot.name, size_bytes=size,
            has_safetensors=bool(check.safetensors), complete=check.ok, problem=check.problem,
            last_modified=snapshot.stat().st_mtime))
    return found


def find_in_cache(hub_id: str, cache_dir: str | Path | None = None, revision: str = "main") -> Path | None:
    """The snapshot folder of a hub id in the cache, or None. Offline."""
    cache = Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()
    return _snapshot_of(_repo_folder(cache, hub_id), revision)


def is_hub_id(ref: str) -> bool:
    return bool(HUB_ID.match(ref)) and ".." not in ref


# ---------------------------------------------------------------------------------------------
# resolving a reference


@dataclass
class ModelSource:
    """A base model reference resolved to a checked local folder."""

    ref: str
    kind: str  # builtin | local | hf_cache | download | modelscope
    path: str
    hub_id: str | None = None
    needs_remote_code: bool = False
    trust_remote_code: bool = False
    size_bytes: int = 0
    sharded: bool = False
    warnings: list[dict] = field(default_factory=list)  # [{"key": ..., "params": {...}}]

    def to_dict(self) -> dict:
        return asdict(self)


def _source(ref: str, kind: str, folder: Path, hub_id: str | None, trust_remote_code: bool) -> ModelSource:
    check = validate_folder(folder)
    warnings = []
    if check.needs_remote_code:
        key = "models.remote_code_trusted" if trust_remote_code else "models.remote_code_warning"
        warnings.append({"key": key, "params": {"path": str(folder)}})
    if check.pickle_files:
        warnings.append({"key": "models.pickle_files_ignored",
                         "params": {"files": ", ".join(check.pickle_files[:5])}})
    return ModelSource(ref=ref, kind=kind, path=str(folder), hub_id=hub_id,
                       needs_remote_code=check.needs_remote_code, trust_remote_code=trust_remote_code,
                       size_bytes=check.size_bytes, sharded=check.sharded, warnings=warnings)


def builtin_path() -> Path:
    return settings_module.ASSETS_DIR / "tiny-model"


def resolve(ref: str, *, trust_remote_code: bool = False, fetch: bool = False,
            progress: Progress | None = None, cache_dir: str | Path | None = None) -> ModelSource:
    """A base model reference -> ModelSource with a validated local folder.

    fetch: download a hub id that is not in the cache (otherwise that is a UserError saying how).
    """
    ref = (ref or "").strip()
    if not ref:
        raise UserError("models.ref_empty")
    if ref == BUILTIN_ID:
        folder = builtin_path()
        if not folder.is_dir():
            raise UserError("models.builtin_missing", path=str(folder))
        return _source(ref, "builtin", folder, None, trust_remote_code)
    for prefix in MODELSCOPE_PREFIXES:
        if ref.lower().startswith(prefix):
            return download_modelscope(ref[len(prefix):].strip(), progress=progress,
                                       trust_remote_code=trust_remote_code)
    local = Path(ref).expanduser()
    if local.exists():
        return _source(ref, "local", local, None, trust_remote_code)
    if is_hub_id(ref):
        snapshot = find_in_cache(ref, cache_dir)
        if snapshot is not None:
            check = check_folder(snapshot)
            if check.ok or not fetch:
                return _source(ref, "hf_cache", snapshot, ref, trust_remote_code)
        if fetch:
            return download(ref, progress=progress, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
        raise UserError("models.not_in_cache", hub_id=ref, cache=str(
            Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()))
    if os.sep in ref or ref.startswith((".", "~")) or (os.altsep and os.altsep in ref):
        raise UserError("models.path_not_found", path=str(local))
    raise UserError("models.ref_unknown", ref=ref)


# ---------------------------------------------------------------------------------------------
# downloading


def reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether an HTTP(S) server answers within `timeout` seconds in total, name lookup included.

    Any HTTP answer counts (even an error status); the check runs in a thread so that a resolver
    that hangs cannot hold the caller longer than the timeout. Honours the usual proxy variables.
    Used for ModelScope; the Hugging Face Hub is asked about the repository itself (_hub_check).
    """
    answered = threading.Event()

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout)
            answered.set()
        except urllib.error.HTTPError:
            answered.set()
        except Exception:  # noqa: BLE001 - unreachable, for whatever reason
            pass

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(timeout)
    return answered.is_set()


def _hub_check(hub_id: str, endpoint: str, revision: str | None, timeout: float, cache: Path):
    """(commit, file names) of the repository, asked with a deadline of `timeout` seconds in total.

    This is the first request a download makes anyway; asking it with a short deadline (in a thread,
    so a hanging name lookup cannot hold us) tells "no network" apart from "no such model" at once.
    Only an answer from a hub counts: a network that answers every address (a captive portal, a
    filtering proxy) is reported as unreachable too.
    """
    outcome: dict = {}

    def ask():
        try:
            outcome["ok"] = repo_files(hub_id, endpoint, revision, timeout)
        except Exception as exc:  # noqa: BLE001 - sorted out below
            outcome["error"] = exc

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout)
    if outcome.get("ok"):
        return outcome["ok"]
    error = outcome.get("error")
    if isinstance(error, UserError):  # the hub answered: no such model, or gated
        raise error
    raise UserError("models.hub_unreachable", hub_id=hub_id, endpoint=endpoint, cache=str(cache)) from error


def _refuse_without_safetensors(hub_id: str, endpoint: str, names: list[str]) -> None:
    """Before any download: a repository without safetensors weights at its top cannot be trained here."""
    top = [n for n in names if "/" not in n]
    if any(n.endswith(".safetensors") for n in top):
        return
    pickles = [n for n in top if n.lower().endswith(PICKLE_SUFFIXES)]
    if pickles:
        raise UserError("models.hub_pickle_only", hub_id=hub_id, endpoint=endpoint, files=", ".join(pickles[:5]))
    raise UserError("models.hub_no_safetensors", hub_id=hub_id, endpoint=endpoint,
                    files=", ".join(sorted(top)[:8]) or "—")


def download(hub_id: str, progress: Progress | None = None, *, cache_dir: str | Path | None = None,
             revision: str | None = None, trust_remote_code: bool = False,
             timeout: float = CONNECT_TIMEOUT_S) -> ModelSource:
    """Fetch a model from the Hugging Face Hub (or HF_ENDPOINT) into the cache, resumably.

    Only safetensors weights, JSON configs and tokenizer files are fetched; a repository with pickle
    weights only is refused before any download. Offline (HF_HUB_OFFLINE) or with the endpoint
    unreachable this fails within about `timeout` seconds, saying how to bring the files in by hand.
    A download that stops (network, cancel_download, the app closed) keeps what it fetched, and the
    next call continues from there.
    """
    if not is_hub_id(hub_id):
        raise UserError("models.ref_unknown", ref=hub_id)
    cache = Path(cache_dir).expanduser() if cache_dir else hf_cache_dir()
    endpoint = hf_endpoint()
    if is_offline():
        raise UserError("models.offline_mode", hub_id=hub_id, cache=str(cache))
    commit, names = _hub_check(hub_id, endpoint, revision, timeout, cache)
    _refuse_without_safetensors(hub_id, endpoint, names)

    from huggingface_hub.utils import filter_repo_objects

    patterns = ALLOW_PATTERNS + (CODE_PATTERNS if trust_remote_code else [])
    try:
        folder = fetch_snapshot(hub_id, commit, list(filter_repo_objects(names, allow_patterns=patterns)),
                                endpoint=endpoint, cache=cache, revision=revision or "main", progress=progress,
                                timeout=max(timeout, 10))
    except UserError:
        raise
    except Exception as exc:  # the network went away, a disk error: what was fetched is kept
        raise UserError("models.download_failed", hub_id=hub_id, error=str(exc)[:300] or type(exc).__name__,
                        cache=str(cache)) from exc
    return _source(hub_id, "download", Path(folder), hub_id, trust_remote_code)


def modelscope_available() -> bool:
    return importlib.util.find_spec("modelscope") is not None


def download_modelscope(model_id: str, progress: Progress | None = None, *, trust_remote_code: bool = False,
                        timeout: float = CONNECT_TIMEOUT_S) -> ModelSource:
    """Fetch a model from ModelScope. Only when the `modelscope` package is installed."""
    if not modelscope_available():
        raise UserError("models.modelscope_missing", model_id=model_id)
    if not is_hub_id(model_id):
        raise UserError("models.ref_unknown", ref=model_id)
    endpoint = (os.environ.get("MODELSCOPE_DOMAIN") or MODELSCOPE_ENDPOINT)
    if not endpoint.startswith("http"):
        endpoint = "https://" + endpoint
    if is_offline() or _env_flag("MODELSCOPE_OFFLINE"):
        raise UserError("models.offline_mode", hub_id=model_id, cache=str(hf_cache_dir()))
    if not reachable(endpoint, timeout):
        raise UserError("models.hub_unreachable", hub_id=model_id, endpoint=endpoint,
                        cache=str(hf_cache_dir()))
    from modelscope import snapshot_download  # type: ignore[import-not-found]

    patterns = ALLOW_PATTERNS + (CODE_PATTERNS if trust_remote_code else [])
    try:
        try:
            folder = snapshot_download(model_id, allow_patterns=patterns)
        except TypeError:  # older releases name it differently
            folder = snapshot_download(model_id, allow_file_pattern=patterns)
    except Exception as exc:
        raise UserError("models.download_failed", hub_id=model_id, error=str(exc)[:300],
                        cache=str(hf_cache_dir())) from exc
    if progress:
        size = folder_size(Path(folder))
        progress(DownloadProgress(hub_id=model_id, done=size, total=size, files_done=1, files_total=1, finished=True))
    return _source(f"modelscope:{model_id}", "modelscope", Path(folder), model_id, trust_remote_code)


# ---------------------------------------------------------------------------------------------
# loading


def recorded_trust(folder: str | Path) -> bool:
    """Whether the user allowed this folder's own code when registering it: the registry's record, the one
    place that choice is kept (every process, the training worker included, reads the same database)."""
    from easytune.settings import load_settings
    from easytune.store import open_db

    try:
        rows = open_db(load_settings().db_path)["models"].rows_where(
            "path = ? and trust_remote_code = 1", [str(Path(folder).expanduser())], limit=1)
        return any(True for _ in rows)
    except Exception:  # noqa: BLE001 - no registry, no recorded trust
        return False


def check_code(folder: str | Path, trust_remote_code: bool | None = None) -> bool:
    """The gate every model load passes: a folder whose config or tokenizer config points at Python files
    of its own (`auto_map`) is refused unless its code was allowed — passed here, or recorded in the
    registry when the model was added. Returns the trust to hand to transformers, always explicit, so it
    never asks "Do you wish to run the custom code? [y/N]" on a terminal."""
    folder = Path(folder)
    trusted = recorded_trust(folder) if trust_remote_code is None else trust_remote_code
    if trusted:
        return True
    for name in ("config.json", "tokenizer_config.json"):
        if not (folder / name).is_file():
            continue
        config = read_config(folder) if name == "config.json" else _read_json(folder / name)
        if needs_remote_code(config):
            import_stack()
            from transformers import CONFIG_MAPPING

            if name != "config.json" or config.get("model_type") not in CONFIG_MAPPING:
                raise UserError("models.remote_code_required", path=str(folder))
    return False


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def load_config(path: str | Path, *, trust_remote_code: bool | None = None):
    """The model's transformers config (no weights). trust_remote_code None: as the registry recorded it."""
    import_stack()
    from transformers import AutoConfig

    folder = Path(path)
    return AutoConfig.from_pretrained(folder, trust_remote_code=check_code(folder, trust_remote_code))


def load_safe(path: str | Path, *, trust_remote_code: bool | None = None, model_class=None, **kwargs):
    """Load a causal LM from a checked folder, reading safetensors only (use_safetensors=True).

    kwargs go to from_pretrained (dtype, device_map, quantization_config, ...); asking for pickle
    weights (use_safetensors=False) is refused. trust_remote_code None: as the registry recorded it.
    """
    if kwargs.pop("use_safetensors", True) is not True:
        raise ValueError("EasyTune loads safetensors weights only")
    folder = Path(path)
    validate_folder(folder)
    trusted = check_code(folder, trust_remote_code)
    import_stack()
    if model_class is None:
        from transformers import AutoModelForCausalLM as model_class
    return model_class.from_pretrained(folder, use_safetensors=True, trust_remote_code=trusted, **kwargs)


def load_tokenizer(path: str | Path, *, trust_remote_code: bool | None = None, **kwargs):
    """A model's (or an adapter's) tokenizer, through the same gate."""
    import_stack()
    from transformers import AutoTokenizer

    folder = Path(path)
    return AutoTokenizer.from_pretrained(folder, trust_remote_code=check_code(folder, trust_remote_code), **kwargs)
