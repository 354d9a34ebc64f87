"""The loss computed over the scored positions only is the loss transformers computes over all of them,
with the same gradients, for padded and for packed batches; and so is the loss whose vocabulary projection
runs a slice of positions at a time."""

import pytest
import torch

from easytune.train import loss as loss_module
from easytune.train.loss import keeps_logits, scored_loss, sliced_head
from easytune.train.packing import IGNORE, packed, padded
from support import ROOT
from support import gradients as grads
from support import question_answer_rows as rows


@pytest.fixture(scope="module")
def model():
    from easytune.models.sources import load_safe

    return load_safe(ROOT / "assets" / "tiny-model", dtype=torch.float32)


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_scoring_only_the_labelled_positions_changes_neither_the_loss_nor_its_gradients(model, layout):
    batch, _ = padded(rows(), 0, "cpu") if layout == "padded" else packed(rows(), "cpu")
    assert keeps_logits(model)
    plain = model(**batch, use_cache=False).loss
    scored = scored_loss(model, batch)
    assert scored.item() == pytest.approx(plain.item(), rel=1e-5)
    assert "labels" in batch, "the caller's batch is left as it was"
    for a, b in zip(grads(model, plain), grads(model, scored)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_model_asked_for_fewer_logits_computes_only_those(model):
    batch, _ = packed(rows(), "cpu")
    projected = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: projected.append(o.shape[1]))
    try:
        scored_loss(model, batch)
    finally:
        hook.remove()
    scored = int((batch["labels"][:, 1:] != IGNORE).sum())
    assert projected == [scored] and scored < batch["input_ids"].shape[1] / 2


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_the_projection_a_slice_at_a_time_gives_the_same_loss_and_gradients(model, layout, monkeypatch):
    monkeypatch.setattr(loss_module, "SLICE", 4)  # these rows score 17 positions: five slices
    batch, _ = padded(rows(), 0, "cpu") if layout == "padded" else packed(rows(), "cpu")
    head = sliced_head(model)
    assert head is model.get_output_embeddings()
    plain = model(**batch, use_cache=False).loss
    projected = []
    hook = head.register_forward_hook(lambda m, i, o: projected.append(o.shape[0]))
    try:
        sliced = scored_loss(model, batch, head=head)
        plain_grads, sliced_grads = grads(model, plain), grads(model, sliced)
    finally:
        hook.remove()
    assert sliced.item() == pytest.approx(plain.item(), rel=1e-5)
    for a, b in zip(plain_grads, sliced_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    scored = (batch["labels"][:, 1:] != IGNORE).any(0).sum() * batch["labels"].shape[0]
    forward = projected[:len(projected) // 2]  # then the same slices again, in the backward pass
    assert max(projected) <= 4 and sum(forward) == scored and len(projected) == 2 * len(forward)
    assert model.get_output_embeddings() is head, "the model keeps its projection"


def test_a_model_whose_logits_are_more_than_the_projection_is_not_sliced(model, monkeypatch):
    monkeypatch.setattr(model.config, "model_type", "gemma2")  # soft-caps its logits after the projection
    assert sliced_head(model) is None
