"""The default path teaches a real model facts and leaves what it knew: a fictional shop's FAQ (20 facts,
each taught by two questions) through the plan picked for it with nothing set by hand (domain knowledge),
then judged by what the base and the tuned model answer (easytune.evaluation.bench_facts, the benchmark's
own code): the taught questions, the facts asked in words training never showed, and general questions
with answer keys."""

from __future__ import annotations

import pytest

from easytune.evaluation import bench_facts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def taught(real_model, tmp_path_factory) -> dict:
    home = tmp_path_factory.mktemp("facts-home")
    return bench_facts.run(str(real_model["folder"]), {}, home)


def right(result: dict, name: str, side: str) -> int:
    return sum(answer["right"] for answer in result["sets"][name][side])


def test_the_default_plan_teaches_the_facts_it_was_given(taught):
    assert taught["task"] == "domain", "a FAQ of facts is planned as domain knowledge, with nothing set by hand"
    assert taught["state"] == "COMPLETED", taught
    total = len(taught["sets"]["taught"]["tuned"])
    assert right(taught, "taught", "base") <= 0.2 * total, "the base model must not know the shop already"
    assert right(taught, "taught", "tuned") >= bench_facts.TARGETS["taught"] * total, taught["sets"]["taught"]


def test_the_default_plan_answers_facts_asked_in_other_words(taught):
    # the benchmark's target is 60 %: the measured runs of this plan read 20 to 26 of 40 over four seeds; the
    # test leaves room for that spread, not for a plan that stops working (without copies: 12 of 40)
    base, tuned = (right(taught, "asked_otherwise", side) for side in ("base", "tuned"))
    total = len(taught["sets"]["asked_otherwise"]["tuned"])
    assert tuned >= 0.45 * total and tuned >= base + 15, taught["sets"]["asked_otherwise"]["tuned"]


def test_the_default_plan_keeps_the_general_knowledge_it_had(taught):
    total = len(taught["sets"]["general"]["base"])
    assert right(taught, "general", "tuned") >= right(taught, "general", "base") - total / 10, \
        [a for a in taught["sets"]["general"]["tuned"] if not a["right"]]
    capital = next(a for a in taught["sets"]["general"]["tuned"] if "capital of France" in a["question"])
    assert "Paris" in capital["answer"], capital
