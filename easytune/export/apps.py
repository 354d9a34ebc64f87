"""Hand a verified GGUF export to the apps on this machine that run such files, when the user asks:
LM Studio (the file placed in its models folder, where it lists it) and Ollama (registered with
`ollama create NAME -f Modelfile`). Nothing leaves the machine: the file is linked or copied on this disk,
and the `ollama` program is only ever pointed at a server on the loopback address.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

from easytune.i18n import UserError
from easytune.settings import Settings

APPS = ("lmstudio", "ollama")
OLLAMA_LOCAL = "127.0.0.1:11434"  # Ollama's own default address
OLLAMA_TIMEOUT_S = 1800  # `ollama create` copies the whole file into its store


def lmstudio_models_folder() -> Path | None:
    """LM Studio's models folder, where it exists (the same folders `easytune models add lmstudio:` reads)."""
    from easytune.models.local_stores import lmstudio_roots

    return next((root for root in lmstudio_roots() if root.is_dir()), None)


def ollama_program() -> str | None:
    return shutil.which("ollama")


def available_apps() -> dict[str, str | None]:
    """{app: where it is (folder or program), or None when it is not on this machine}."""
    folder = lmstudio_models_folder()
    return {"lmstudio": str(folder) if folder else None, "ollama": ollama_program()}


def app_name(row: dict) -> str:
    """The name an export gets in LM Studio's list and in Ollama: lowercase letters, digits, '-', '.', '_'
    (what Ollama accepts in a model name)."""
    return re.sub(r"[^a-z0-9._-]+", "-", f"easytune-{row['job_id']}-{row['format']}".lower()).strip("-.")


def _export(settings: Settings, export_id: str) -> tuple[dict, Path]:
    """The export's row and its .gguf file; only a READY GGUF model export can be handed over."""
    from easytune.export.formats import FORMATS
    from easytune.export.service import list_exports

    row = next((r for r in list_exports(settings) if r["id"] == export_id), None)
    if row is None:
        raise UserError("export.error.unknown", id=export_id)
    spec = FORMATS.get(row["format"])
    if spec is None or spec.writer != "gguf":
        raise UserError("export.error.app_format", format=row["format"])
    folder = Path(row["path"])
    files = sorted(p for p in folder.glob("*.gguf") if not p.name.startswith(".")) if folder.is_dir() else []
    if row["state"] != "READY" or not files:
        raise UserError("export.error.app_missing", id=export_id, path=row["path"])
    return row, files[0]


def add_to_lmstudio(settings: Settings, export_id: str, name: str | None = None) -> dict:
    """`<LM Studio models>/easytune/<name>/<file>.gguf`: a hard link where the export is on the same disk (no
    space used), else a copy, checked against the free space first and renamed into place when complete."""
    from easytune.export.service import check_disk, keep_free_for

    row, source = _export(settings, export_id)
    models = lmstudio_models_folder()
    if models is None:
        from easytune.models.local_stores import lmstudio_roots

        raise UserError("export.error.no_lmstudio", folders=", ".join(str(p) for p in lmstudio_roots()))
    target = models / "easytune" / (name or app_name(row)) / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and os.path.samefile(target, source):
        return {"app": "lmstudio", "path": str(target), "linked": True, "already": True}
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
        linked = True
    except OSError:  # another disk (or a filesystem without hard links): a copy, if it fits
        size = source.stat().st_size
        check_disk(target.parent, size, keep_free_for(size))
        shutil.copyfile(source, partial)
        linked = False
    partial.replace(target)
    return {"app": "lmstudio", "path": str(target), "linked": linked, "already": False}


def loopback_ollama_host() -> str:
    """OLLAMA_HOST as the user set it when it names this machine, else Ollama's own local address: a
    registration never sends the file to a server elsewhere."""
    value = os.environ.get("OLLAMA_HOST", "").strip()
    host = re.sub(r"^[a-z]+://", "", value).rsplit(":", 1)[0].strip("[]") if value else ""
    if host == "localhost":
        return value
    try:
        return value if host and ipaddress.ip_address(host).is_loopback else OLLAMA_LOCAL
    except ValueError:
        return OLLAMA_LOCAL


def add_to_ollama(settings: Settings, export_id: str, name: str | None = None) -> dict:
    """`ollama create NAME -f Modelfile`, run in the export's folder (the Modelfile names the file beside it)."""
    row, source = _export(settings, export_id)
    program = ollama_program()
    if program is None:
        raise UserError("export.error.no_ollama")
    name = name or app_name(row)
    command = [program, "create", name, "-f", "Modelfile"]
    env = dict(os.environ, OLLAMA_HOST=loopback_ollama_host())
    try:
        done = subprocess.run(command, cwd=source.parent, env=env, capture_output=True, text=True,
                              timeout=OLLAMA_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError("export.error.ollama_failed", name=name, detail=str(exc)[:300]) from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError("export.error.ollama_failed", name=name, detail=(detail[-1] if detail else "")[:300])
    return {"app": "ollama", "name": name, "host": env["OLLAMA_HOST"], "command": ["ollama", *command[1:]],
            "run": f"ollama run {name}"}


def add_to_app(settings: Settings, export_id: str, app: str, name: str | None = None) -> dict:
    if app not in APPS:
        raise UserError("export.error.app_unknown", app=app, choices=", ".join(APPS))
    return (add_to_lmstudio if app == "lmstudio" else add_to_ollama)(settings, export_id, name)
