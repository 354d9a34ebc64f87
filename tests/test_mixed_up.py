"""A wrong answer that is another of the answers trained on is a mix-up, and the evaluation says which answer came
instead. The answers below are the real model's (SmolLM2-135M-Instruct after the default plan on the bike rental's
facts, asked in other words: 8 of its 22 wrong answers were the deposit's)."""

from easytune.evaluation.buckets import Bucket, Item
from easytune.evaluation.config import evaluation_config
from easytune.evaluation.facts import given_instead, taught_answers
from easytune.evaluation.service import bucket_results
from easytune.evaluation.verdict import answers_text, judge, verdict_text
from easytune.ui.evaluate_step import samples_markdown

DEPOSIT = "Every bike rental needs a refundable deposit of $80, returned when the bike comes back."
HELMET = "Every rental comes with a Nordvik helmet, which you must wear while riding."
LATE = "Returning a bike late costs $5 for every extra hour."
STAMPS = "Every tenth rental is free when you collect stamps on your Kestrel card."
MECHANIC = "Our workshops are run by head mechanic Ilse Brandt, who checks every repair herself."
FOUNDER = "Kestrel Cycles was started by Marguerite Vell, a former track racer."
TAUGHT = [("How much is the deposit for renting a bike?", DEPOSIT), ("What deposit do I pay?", DEPOSIT),
          ("Do I get a helmet when I rent a bike?", HELMET), ("What is the late return fee?", LATE),
          ("How does the Kestrel stamp card work?", STAMPS), ("Who is your head mechanic?", MECHANIC),
          ("Who founded Kestrel Cycles?", FOUNDER)]
CFG = evaluation_config()


def test_a_wrong_answer_that_is_another_taught_answer_is_named_and_a_blend_or_slip_is_not():
    taught = taught_answers(TAUGHT)
    assert [t.answer for t in taught] == [DEPOSIT, HELMET, LATE, STAMPS, MECHANIC, FOUNDER]  # each answer once
    instead = given_instead(DEPOSIT, HELMET, taught, "Does hiring a cycle come with something for my head?")
    assert instead is not None and instead.question == "How much is the deposit for renting a bike?"
    founder = given_instead("The Kestrel Women's Garment is run by Ilse Brandt, a former track star.", FOUNDER,
                            taught, "What is the name of the woman behind the company?")
    assert founder is None  # the mechanic's name in the founder's sentence: a blend, not the mechanic's answer
    # the stamp card's sentence without its card: no fact of that answer is stated
    assert given_instead("Every tenth rental is free when you bring a bike late.", LATE, taught) is None
    # the deposit's amount in the late fee's own sentence: a wrong number, still an answer about the late fee
    assert given_instead("Returning a bike late costs $80 for every extra hour.", LATE, taught) is None
    # a Chinese answer: its number is the fact
    deposit, opening = "租车押金是 80 元，还车时退还。", "我们每天早上 6 点 45 分开门。"
    zh = taught_answers([("押金多少？", deposit), ("几点开门？", opening)])
    assert given_instead(deposit, opening, zh).question == "押金多少？"


def asked(answers: list[tuple[str, str, str]]) -> tuple[Bucket, dict]:
    """A bucket of the user's test questions (question, reference, the tuned model's answer); the base model
    answers each with something it made up."""
    bucket = Bucket("unseen", [Item([{"role": "user", "content": q}], ref) for q, ref, _ in answers],
                    source="questions", dataset="asked-otherwise", taught=TAUGHT)
    measured = {"base": {"answers": ["I do not know." for _ in answers], "loss": 4.0, "probe": None},
                "tuned": {"answers": [answer for _, _, answer in answers], "loss": 2.0, "probe": None}}
    return bucket, measured


def results(unseen: list[tuple[str, str, str]]) -> dict:
    seen, seen_measured = asked([(q, a, a) for q, a in TAUGHT])  # every taught question answered right
    seen.name, seen.source, seen.dataset = "seen", "train_file", None
    bucket, measured = asked(unseen)
    general = Bucket("gatekeeper", [Item([{"role": "user", "content": "Capital of France?"}], "Paris", key=["Paris"])
                                    for _ in range(10)], source="gatekeeper")
    general_measured = {side: {"answers": ["Paris."] * 10, "loss": 2.0, "probe": None} for side in ("base", "tuned")}
    return bucket_results([seen, bucket, general],
                          {"seen": seen_measured, "unseen": measured, "gatekeeper": general_measured}, CFG)


