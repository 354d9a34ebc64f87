"""Knowledge retention by self-synthesised rehearsal: the base model's own answers, in the data's language,
to general-knowledge questions and everyday tasks — never to the questions that measure forgetting."""

import json

import pytest

from easytune.settings import PRESETS_DIR
from easytune.train import rehearsal
from support import ROOT


def gatekeeper_questions() -> set[str]:
    return {json.loads(line)["messages"][0]["content"].strip().lower()
            for path in (PRESETS_DIR / "gatekeeper").glob("*.jsonl")
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_each_language_rehearses_knowledge_and_tasks_and_never_a_gatekeeper_question(language):
    knowledge, tasks = rehearsal.requests(language)
    assert len(knowledge) >= 40 and len(tasks) >= 40
    assert not {q.lower() for q in knowledge + tasks} & gatekeeper_questions(), "a measuring question is trained on"
    assert rehearsal.language_of(knowledge + tasks) == language


def test_a_pick_alternates_the_two_kinds_in_the_data_language_and_follows_the_seed():
    knowledge, tasks = rehearsal.requests("zh")
    picked = rehearsal.pick(10, seed=7, language="zh")
    assert [q in knowledge for q in picked] == [True, False] * 5
    assert picked == rehearsal.pick(10, seed=7, language="zh") != rehearsal.pick(10, seed=8, language="zh")
    assert len(rehearsal.pick(10_000, seed=7, language="en")) == sum(map(len, rehearsal.requests("en")))
    assert rehearsal.language_of(["退货期限是收货后45天。", "We ship within 2 days."] + ["订单满199元包邮。"]) == "zh"
    assert rehearsal.language_of(["You can return any item within 45 days.", "退货"]) == "en"


def test_rows_are_the_base_models_own_answers_and_are_written_once(tmp_path, monkeypatch):
    import torch
    from transformers import AutoTokenizer

    from easytune.evaluation import runner
    from easytune.models.sources import load_safe

    folder = ROOT / "assets" / "tiny-model"
    model, tokenizer = load_safe(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)
    rows = rehearsal.rehearsal_rows(model, tokenizer, model_path=str(folder), cache_dir=str(tmp_path), count=4,
                                    seed=1, language="en")
    asked = [row["messages"][0]["content"] for row in rows]
    assert asked == rehearsal.pick(4, seed=1, language="en")[:len(asked)] and len(asked) >= 3
    own = runner.generate(model, tokenizer, [[{"role": "user", "content": q}] for q in asked],
                          [rehearsal.MAX_NEW_TOKENS] * len(asked), 4)
    assert [row["messages"][1]["content"] for row in rows] == [a for a in own if a.strip()]

    def no_generation(*args, **kwargs):
        raise AssertionError("answered again although cached")

    monkeypatch.setattr(runner, "generate", no_generation)
    again = rehearsal.rehearsal_rows(model, tokenizer, model_path=str(folder), cache_dir=str(tmp_path), count=4,
                                     seed=1, language="en")
    assert again == rows
