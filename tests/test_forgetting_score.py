"""Evaluation losses are the same however the examples are batched (packed, padded, small or large
forwards), and the forgetting score's shortcut before training is exact: a fresh adapter changes nothing."""

import json

import pytest
import torch

from support import ROOT

pytestmark = pytest.mark.slow
TINY = ROOT / "assets" / "tiny-model"


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from easytune.train.attention import use_segment_attention

    model = AutoModelForCausalLM.from_pretrained(TINY, use_safetensors=True, dtype=torch.float32)
    use_segment_attention(model)  # as the worker runs a packed plan
    return model, AutoTokenizer.from_pretrained(TINY)


@pytest.fixture(scope="module")
def examples(tiny):
    from easytune.train.evaluate import reference_examples
    from easytune.train.sft import encode_row

    _, tokenizer = tiny
    rows = [json.loads(line) for line in (ROOT / "assets" / "demo" / "shop_faq_en.jsonl").read_text().splitlines()]
    answers = [e for row in rows[:10] for e in encode_row(tokenizer, row, 256)]  # prompts are not scored
    return reference_examples(tokenizer, 256, 8) + answers


def one_at_a_time(model, examples) -> float:
    total = count = 0
    with torch.no_grad():
        for e in examples:
            labels = torch.tensor([e["labels"]])
            n = int((labels[:, 1:] != -100).sum())
            total += model(input_ids=torch.tensor([e["input_ids"]]), labels=labels).loss.item() * n
            count += n
    return total / count


@pytest.mark.parametrize("pack", [True, False])
def test_the_loss_does_not_depend_on_how_examples_are_batched(tiny, examples, pack):
    from easytune.train.evaluate import mean_loss, token_batches

    model, _ = tiny
    expected = one_at_a_time(model.eval(), examples)
    longest = max(len(e["input_ids"]) for e in examples)
    for tokens in (longest // 2, 3 * longest, 100_000):  # one sequence over the budget; a few; all at once
        for batch in token_batches(examples, tokens, pack):
            lengths = [len(e["input_ids"]) for e in batch]
            assert len(batch) == 1 or (sum(lengths) if pack else max(lengths) * len(lengths)) <= tokens
        assert sum(len(b) for b in token_batches(examples, tokens, pack)) == len(examples)
        assert mean_loss(model, examples, 4, 0, "cpu", pack, tokens=tokens) == pytest.approx(expected, abs=1e-5)
    assert mean_loss(model, examples, 4, 0, "cpu", pack) == pytest.approx(expected, abs=1e-5)


def test_a_fresh_adapter_forgets_nothing_and_a_trained_one_is_scored(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model

    from easytune.train.evaluate import ForgettingScore

    base, tokenizer = tiny
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    try:
        def forgetting():
            return ForgettingScore(model, tokenizer, model_path=str(TINY), max_len=256, per_language=8,
                                   batch_size=4, pad_id=0, device="cpu", cache_dir=tmp_path, adapter=True, pack=True)

        score = forgetting()
        before = score.score(untrained=True)
        assert before["cf_score"] == 0 and before["cf_s"] > 0, "the base pass is counted in the first score's time"
        measured = score.score()  # the same model scored for real: the shortcut is exact
        assert measured["general_loss"] == pytest.approx(before["general_loss"], abs=1e-6)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "lora_B" in name:
                    weight.normal_(0, 0.5)
        cached = forgetting()  # the base loss now comes from the cache, though the adapter has moved
        assert cached.base == score.base
        assert cached.score()["cf_score"] > 0.01
    finally:
        model.unload()  # the module's base model stays as it was for the other tests


def test_scoring_waits_until_the_training_time_pays_for_it(tiny, tmp_path):
    """The first pass after training starts is always taken; after it, a pass is due only while all
    scoring stays within its share of the training time."""
    from easytune.train.evaluate import ForgettingScore

    model, tokenizer = tiny

    def forgetting():
        return ForgettingScore(model, tokenizer, model_path=str(TINY), max_len=256, per_language=8, batch_size=4,
                               pad_id=0, device="cpu", cache_dir=tmp_path, adapter=False, pack=True)

    score = forgetting()
    assert score.pass_s > 0 and score.spent_s >= score.pass_s, "the base pass is timed and counted"
    assert score.due(training_s=0.0, share=0.1), "the first pass is always due"
    score.score(untrained=True)
    assert score.due(training_s=0.0, share=0.1), "the step before training is not a pass"
    score.score()
    spent, one = score.spent_s, score.pass_s
    assert score.tuned_passes == 1
    assert not score.due(training_s=(spent + one) / 0.1 * 0.9, share=0.1)
    assert score.due(training_s=(spent + one) / 0.1 * 1.1, share=0.1)
    cached = forgetting()  # the base loss from the cache: no pass timed, the first is still taken
    assert cached.pass_s is None and cached.due(training_s=0.0, share=0.1)


def test_forgetting_is_a_divergence_from_the_base_that_retention_text_cannot_lower(tiny, tmp_path):
    """Training on the reference text itself lowers the general-text loss (the old score went negative);
    the divergence from the base still rises, since the predictions moved."""
    from peft import LoraConfig, get_peft_model

    from easytune.train.evaluate import ForgettingScore, reference_examples

    base, tokenizer = tiny
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "down_proj"]))
    score = ForgettingScore(model, tokenizer, model_path="tiny", max_len=256, per_language=8, batch_size=4,
                            pad_id=0, device="cpu", cache_dir=tmp_path, adapter=True, pack=True)
    assert score.base_entropy > 0
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for example in reference_examples(tokenizer, 256, 8)[:8] * 3:
        ids = torch.tensor([example["input_ids"]])
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = score.score()
    assert after["general_loss"] < after["base_general_loss"], "trained on the very text it is scored on"
    assert after["cf_score"] > 0.01 and after["cf_pct"] > 0 and after["general_loss_pct"] < 0
    model.unload()