HELMET_ASKED = [("Will I have to buy head protection?", HELMET, DEPOSIT),
                ("Does hiring a cycle come with something for my head?", HELMET, DEPOSIT),
                ("Whose job is it to inspect the repair work?", MECHANIC, DEPOSIT),
                ("Who gets it going in the workshop?", MECHANIC, MECHANIC),
                ("What is the penalty per hour if I am slow?", LATE, "Every tenth rental is free when you are late."),
                ("What will you charge if I keep the cycle longer?", LATE, DEPOSIT),
                ("Which woman started the company?", FOUNDER, MECHANIC)]


def test_the_evaluation_counts_the_mix_ups_and_names_the_answer_given_instead_most_often():
    buckets = results(HELMET_ASKED)
    mixed = buckets["unseen"]["mixed_up"]
    assert mixed == {"count": 5, "wrong": 6, "question": "How much is the deposit for renting a bike?",
                     "answer": DEPOSIT, "times": 4, "example": "Will I have to buy head protection?"}
    samples = buckets["unseen"]["samples"]
    assert [s["tuned_instead"] for s in samples] == [
        "How much is the deposit for renting a bike?", "How much is the deposit for renting a bike?",
        "How much is the deposit for renting a bike?", None, None, "How much is the deposit for renting a bike?",
        "Who is your head mechanic?"]
    assert "mixed_up" not in buckets["seen"] and "mixed_up" not in buckets["gatekeeper"]
    table = samples_markdown({"buckets": buckets}, "en")
    assert "the answer taught for “How much is the deposit for renting a bike?”" in table
    assert "答成了“Who is your head mechanic?”的回答" in samples_markdown({"buckets": buckets}, "zh")
    lines = answers_text({"buckets": buckets}, "en")  # easytune eval --answers
    assert ("✗ Will I have to buy head protection?\n    Reference (its facts): " + HELMET + " (nordvik)\n"
            "    Base model ✗ I do not know.\n    Tuned model ✗ " + DEPOSIT +
            " (the answer taught for “How much is the deposit for renting a bike?”)") in lines
    assert "✓ Who gets it going in the workshop?" in lines
    assert "Answers to your test questions (asked-otherwise)" in lines
    assert "你的测试问题的回答 (asked-otherwise)" in answers_text({"buckets": buckets}, "zh")


def test_the_verdict_says_which_answer_came_instead_in_both_languages_and_what_to_do():
    result = judge(results(HELMET_ASKED), {"cf_score": 0.05, "cf_pct": 2.0, "cf_level": None}, CFG["verdict"])
    point = next(p for p in result["points"] if p["key"] == "evaluation.point.mixed_up_questions")
    assert point["params"] == {"count": 5, "wrong": 6, "times": 4, "name": "asked-otherwise",
                               "question": "How much is the deposit for renting a bike?",
                               "example": "Will I have to buy head protection?"}
    en, zh = verdict_text(result, "en"), verdict_text(result, "zh")
    assert "5 of its 6 wrong answers are another of your answers: 4 of them the one taught for " \
           "“How much is the deposit for renting a bike?”" in en
    assert "有 5 个答成了你数据里的另一条回答" in zh and "How much is the deposit" in zh
    steps = {step["key"] for step in result["next"]}
    assert "evaluation.next.tell_apart" in steps  # no other step already asks for other wording here


def test_two_mix_ups_are_not_a_pattern_worth_a_line():
    result = judge(results(HELMET_ASKED[:2] + HELMET_ASKED[3:5]),
                   {"cf_score": 0.05, "cf_pct": 2.0, "cf_level": None}, CFG["verdict"])
    assert not [p for p in result["points"] + result["next"] if "mixed_up" in p["key"] or "tell_apart" in p["key"]]
