"""An export as one file a browser can download: what a user needs as soon as the app is reached from
another computer, where the server's path means nothing.

A single-file export (a GGUF) is offered as it is; a folder (merged safetensors, an adapter, OpenVINO) as a
zip of it. Both land in the home's `downloads/` folder, the only place the web app serves files from, named
by the export's id; a zip already there and newer than the export is reused.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from easytune.i18n import UserError
from easytune.settings import Settings


def download_file(settings: Settings, export_id: str) -> Path:
    """The file to hand to the browser for this ready export."""
    from easytune.export.service import list_exports

    row = next((e for e in list_exports(settings) if e["id"] == export_id), None)
    if row is None:
        raise UserError("export.error.unknown", id=export_id)
    source = Path(row["path"])
    if row["state"] != "READY" or not source.exists():
        raise UserError("export.error.not_ready", id=export_id, path=str(source))
    downloads = settings.folder("downloads")
    if source.is_file():
        target = downloads / f"{export_id}-{source.name}"
        if not target.exists():
            try:  # the same disk: a second name for the same bytes, no copy
                os.link(source, target)
            except OSError:
                shutil.copyfile(source, target)
        return target
    target = downloads / f"{export_id}-{source.name}.zip"
    newest = max((f.stat().st_mtime for f in source.rglob("*") if f.is_file()), default=0)
    if target.exists() and target.stat().st_mtime >= newest:
        return target
    partial = target.with_suffix(".zip.partial")
    # Stored, not compressed: weights hardly compress, and the user is waiting.
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for file in sorted(f for f in source.rglob("*") if f.is_file()):
            archive.write(file, Path(source.name) / file.relative_to(source))
    partial.replace(target)
    return target
