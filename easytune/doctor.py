"""`easytune doctor`: is this machine ready? Python, the training stack, the device, memory, disk, home."""

from __future__ import annotations

import sys
from importlib import metadata

from easytune.i18n import t
from easytune.settings import Settings

STACK = ("torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes", "optimum-intel",
         "openvino", "nncf", "gradio", "sqlite-utils", "plotly")
GIB = 1024 ** 3


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def diagnose(settings: Settings) -> dict:
    from easytune.models.hardware import probe

    hardware = probe(settings.home).to_dict()
    versions = {name: _version(name) for name in STACK}
    problems = [{"key": "doctor.missing", "params": {"package": name}} for name, v in versions.items() if v is None]
    if hardware["disk_free"] is not None and hardware["disk_free"] < 5 * GIB:
        problems.append({"key": "doctor.low_disk", "params": {"free": round(hardware["disk_free"] / GIB, 1)}})
    return {"python": sys.version.split()[0], "home": str(settings.home), "database": str(settings.db_path),
            "hardware": hardware, "versions": versions, "problems": problems}


def render(report: dict, lang: str) -> str:
    hw = report["hardware"]
    gpus = ", ".join(f"{g['name']} ({g['total_memory'] / GIB:.0f} GiB)" for g in hw["cuda"] + hw["xpu"])
    lines = [
        t("doctor.python", lang, version=report["python"]),
        t("doctor.device", lang, device=hw["accelerator"], gpus=gpus or "—", bf16=hw["bf16"]),
        t("doctor.cpu", lang, physical=hw["cpu_physical"] or "?", logical=hw["cpu_logical"]),
        t("doctor.memory", lang, total=f"{hw['ram_total'] / GIB:.1f}", available=f"{hw['ram_available'] / GIB:.1f}"),
        t("doctor.disk", lang, path=hw["disk_path"], free=f"{(hw['disk_free'] or 0) / GIB:.1f}"),
        t("doctor.home", lang, home=report["home"]),
        t("doctor.versions", lang),
        *[f"  {name:<14} {version or t('doctor.not_installed', lang)}" for name, version in report["versions"].items()],
    ]
    lines += [t(p["key"], lang, **p["params"]) for p in report["problems"]] or [t("doctor.ok", lang)]
    return "\n".join(lines)
