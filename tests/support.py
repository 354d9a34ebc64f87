"""Helpers for tests: the real CLI as a subprocess, free ports, waiting for HTTP, plan files, and TensorBoard and
MLflow files read back by those tools' own readers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("EASYTUNE_SHARED_DIR", ROOT.parent / "shared"))


def cli(*args: str, home: Path, check: bool = True, timeout: float = 600,
        lang: str = "en", env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG=lang, **(env or {}))
    result = subprocess.run([sys.executable, "-m", "easytune.cli", *args], capture_output=True, text=True,
                            env=env, timeout=timeout, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"easytune {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def cli_json(*args: str, home: Path, **kwargs):
    result = cli(*args, "--json", home=home, **kwargs)
    return json.loads(result.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode("utf-8", "replace")
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def write_plan(path: Path, **settings) -> Path:
    """A plan YAML based on the demo preset, with some settings changed."""
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    for key, value in settings.items():
        setattr(plan, key, value)
    TrainingPlan.from_dict(plan.to_dict()).save(path)  # through the validator, as a user's file would be
    return path


def seed_import(home: Path, folder: Path) -> None:
    """Give a fresh home the converted folder (linked, not copied), as an earlier import would have left it:
    adding the same GGUF file again then finds it by the file's hash instead of converting for a minute."""
    import os
    import shutil

    target = home / "models" / folder.name
    target.mkdir(parents=True)
    for item in folder.iterdir():
        try:
            os.link(item, target / item.name)
        except OSError:
            shutil.copyfile(item, target / item.name)


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar curve in a TensorBoard run folder, as TensorBoard's own loader reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def mlflow_run(store: Path, job_id: str | None = None):
    """(MLflow's own client on the file store, the one run of its experiment "easytune" — of this job)."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 reads a file store only when asked to
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=Path(store).resolve().as_uri())
    experiment = client.get_experiment_by_name("easytune")
    [run] = client.search_runs([experiment.experiment_id],
                               filter_string=f"tags.`easytune.job_id` = '{job_id}'" if job_id else "")
    return client, run


def question_answer_rows(prefix: list[int] = ()) -> list[tuple[list[int], list[int]]]:
    """Three token rows after `prefix`, each a question (unscored) then an answer (scored), the answers at
    different positions per row: (input ids, labels)."""
    import torch

    from easytune.train.packing import IGNORE

    generator = torch.Generator().manual_seed(0)
    out = []
    for question, answer in ((7, 5), (12, 3), (4, 9)):
        ids = list(prefix) + torch.randint(5, 200, (question + answer,), generator=generator).tolist()
        scored = len(prefix) + question
        out.append((ids, [IGNORE] * scored + ids[scored:]))
    return out


def gradients(model, loss) -> list:
    """The gradient of every parameter that gets one, after `loss.backward()` (earlier ones cleared)."""
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]
