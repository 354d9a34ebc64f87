"""The goal left to EasyTune ("auto", the wizard's and the CLI's default) is picked from the data, and the plan says
why: a FAQ whose answers hold facts gets the domain plan that teaches them (under "chat" a real model learns their
style only), small talk the chat plan, answer pairs preference training, raw text continued pre-training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import cli_json

FACTS = [("How much is the deposit?", "The deposit is $80, returned with the bike."),
         ("When did you open?", "Kestrel Cycles opened in 1987."),
         ("Who runs the workshop?", "Our workshop is run by head mechanic Ilse Brandt."),
         ("How long is the warranty?", "Frames carry a 7-year warranty."),
         ("What is your membership called?", "Our membership is called Tailwind.")]
SMALL_TALK = [("Can you help me write a polite reply?", "Of course. Thank them first, then answer kindly and briefly."),
              ("How should I greet a customer?", "Greet them warmly and ask how you can help."),
              ("Make this friendlier: send it now.", "Could you please send it when you have a moment?"),
              ("Summarise: the meeting moved to next week.", "The meeting has been moved to next week."),
              ("Say thank you nicely.", "Thank you so much, that really helped.")]


def add(settings, tmp_path: Path, name: str, rows: list[dict]) -> str:
    from easytune import datasets

    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return datasets.add_dataset(settings, path, name=name)["dataset"]["id"]


def pairs(items, copies: int = 3) -> list[dict]:
    return [{"question": q + " " * i, "answer": a} for i in range(copies) for q, a in items]


def planned(settings, dataset: str, task: str = "auto"):
    from easytune.plan.service import make_plan

    return make_plan(settings, model="easytune-tiny", dataset=dataset, task=task, level="L2")


def test_a_faq_of_facts_gets_the_plan_that_teaches_facts_and_says_why(settings, tmp_path):
    faq = add(settings, tmp_path, "faq", pairs(FACTS))
    auto, domain = planned(settings, faq), planned(settings, faq, "domain")
    assert auto.intent["task"] == "domain" and auto.plan == domain.plan
    assert auto.intent["task_reason"]["params"] == {"held": 15, "looked": 15}
    assert "15 of the 15 answers" in auto.task_text("en") and "领域知识" in auto.task_text("zh")
    assert domain.task_text("en") is None  # a goal the user picked needs no reason


def test_answers_without_facts_get_the_chat_plan(settings, tmp_path):
    talk = add(settings, tmp_path, "talk", pairs(SMALL_TALK))
    auto = planned(settings, talk)
    assert auto.intent["task"] == "chat" and auto.plan == planned(settings, talk, "chat").plan
    assert "only 0 of the 15 answers" in auto.task_text("en")


@pytest.mark.parametrize("rows, task", [
    ([{"prompt": f"Question {i}?", "chosen": f"A careful answer {i}.", "rejected": "No."} for i in range(12)],
     "preference"),
    ([{"text": f"Chapter {i}. The river runs north past the old mill and the school."} for i in range(12)],
     "pretrain")])
def test_answer_pairs_and_raw_text_get_their_own_goal(settings, tmp_path, rows, task):
    data = add(settings, tmp_path, task, rows)
    assert planned(settings, data).intent["task"] == task


def test_the_cli_plans_from_the_data_unless_told_and_reports_why(home, tmp_path):
    data = tmp_path / "faq.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in pairs(FACTS)), encoding="utf-8")
    cli_json("data", "add", str(data), "--name", "faq", home=home)
    report = cli_json("plan", "--data", "faq", home=home)
    assert report["intent"]["task"] == "domain" and "15 of the 15" in report["intent"]["task_text"]
    told = cli_json("plan", "--data", "faq", "--task", "chat", home=home)
    assert told["intent"]["task"] == "chat" and "task_text" not in told["intent"]
    assert report["plan"] == cli_json("plan", "--data", "faq", "--task", "domain", home=home)["plan"]
