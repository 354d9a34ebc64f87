"""Learning task after task: a new version trained with `continual` keeps the earlier versions' adapter frozen
beside its own (O-LoRA), and with `replay_ratio` practises a sample of their rows; either keeps task A better
than training on from version 1 on task B alone. On the built-in model, by the loss on task A's answers."""

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from support import cli, cli_json, write_plan

pytestmark = pytest.mark.slow

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "grey", "pink", "gold"]
PLANETS = ["Mars", "Venus", "Saturn", "Jupiter", "Neptune", "Mercury", "Uranus", "Pluto", "Earth", "Io", "Titan",
           "Europa"]


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q},
                                                     {"role": "assistant", "content": a}]}) + "\n"
                            for q, a in rows), encoding="utf-8")
    return path


def task_a(folder: Path) -> Path:
    return write_rows(folder / "boxes.jsonl", [(f"Which code opens the {c} box?",
                                                f"The {c} box opens with {4000 + 37 * i}.")
                                               for i, c in enumerate(COLOURS)])


def task_b(folder: Path) -> Path:
    names = ["Ana", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu"]
    return write_rows(folder / "travellers.jsonl", [(f"Where does {n} travel next?", f"{n} travels to {p} in spring.")
                                                    for n, p in zip(names, PLANETS)])


def answer_loss(home: Path, job: dict, data: Path) -> float:
    """The tuned model's mean loss on the answers of a data file."""
    from easytune.evaluation.runner import loss, side
    from easytune.evaluation.service import pair_of
    from easytune.jobs.folder import JobFolder
    from easytune.settings import load_settings

    rows = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    settings = load_settings(home=home)
    with side(pair_of(settings, job["id"], JobFolder(job["job_dir"]).resolved()), "tuned") as (model, tokenizer):
        return loss(model, tokenizer, rows, batch_size=8, max_len=64)


def test_a_continual_version_keeps_task_a_better_than_training_on(home, tmp_path):
    a, b = task_a(tmp_path), task_b(tmp_path)
    plan = write_plan(tmp_path / "a.yaml", dataset=str(a), max_steps=60, learning_rate=5e-3, val_ratio=0.0,
                      retention_ratio=0.0, lora_r=8, lora_alpha=16, keep_best=False, eval_every=60)
    first = cli_json("train", "--config", str(plan), home=home)
    assert first["state"] == "COMPLETED", first
    later = ["--data", str(b), "--set", "max_steps=60", "--follow"]
    plain = cli_json("jobs", "next", first["id"], *later, "--set", "continual=false", "--set", "replay_ratio=0",
                     home=home)
    continual = cli_json("jobs", "next", first["id"], *later, "--set", "continual=true", "--set", "replay_ratio=0",
                         home=home)
    replayed = cli_json("jobs", "next", first["id"], *later, "--set", "continual=false", "--set", "replay_ratio=0.3",
                        home=home)
    assert [j["state"] for j in (plain, continual, replayed)] == ["COMPLETED"] * 3

    # the continual adapter is version 1's, frozen, with 8 new directions beside it
    v1 = load_file(str(Path(first["job_dir"]) / "adapter" / "adapter_model.safetensors"))
    v2 = load_file(str(Path(continual["job_dir"]) / "adapter" / "adapter_model.safetensors"))
    config = json.loads((Path(continual["job_dir"]) / "adapter" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (16, 32)  # the new rows keep the plan's scale, 16 / 8
    for name, tensor in v1.items():
        if ".lora_A." in name:
            assert v2[name].shape == (16, tensor.shape[1])
            assert (v2[name][:8] == tensor).all()
        else:  # B's earlier columns rescaled from version 1's scale to the stack's: the same
            assert (v2[name][:, :8] == tensor).all()
    logged = [json.loads(line) for line in (Path(continual["job_dir"]) / "events.jsonl").read_text().splitlines()]
    assert "train.log.continual" in [e.get("key") for e in logged if e["type"] == "log"]
    steps = [e for e in logged if e["type"] == "step"]
    assert steps[-1]["orthogonality"] < steps[0]["orthogonality"]  # the new directions moved away

    # replay: a sample of version 1's rows in the new version's training file
    record = json.loads((Path(replayed["job_dir"]) / "job.json").read_text(encoding="utf-8"))
    assert record["replayed_rows"] > 0
    assert "boxes" not in record["train_file"] and "box opens" in Path(record["train_file"]).read_text()

    # what the user would notice: task A's answers, after task B
    after_a = answer_loss(home, first, a)
    a_plain, a_continual, a_replay = (answer_loss(home, job, a) for job in (plain, continual, replayed))
    assert a_continual < a_plain and a_replay < a_plain, (after_a, a_plain, a_continual, a_replay)
    # and task B is learned either way
    b_plain, b_continual = answer_loss(home, plain, b), answer_loss(home, continual, b)
    assert b_continual < answer_loss(home, first, b) - 0.5 and b_plain < answer_loss(home, first, b) - 0.5


def test_new_data_is_told_apart_from_more_of_the_same(home, tmp_path):
    from easytune import jobs
    from easytune.jobs.folder import JobFolder
    from easytune.settings import load_settings

    a, b = task_a(tmp_path), task_b(tmp_path)
    plan = write_plan(tmp_path / "a.yaml", dataset=str(a), max_steps=2, val_ratio=0.0, retention_ratio=0.0)
    first = cli_json("train", "--config", str(plan), home=home)
    settings = load_settings(home=home)
    assert jobs.continual_advice(settings, first["id"], str(b))["differs"] is True
    assert jobs.continual_advice(settings, first["id"], str(a))["differs"] is False

    # chosen for the user where neither setting was, and said so; a user's own choice is kept
    said = cli("jobs", "next", first["id"], "--data", str(b), "--set", "max_steps=1", home=home).stdout
    newest = jobs.list_jobs(settings)[0]
    plan = JobFolder(newest["job_dir"]).plan()
    chosen = jobs.NEW_TASK_DEFAULTS
    assert (plan.continual, plan.replay_ratio) == (chosen["continual"], chosen["replay_ratio"])
    assert "--set continual=false --set replay_ratio=0" in said
    cli("jobs", "next", first["id"], "--data", str(b), "--set", "replay_ratio=0.35", "--set", "max_steps=1",
        home=home)
    plan = JobFolder(jobs.list_jobs(settings)[0]["job_dir"]).plan()
    assert (plan.continual, plan.replay_ratio) == (False, 0.35)  # the user's choice, the rest as version 1's
