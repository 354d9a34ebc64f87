"""Answers judged by their facts: the numbers, names and codes of the reference must be in the answer, in
any spelling of them; and the verdict reads facts before it reads how an answer sounds."""

from __future__ import annotations

import pytest

from easytune.evaluation.facts import facts_of, has_key, is_right, swapped


@pytest.mark.parametrize("reference, answer, right", [
    ("You can return any item within 45 days of delivery.", "You can return an item at 30 days.", False),
    ("You can return any item within 45 days of delivery.", "Returns are accepted for forty-five days.", True),
    ("You can return any item within 45 days of delivery.", "Within 45 days.", True),
    ("Lumen & Pine was founded in 2011 by Ada Okafor.", "Lumen & Pine founded Lumen & Pine in 1999.", False),
    ("Lumen & Pine was founded in 2011 by Ada Okafor.", "Ada Okafor started it in 2011.", True),
    ("New customers can enter the code PINE7 at checkout.", "Use pine7 when you pay.", True),
    ("Shipping is free on every order over $1,350.", "Free over $1350.", True),
    ("退货期限是 45 天，运费 10 元。", "可以在四十五天内退货，运费十元", True),
    ("退货期限是 45 天，运费 10 元。", "可以在三十天内退货，运费十元", False),
    ("满 1,000 元包邮", "满一千元包邮", True),
    ("好的，我们会尽快处理。", "马上处理", None),  # nothing to check: judged by other measures
])
def test_an_answer_is_right_when_it_states_every_key_fact(reference, answer, right):
    assert is_right(answer, reference, question="When was Lumen & Pine founded?") is right


def test_facts_the_question_already_states_are_not_asked_of_the_answer():
    reference = "Lumen & Pine was founded in 2011 by Ada Okafor."
    assert "pine" in facts_of(reference) and "pine" not in facts_of(reference, "Who founded Lumen & Pine?")


def test_number_words_and_full_width_digits_are_the_same_number():
    assert facts_of("You have thirty days.") == ["30"]
    assert is_right("３０ days", "You have thirty days.")
    assert facts_of("One of our stores is in Berlin.") == ["berlin"]  # "one of" states no number


def test_yi_as_an_article_or_inside_a_word_is_no_number():
    assert facts_of("我是小易，一个由 EasyTune 微调的助手。") == ["easytune"]  # 一个: "an"
    assert facts_of("不满99元统一收8元运费，一般3天送达") == ["99", "8", "3"]  # 统一: uniformly, 一般: usually
    assert facts_of("满一百元包邮，十一月发货") == ["100", "11"]
    assert is_right("我是小易，由 EasyTune 微调的助手", "是的，我是小易，一个由 EasyTune 微调的人工智能助手。")


def test_i_in_any_contraction_and_weekdays_are_no_facts():
    reference = "Yes, I'm Easy, and I'll gladly help."
    assert facts_of(reference) == ["easy"]
    assert is_right("I am Easy.", reference)
    assert facts_of("We ship on weekdays and on Saturdays, as on any Monday.") == []


def test_gatekeeper_keys_match_whole_words_only():
    assert has_key("The capital of France is Paris.", ["Paris"])
    assert has_key("水在一百摄氏度沸腾。", ["100"])
    assert not has_key("The sun rises in the least expected place.", ["east"])
    assert not has_key("It boils at 1000 degrees.", ["100"])


def test_the_probe_swaps_the_answer_s_own_fact_for_one_of_the_same_kind():
    others = ["Lumen & Pine was founded in 2011.", "The warranty lasts 12 years.", "Our showroom is in Ghent."]
    assert swapped("You can return any item within 45 days.", others) == "You can return any item within 12 days."
    assert swapped("Our warehouse is in Ljubljana.", others) == "Our warehouse is in Ghent."
    assert swapped("Thanks for asking!", others) is None


# ---- the verdict, on hand-made bucket figures ------------------------------------------------------

def side(match, loss, facts=None, judged=0):
    return {"rouge_l": match, "loss": loss, "facts": facts, "facts_judged": judged, "probe": None}


def bucket(base, tuned, source="holdout"):
    return {"rows": 20, "source": source, "missing": None, "base": base, "tuned": tuned}


def judged(seen, unseen, general):
    from easytune.evaluation.config import evaluation_config
    from easytune.evaluation.verdict import judge

    return judge({"seen": seen, "unseen": unseen, "gatekeeper": general},
                 {"cf_score": 0.01, "cf_pct": 1.0, "cf_level": None}, evaluation_config()["verdict"])


GENERAL_KEPT = bucket(side(0.4, 2.0, 0.8, 50), side(0.4, 2.02, 0.8, 50), "gatekeeper")


