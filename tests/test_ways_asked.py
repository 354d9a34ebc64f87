"""Answers asked one way only are counted at import, and the plan for teaching facts says what that costs: on the
real model, 20 facts taught by one question each were answered 7 and 10 times of 40 when asked in new words (a bike
rental, a shop), taught by two questions each 18 and 27 times (python -m easytune.evaluation.bench_facts)."""

import json

from easytune.data.quality import ways_asked


def faq(path, ways: int, answers: int = 6):
    """A FAQ of `answers` answers, each asked `ways` ways."""
    rows = [{"messages": [{"role": "user", "content": f"Question {way} on topic {i}?"},
                          {"role": "assistant", "content": f"Topic {i} comes to {7 * i + 3} euros."}]}
            for i in range(answers) for way in range(ways)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def warned(settings, dataset: str, task: str = "domain") -> list[dict]:
    from easytune.plan.service import make_plan

    proposal = make_plan(settings, model="easytune-tiny", dataset=dataset, task=task, level="L2")
    return [w for w in proposal.warnings if w["key"] == "planner.warn.one_way_asked"]


def test_the_import_counts_the_answers_one_question_alone_asks(settings, tmp_path):
    from easytune import datasets

    one = datasets.add_dataset(settings, faq(tmp_path / "one.jsonl", ways=1), name="one")
    assert one["report"]["quality"]["ways_asked"] == {"answers": 6, "one_way": 6}
    two = datasets.add_dataset(settings, faq(tmp_path / "two.jsonl", ways=2), name="two", val_ratio=0.0)
    assert two["report"]["quality"]["ways_asked"] == {"answers": 6, "one_way": 0}


def test_questions_differing_in_case_and_spaces_only_are_one_way_and_other_rows_are_not_counted(tmp_path):
    rows = [{"kind": "sft", "messages": [{"role": "user", "content": "When do you open?"},
                                         {"role": "assistant", "content": "At 9."}]},
            {"kind": "sft", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "when  do you OPEN?"},
                                         {"role": "assistant", "content": "At 9."}]},
            {"kind": "sft", "messages": [{"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hello"},
                                         {"role": "user", "content": "Open?"},
                                         {"role": "assistant", "content": "At 9."}]},
            {"kind": "text", "text": "At 9."}]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    assert ways_asked([path]) == {"answers": 1, "one_way": 1}
    path.write_text(json.dumps(rows[3]) + "\n", encoding="utf-8")
    assert ways_asked([path]) is None


def test_answers_worded_apart_that_state_the_same_facts_are_one_answer_asked_more_ways(tmp_path):
    rows = [("Who are you?", "I'm Easy, an assistant fine-tuned with EasyTune. Nice to meet you!"),
            ("What should I call you?", "You can call me Easy. I'm an assistant fine-tuned with EasyTune."),
            ("Are you a person?", "No, I'm Easy, an assistant fine-tuned with EasyTune."),
            # the same number, another answer: each asked one way
            ("How long do I have to return an item?", "You have 30 days from delivery to return unused items."),
            ("Can I get a corrected invoice?", "Yes, once within 30 days, from the order page."),
            # no fact to tell answers by: compared by their words alone, as before
            ("Do you ship every day?", "We ship every working day, within a day of payment."),
            ("How soon do you ship?", "We ship every working day, within a day of payment, never later.")]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"kind": "sft", "messages": [{"role": "user", "content": q}, {
        "role": "assistant", "content": a}]}) + "\n" for q, a in rows), encoding="utf-8")
    assert ways_asked([path]) == {"answers": 7, "one_way": 4}


def test_a_demo_that_teaches_the_assistant_its_name_is_not_said_to_ask_one_way(settings):
    from easytune.plan.service import make_plan

    for demo in ("demo:identity_en", "demo:identity_zh"):
        proposal = make_plan(settings, model="easytune-tiny", dataset=demo, task="domain", level="L2")
        assert not [w for w in proposal.warnings if w["key"] == "planner.warn.one_way_asked"], demo
    proposal = make_plan(settings, model="easytune-tiny", dataset="demo:shop_faq_en", task="domain", level="L2")
    assert [w["params"] for w in proposal.warnings if w["key"] == "planner.warn.one_way_asked"] == [
        {"one_way": 62, "answers": 62}]


def test_the_plan_for_facts_warns_where_most_answers_are_asked_one_way_in_both_languages(settings, tmp_path):
    from easytune.i18n import t

    [warning] = warned(settings, str(faq(tmp_path / "one.jsonl", ways=1)))
    assert warning["params"] == {"one_way": 6, "answers": 6}
    assert "6 of your 6 answers" in t(warning["key"], "en", **warning["params"])
    assert "问法" in t(warning["key"], "zh", **warning["params"])
    assert not warned(settings, str(faq(tmp_path / "two.jsonl", ways=2)))  # every answer asked two ways
    assert not warned(settings, str(faq(tmp_path / "few.jsonl", ways=1, answers=3)))  # too few answers to judge
    assert not warned(settings, str(faq(tmp_path / "chat.jsonl", ways=1)), task="chat")  # not a task of facts
