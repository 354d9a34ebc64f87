"""A run in an MLflow file store (`mlruns/`), written as the plain files MLflow's FileStore reads, so
`mlflow ui --backend-store-uri DIR` and MlflowClient("file:DIR") show it and MLflow need not be installed:

    DIR/0/meta.yaml                      the Default experiment MLflow expects in every store
    DIR/.trash/                          where MLflow keeps deleted experiments
    DIR/<experiment>/meta.yaml           name, id, artifact location, lifecycle stage, times (ms)
    DIR/<experiment>/<run>/meta.yaml     run id and name, status, start and end (ms), artifact uri
                          params/<key>   the value, as text
                          tags/<key>     the value, as text
                          metrics/<key>  one line per point: "<unix ms> <value> <step>"
                          artifacts/     files kept with the run

A run's id is derived from its key (the job id), so writing the same job again replaces its run instead of
adding another. A run is written beside its place and then moved in, so a reader never sees half of one.
"""

from __future__ import annotations

import getpass
import os
import shutil
import time
import uuid
import zlib
from pathlib import Path

import yaml

from easytune.i18n import UserError

DEFAULT_EXPERIMENT_ID = "0"
TRASH = ".trash"
STATUS = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}  # MLflow's RunStatus
_RUN_IDS = uuid.UUID("6f1c2b8e-6b0e-4f43-9a55-3e0d4c7a2f10")  # the namespace a job id is made a run id in


def run_id_of(key: str) -> str:
    return uuid.uuid5(_RUN_IDS, key).hex


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _write_yaml(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(data, sort_keys=True, allow_unicode=True), encoding="utf-8")
    os.replace(partial, path)


def _experiments(store: Path) -> dict[str, dict]:
    """{experiment id: meta} of the store's active experiments."""
    out = {}
    for child in store.iterdir() if store.is_dir() else ():
        meta = child / "meta.yaml"
        if child.is_dir() and child.name != TRASH and meta.is_file():
            try:
                data = yaml.safe_load(meta.read_text(encoding="utf-8")) or {}
            except (OSError, yaml.YAMLError):
                continue
            if data.get("lifecycle_stage", "active") == "active":
                out[child.name] = data
    return out


def check_store(store: Path) -> None:
    """A folder that is not empty and holds no MLflow store is someone's other files: refused, not filled."""
    store = Path(store)
    if store.exists() and not store.is_dir():
        raise UserError("tracking.error.not_a_folder", path=str(store))
    if store.is_dir() and any(store.iterdir()) and not ((store / TRASH).is_dir() or _experiments(store)):
        raise UserError("tracking.error.not_a_store", path=str(store))


def _experiment(store: Path, name: str) -> str:
    """The id of the active experiment `name`, created (with the store) where there is none. A new one
    gets an id derived from its name, so two processes creating it at once create the same one."""
    store.mkdir(parents=True, exist_ok=True)
    (store / TRASH).mkdir(exist_ok=True)
    now = _ms(time.time())
    if not (store / DEFAULT_EXPERIMENT_ID).is_dir():
        _new_experiment(store, DEFAULT_EXPERIMENT_ID, "Default", now)
    for experiment_id, meta in _experiments(store).items():
        if meta.get("name") == name:
            return experiment_id
    experiment_id = str(zlib.crc32(name.encode("utf-8")))
    _new_experiment(store, experiment_id, name, now)
    return experiment_id


def _new_experiment(store: Path, experiment_id: str, name: str, now: int) -> None:
    folder = store / experiment_id
    folder.mkdir(exist_ok=True)
    _write_yaml(folder / "meta.yaml", {"artifact_location": folder.resolve().as_uri(), "creation_time": now,
                                       "experiment_id": experiment_id, "last_update_time": now,
                                       "lifecycle_stage": "active", "name": name})


def write_run(store: Path, *, experiment: str, key: str, name: str, status: str, start: float, end: float | None,
              params: dict[str, str], tags: dict[str, str], metrics: dict[str, list[tuple[float, float, int]]],
              artifacts: dict[str, Path] | None = None) -> dict:
    """Write (or replace) the run for `key` in experiment `experiment` of the store at `store`. `metrics`:
    {key: [(unix time, value, step), …]}; `start`, `end`: unix times. Returns the store, ids and counts."""
    store = Path(store)
    check_store(store)
    experiment_id = _experiment(store, experiment)
    run_id = run_id_of(key)
    place = store / experiment_id / run_id
    partial = store / experiment_id / f".{run_id}.partial"  # (MLflow skips a folder without meta.yaml)
    shutil.rmtree(partial, ignore_errors=True)
    for sub in ("params", "tags", "metrics", "artifacts"):
        (partial / sub).mkdir(parents=True)
    for folder, values in (("params", params), ("tags", {"mlflow.runName": name, **tags})):
        for item, value in values.items():
            (partial / folder / item).write_text(str(value), encoding="utf-8")
    for metric, points in metrics.items():
        path = partial / "metrics" / metric
        path.parent.mkdir(parents=True, exist_ok=True)  # a name with a slash is a folder, as MLflow keeps it
        path.write_text("".join(f"{_ms(t)} {float(value)!r} {int(step)}\n" for t, value, step in points),
                        encoding="utf-8")
    for target, source in (artifacts or {}).items():
        shutil.copyfile(source, partial / "artifacts" / target)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    _write_yaml(partial / "meta.yaml", {
        "artifact_uri": (place / "artifacts").resolve().as_uri(), "end_time": _ms(end), "entry_point_name": "",
        "experiment_id": experiment_id, "lifecycle_stage": "active", "run_id": run_id, "run_uuid": run_id,
        "run_name": name, "source_name": "", "source_type": 4, "source_version": "", "start_time": _ms(start),
        "status": STATUS[status], "tags": [], "user_id": user})
    old = store / experiment_id / f".{run_id}.old"
    shutil.rmtree(old, ignore_errors=True)
    if place.exists():
        place.rename(old)
    partial.rename(place)
    shutil.rmtree(old, ignore_errors=True)
    return {"store": str(store.resolve()), "experiment_id": experiment_id, "run_id": run_id,
            "metrics": sum(len(points) for points in metrics.values()), "params": len(params)}


def remove_run(store: Path, key: str) -> bool:
    """Remove the run written for `key` from every experiment of the store; whether there was one."""
    places = [Path(store) / experiment_id / run_id_of(key) for experiment_id in _experiments(Path(store))]
    found = [place for place in places if place.is_dir()]
    for place in found:
        shutil.rmtree(place)
    return bool(found)
