"""Noise on the input embeddings while training (train/embedding_noise.py): of the published scale, in training
mode only, with the gradient through it; used by a real run (the planner's choice: tests/plan/test_planner.py)."""

import json
from pathlib import Path

import pytest
import torch

from easytune.train.embedding_noise import add_embedding_noise
from support import ROOT, cli_json, write_plan


@pytest.fixture
def tiny_model():
    from easytune.models.sources import load_safe

    return load_safe(ROOT / "assets" / "tiny-model", dtype=torch.float32)


def test_training_embeddings_get_noise_of_the_published_scale_and_scoring_sees_none(tiny_model):
    torch.manual_seed(0)
    ids = torch.randint(5, 200, (2, 40))
    embed = tiny_model.get_input_embeddings()
    clean = embed(ids).detach()
    add_embedding_noise(tiny_model, 5.0)
    tiny_model.train()
    noisy, again = embed(ids).detach(), embed(ids).detach()
    bound = 5.0 / (40 * clean.shape[-1]) ** 0.5  # alpha / √(tokens × width)
    assert not torch.equal(noisy, again)  # fresh noise at every step
    assert (noisy - clean).abs().max().item() <= bound
    assert (noisy - clean).abs().mean().item() == pytest.approx(bound / 2, rel=0.1)  # uniform on ±bound
    tiny_model.eval()
    assert torch.equal(embed(ids), clean)


def test_the_gradient_reaches_the_model_through_the_noise(tiny_model):
    add_embedding_noise(tiny_model, 5.0)
    tiny_model.train()
    ids = torch.randint(5, 200, (2, 16))
    tiny_model(input_ids=ids, labels=ids).loss.backward()
    assert tiny_model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_a_run_with_noise_trains_and_says_so(tmp_path):
    home = tmp_path / "home"
    job = cli_json("train", "--config", str(write_plan(tmp_path / "plan.yaml", embedding_noise=5.0, max_steps=3)),
                   home=home)
    assert job["state"] == "COMPLETED", job
    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    assert [e["params"] for e in events if e.get("key") == "train.log.embedding_noise"] == [{"alpha": "5"}]
