"""A packed batch that holds its sequences' common unscored beginning once (train/packing.py, shared_prefix):
the same loss and gradients as every sequence written out in full, for fewer tokens; and the same noise on the
embeddings (train/embedding_noise.py)."""

import pytest
import torch

from easytune.train.attention import reads_shared_prefix, use_segment_attention
from easytune.train.embedding_noise import add_embedding_noise
from easytune.train.loss import scored_loss, sliced_head
from easytune.train.packing import IGNORE, packed, shared_prefix
from support import ROOT, question_answer_rows
from support import gradients as grads

PREFIX = [5, 6, 7, 8, 9, 10]  # a chat template's system prompt and the user turn's opening, say


@pytest.fixture(scope="module")
def model():
    from easytune.models.sources import load_safe

    model = load_safe(ROOT / "assets" / "tiny-model", dtype=torch.float32)
    use_segment_attention(model)
    return model


def rows() -> list[tuple[list[int], list[int]]]:
    return question_answer_rows(PREFIX)


def test_the_common_unscored_beginning_is_found():
    assert shared_prefix(rows()) == len(PREFIX)
    assert shared_prefix(rows()[:1]) == 0, "one sequence shares nothing"
    early = [(ids, [IGNORE] * 4 + ids[4:]) for ids, _ in rows()]  # scoring starts inside the common part
    assert shared_prefix(early) == 3, "the token after the prefix is predicted by each sequence on its own"
    assert shared_prefix([*rows(), (PREFIX, [IGNORE] * len(PREFIX))]) == len(PREFIX) - 1, \
        "a sequence that is only the prefix keeps a token of its own"
    assert shared_prefix([*rows(), ([4] + PREFIX, [IGNORE] * 7)]) == 0


@pytest.mark.parametrize("sliced", [False, True])
def test_a_shared_prefix_gives_the_same_loss_and_gradients_for_fewer_tokens(model, sliced):
    assert reads_shared_prefix(model)
    head = sliced_head(model) if sliced else None
    written_out, _ = packed(rows(), "cpu")
    shared, _ = packed(rows(), "cpu", share_prefix=True)
    assert shared["shared_prefix"] == len(PREFIX)
    assert shared["input_ids"].shape[1] == written_out["input_ids"].shape[1] - 2 * len(PREFIX)
    assert int((shared["labels"] != IGNORE).sum()) == int((written_out["labels"] != IGNORE).sum())
    model.train()
    plain, once = scored_loss(model, written_out, head=head), scored_loss(model, shared, head=head)
    assert once.item() == pytest.approx(plain.item(), rel=1e-5)
    for a, b in zip(grads(model, plain), grads(model, once)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_rows_with_nothing_in_common_are_packed_as_before(model):
    different = [([4 + i] + ids, [IGNORE] + labels) for i, (ids, labels) in enumerate(rows())]
    shared, _ = packed(different, "cpu", share_prefix=True)
    assert "shared_prefix" not in shared
    assert torch.equal(shared["input_ids"], packed(different, "cpu")[0]["input_ids"])


def test_the_embedding_noise_counts_the_prefix_once_for_each_sequence(model):
    shared, _ = packed(rows(), "cpu", share_prefix=True)
    embed = model.get_input_embeddings()
    model.eval()
    clean = embed(shared["input_ids"]).detach()
    seen = []
    hooks = add_embedding_noise(model, 5.0)
    after = embed.register_forward_hook(lambda m, i, out: seen.append(out.detach()))
    try:
        model.train()
        with torch.no_grad():
            model(**{k: v for k, v in shared.items() if k != "labels"}, use_cache=False)
    finally:
        hooks.remove()
        after.remove()
    written_out = sum(len(ids) for ids, _ in rows())
    bound = 5.0 / (written_out * clean.shape[-1]) ** 0.5  # alpha / √(tokens × width), the rows written out
    noise = (seen[0] - clean).abs()
    assert noise.max().item() <= bound
    assert noise.mean().item() == pytest.approx(bound / 2, rel=0.1)
    model.eval()
    assert torch.equal(embed(shared["input_ids"]), clean), "the hooks are gone"
