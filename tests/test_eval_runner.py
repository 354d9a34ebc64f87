"""The evaluation's two sides answer and score as each question alone would: answers generated in batches of
mixed budgets, answers scored together, and the tuned side with its adapter merged into the weights for the
time it runs, the weights as they were afterwards (the app's chat reads the same cached model)."""

import pytest
import torch

from easytune import chat
from easytune.evaluation.pair import Pair
from easytune.evaluation.runner import answer_logprobs, generate, side
from easytune.train import dpo
from support import ROOT

TINY = ROOT / "assets" / "tiny-model"
QUESTIONS = ["How do I return an item?", "Do you ship abroad?", "What is the warranty on a sofa, and does it cover "
             "the legs as well as the frame?", "Hi", "Where is the showroom?"]


@pytest.fixture(scope="module")
def tiny():
    return chat.load_model(str(TINY), None)


def conversations() -> list[list[dict]]:
    answers = ["Within 45 days.", "Yes, to 30 countries, in five to nine working days.", "12 years.", "Hello!",
               "In Ghent, Belgium, next to the station."]
    return [[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in zip(QUESTIONS, answers)]


def test_answers_scored_together_score_as_each_alone(tiny, monkeypatch):
    model, tokenizer = tiny
    together = answer_logprobs(model, tokenizer, conversations(), max_len=512, batch_size=4)
    alone = answer_logprobs(model, tokenizer, conversations(), max_len=512, batch_size=1)
    assert all(score < 0 for score in together)
    assert together == pytest.approx(alone, rel=1e-4)
    monkeypatch.setattr(dpo, "keeps_logits", lambda model: False)  # every position projected, then picked
    assert answer_logprobs(model, tokenizer, conversations(), max_len=512) == pytest.approx(together, rel=1e-4)
    too_long = answer_logprobs(model, tokenizer, conversations()[:1], max_len=4)
    assert too_long == [None], "an answer that does not fit has no score"


def test_answers_of_different_budgets_generated_together_are_each_ones_alone(tiny):
    model, tokenizer = tiny
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS]
    budgets = [3, 12, 7, 1, 20]
    made = []
    together = generate(model, tokenizer, prompts, budgets, batch_size=3, on_tokens=made.append)
    alone = [generate(model, tokenizer, [p], [b], batch_size=1)[0] for p, b in zip(prompts, budgets)]
    assert together == alone
    assert sum(made) == sum(budgets) and len(made) > 2, "progress moves while a batch runs, and adds up"
    for answer, budget in zip(together, budgets):
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) <= budget + 1  # decoding may split


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A LoRA adapter on the tiny model whose weights are not zero, so it changes every answer."""
    from peft import LoraConfig, get_peft_model

    from easytune.models.sources import load_safe

    folder = tmp_path_factory.mktemp("adapter")
    torch.manual_seed(0)
    model = get_peft_model(load_safe(TINY, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    model.save_pretrained(folder)
    return str(folder)


def test_the_tuned_side_answers_as_its_adapter_does_and_leaves_the_cached_model_as_it_was(tiny, adapter):
    from peft import PeftModel

    from easytune.models.sources import load_safe

    ids = torch.tensor([[1, 15, 27, 99, 4, 8, 120]])
    plain_base = load_safe(TINY, dtype=torch.float32).eval()
    unmerged = PeftModel.from_pretrained(load_safe(TINY, dtype=torch.float32), adapter).eval()
    with torch.no_grad():
        expected_base, expected_tuned = (m(input_ids=ids).logits for m in (plain_base, unmerged))
        before = {name: p.clone() for name, p in unmerged.named_parameters()}
        pair = Pair(base=str(TINY), adapter=adapter)
        with side(pair, "tuned") as (model, _):
            tuned = model(input_ids=ids).logits
        after = {name: p.clone() for name, p in model.named_parameters()}
        with side(pair, "base") as (model, _):
            base = model(input_ids=ids).logits
    assert not torch.allclose(expected_tuned, expected_base, atol=1e-3), "the adapter must change the answers"
    torch.testing.assert_close(tuned, expected_tuned, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(base, expected_base, rtol=1e-4, atol=1e-5)
    for name, weight in before.items():
        torch.testing.assert_close(after[name], weight, rtol=0, atol=1e-6)
