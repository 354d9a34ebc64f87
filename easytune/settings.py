"""Where EasyTune keeps its files, and the limits it enforces. Read from the environment once.

EASYTUNE_HOME (default ~/.easytune) holds everything the app writes:
    easytune.db   SQLite metadata      uploads/   originals, untouched
    datasets/     canonical data       models/    downloaded or registered models
    jobs/         one folder per job   exports/   exported models
    sweeps/       one folder per sweep: its optuna study and the best trial's plan (best.yaml)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
ASSETS_DIR = PROJECT_DIR / "assets"
PRESETS_DIR = PROJECT_DIR / "presets"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str = "127.0.0.1"
    port: int = 7860
    password: str | None = field(default=None, repr=False)
    max_upload_mb: int = 4096  # bigger uploads are refused before they are read
    language: str = "zh"  # our first users write Chinese; the UI switch and --lang override it

    @property
    def db_path(self) -> Path:
        return self.home / "easytune.db"

    def folder(self, name: str) -> Path:
        """One of the app's own folders (uploads, datasets, models, jobs, exports), created on demand."""
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def jobs_dir(self) -> Path:
        return self.folder("jobs")


def _system_language() -> str:
    locale = os.environ.get("LC_ALL") or os.environ.get("LC_MESSAGES") or os.environ.get("LANG") or ""
    return "en" if locale and not locale.lower().startswith("zh") and locale not in ("C", "POSIX") else "zh"


def load_settings(**overrides) -> Settings:
    env = os.environ
    values = dict(
        home=Path(env.get("EASYTUNE_HOME") or Path.home() / ".easytune").expanduser(),  # empty counts as unset
        host=env.get("EASYTUNE_HOST", "127.0.0.1"),
        port=int(env.get("EASYTUNE_PORT", "7860")),
        password=env.get("EASYTUNE_PASSWORD") or None,
        max_upload_mb=int(env.get("EASYTUNE_MAX_UPLOAD_MB", "4096")),
        language=env.get("EASYTUNE_LANG") or _system_language(),
    )
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    settings.home.mkdir(parents=True, exist_ok=True)
    return settings
