"""What a job runs with is decided once, when it is created, and kept in job.json: the device and precision, the
objective and its sequences per row, the estimated peak memory, the learning rate's floor, the data files'
hashes. The worker trains with the record and refuses, in the user's words, a record the machine or the files no
longer match."""

import json
import subprocess
import sys
from pathlib import Path

from support import ROOT


def created(settings, **changes) -> tuple[dict, Path]:
    from easytune import jobs
    from easytune.plan.schema import TrainingPlan

    plan = TrainingPlan.load(ROOT / "presets" / "demo.yaml")
    for key, value in changes.items():
        setattr(plan, key, value)
    job = jobs.create_job(settings, plan)
    return json.loads((Path(job["job_dir"]) / "job.json").read_text(encoding="utf-8")), Path(job["job_dir"])


def worker_events(job_dir: Path) -> list[dict]:
    subprocess.run([sys.executable, "-m", "easytune.train", str(job_dir)], check=False, capture_output=True,
                   timeout=600)
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]


def test_the_record_holds_what_the_run_was_decided_to_be(settings):
    from easytune.datasets import file_sha256
    from easytune.models.estimate import as_shape, estimate_memory

    record, _ = created(settings)
    assert (record["device"], record["precision"]) == ("cpu", "fp32")  # the built-in model: too small for bf16
    assert (record["objective"], record["sequences_per_row"], record["lr_floor"]) == ("sft", 1, 0.1)
    assert record["file_sha256"]["train_file"] == file_sha256(record["train_file"])
    config = json.loads((Path(record["model_path"]) / "config.json").read_text(encoding="utf-8"))
    assert record["estimated_peak_bytes"] == estimate_memory(as_shape(config), "lora", 512, 4, False, "fp32", 8,
                                                             "all_linear", device="cpu", grad_accum=1,
                                                             lora_dropout=0.05, padded=False).total
    assert created(settings, precision="bf16", device="cpu")[0]["precision"] == "bf16", "a chosen one is kept"


def test_the_worker_trains_with_the_recorded_precision_and_refuses_changed_data(settings):
    from easytune.i18n import t

    record, job_dir = created(settings, max_steps=2, eval_every=1)
    record["precision"] = "bf16"  # what the app decided is what runs, whatever this CPU would pick now
    (job_dir / "job.json").write_text(json.dumps(record), encoding="utf-8")
    events = worker_events(job_dir)
    assert any(e.get("key") == "train.log.device" and e["params"]["dtype"] == "bfloat16" for e in events)
    assert events[-1]["state"] == "COMPLETED"

    record, job_dir = created(settings)
    with open(record["train_file"], "a", encoding="utf-8") as f:  # an edit after the job was made
        f.write(json.dumps({"kind": "sft", "messages": [{"role": "user", "content": "hi"},
                                                        {"role": "assistant", "content": "hello"}]}) + "\n")
    failed = worker_events(job_dir)[-1]
    assert (failed["state"], failed["reason"]) == ("FAILED", "train.error.data_changed")
    assert "changed after the job was created" in t(failed["reason"], "en", **failed["params"])
    assert "改动" in t(failed["reason"], "zh", **failed["params"])


def test_every_name_of_the_jobs_service_is_what_it_says_once_every_module_is_loaded():
    """A submodule of the jobs package named like a service function would hide the function once imported."""
    import importlib
    import pkgutil
    import types

    import easytune.jobs as jobs

    for module in pkgutil.iter_modules(jobs.__path__):
        importlib.import_module(f"easytune.jobs.{module.name}")
    hidden = [name for name in jobs.__all__ if isinstance(getattr(jobs, name), types.ModuleType)]
    assert not hidden, f"{hidden} name submodules, not the service's functions"