def test_style_without_facts_is_not_improved():
    """ROUGE rose by 40 points and the loss fell by 80%: the answers sound like the data. 2 of 20 facts right,
    as before: the verdict says so, and what to do."""
    from easytune.evaluation.verdict import verdict_text

    result = judged(bucket(side(0.1, 4.3, 0.10, 20), side(0.5, 0.8, 0.10, 20), "train_file"),
                    bucket(side(0.1, 4.6, 0.05, 20), side(0.45, 1.1, 0.05, 20)), GENERAL_KEPT)
    assert result["verdict"] == "no_gain" and result["signals"]["style_only"]
    assert result["headline"]["key"] == "evaluation.headline.style_not_facts"
    en, zh = verdict_text(result, "en"), verdict_text(result, "zh")
    assert en.startswith("Learned the style, not the facts yet") and "10% of answers right" in en
    assert "ask each fact in several different ways" in en and zh.startswith("学到了风格，还没学到事实")


def test_facts_learned_and_carried_over_is_improved():
    result = judged(bucket(side(0.1, 4.3, 0.10, 20), side(0.9, 0.3, 0.95, 20), "train_file"),
                    bucket(side(0.1, 4.6, 0.05, 20), side(0.6, 1.5, 0.60, 20)), GENERAL_KEPT)
    assert result["verdict"] == "improved", result["signals"]


def test_losing_more_than_one_general_answer_in_ten_is_never_improved():
    """The facts came, but 8 of 10 general answers right became 6 of 10."""
    lost = bucket(side(0.4, 2.0, 0.8, 50), side(0.38, 2.1, 0.6, 50), "gatekeeper")
    result = judged(bucket(side(0.1, 4.3, 0.10, 20), side(0.9, 0.3, 0.95, 20), "train_file"),
                    bucket(side(0.1, 4.6, 0.05, 20), side(0.6, 1.5, 0.60, 20)), lost)
    assert result["verdict"] == "mixed" and result["headline"]["key"] == "evaluation.headline.mixed"
    assert result["signals"]["forgetting"] != "little"


def test_facts_that_do_not_carry_over_to_the_users_own_questions_are_named_as_theirs():
    """Taught facts learned (5 % → 95 %), but of the user's own test questions only 10 % → 12 % right: not
    "improved", and every line about those questions names them, in both languages."""
    from easytune.evaluation.verdict import verdict_text

    mine = bucket(side(0.1, 4.6, 0.10, 40), side(0.3, 2.5, 0.12, 40), "questions")
    mine["dataset"] = "asked-my-way"
    mine["base"]["probe"], mine["tuned"]["probe"] = 0.5, 0.7
    result = judged(bucket(side(0.1, 4.3, 0.05, 20), side(0.9, 0.3, 0.95, 20), "train_file"), mine, GENERAL_KEPT)
    assert result["verdict"] == "mixed" and result["headline"]["key"] == "evaluation.headline.mixed_memorised"
    en, zh = verdict_text(result, "en"), verdict_text(result, "zh")
    assert "Facts, on your test questions (asked-my-way): 12% of answers right (base 10%)" in en
    assert "On your test questions (asked-my-way, 20)" in en
    assert "on your test questions (asked-my-way): 70% of questions" in en
    assert "你的测试问题 asked-my-way" in zh and "unseen" not in zh and "questions" not in zh


def test_facts_that_carry_over_only_in_part_are_said_to():
    """100 % right as taught, 26 % asked in other words (base 0 %): a clear gain on new questions, so it may
    read "improved", but the user hears how far apart the two are and what to do."""
    from easytune.evaluation.verdict import verdict_text

    mine = bucket(side(0.08, 4.6, 0.0, 38), side(0.35, 2.5, 0.26, 38), "questions")
    mine["dataset"] = "asked_otherwise"
    result = judged(bucket(side(0.14, 4.3, 0.03, 31), side(0.99, 0.3, 1.0, 31), "train_file"), mine, GENERAL_KEPT)
    en, zh = verdict_text(result, "en"), verdict_text(result, "zh")
    assert "only in part: 100% right on the questions it was taught, 26% on questions in other words" in en
    assert "the several ways your users would" in en and "只部分迁移" in zh
    mine["tuned"] = side(0.6, 1.5, 0.7, 38)  # 70 %: more than half as many as taught
    carried = judged(bucket(side(0.14, 4.3, 0.03, 31), side(0.99, 0.3, 1.0, 31), "train_file"), mine, GENERAL_KEPT)
    assert "only in part" not in verdict_text(carried, "en")
