"""A base model that does not read the language of the user's questions is named as the cause: taught Chinese
facts, SmolLM2-135M repeats 32-33 of 40 answers and gets 2-4 of 40 asked in other words, and it answers none
of the Chinese general questions while it answers half of the English ones. The verdict says so and what to do,
from the answers judged per language (no model here: the judged answers are written by hand)."""

from easytune.evaluation.service import by_language
from easytune.i18n import t

ZH_QUESTIONS = [f"第{i}个问题：退货期限是多久？" for i in range(10)]
EN_QUESTIONS = [f"What is the capital of country number {i}?" for i in range(10)]


def general(zh_right: int, en_right: int) -> dict:
    base = [i < zh_right for i in range(10)] + [i < en_right for i in range(10)]
    return {"rows": 20, "source": "gatekeeper", "missing": None, "base": {"rouge_l": 0.3, "loss": 2.0},
            "tuned": {"rouge_l": 0.3, "loss": 2.05}, "languages": by_language(ZH_QUESTIONS + EN_QUESTIONS, base, base)}


def asked(questions: list[str]) -> dict:
    right = [True] * len(questions)
    return {"rows": len(questions), "source": "holdout", "missing": None,
            "base": {"rouge_l": 0.05, "loss": 4.0}, "tuned": {"rouge_l": 0.6, "loss": 1.0},
            "languages": by_language(questions, [False] * len(questions), right)}


def judged(seen: dict, gatekeeper: dict) -> dict:
    from easytune.evaluation.config import evaluation_config
    from easytune.evaluation.verdict import judge

    unseen = {"rows": 0, "source": None, "missing": "evaluation.missing.unseen"}
    return judge({"seen": seen, "unseen": unseen, "gatekeeper": gatekeeper},
                 {"cf_score": 0.01, "cf_pct": 1.0, "cf_level": None}, evaluation_config()["verdict"])


def test_answers_are_counted_right_per_language_of_their_question():
    counted = by_language(["退货期限是多久？", "What is the capital of France?", "Who wrote Hamlet?"],
                          [False, True, None], [True, True, False])
    assert counted["zh"] == {"rows": 1, "base": 0.0, "tuned": 1.0, "judged": 1}
    assert counted["en"] == {"rows": 2, "base": 1.0, "tuned": 0.5, "judged": 1}  # an answer without facts: not judged


def test_chinese_questions_on_a_model_that_reads_no_chinese_are_told_to_start_from_one_that_does():
    result = judged(asked(ZH_QUESTIONS), general(zh_right=0, en_right=5))
    assert result["signals"]["unread_language"] == "zh"
    point = next(p for p in result["points"] if p["key"] == "evaluation.point.unread_zh")
    assert point["params"] == {"base": 0, "other": 50}
    assert "evaluation.next.model_reads_zh" in {p["key"] for p in result["next"]}
    assert "Chinese" in t(point["key"], "en", **point["params"]) and "中文" in t(point["key"], "zh", **point["params"])


def test_no_such_advice_where_the_model_reads_the_language_or_is_weak_in_both_or_the_questions_are_english():
    for seen, gatekeeper in ((asked(ZH_QUESTIONS), general(zh_right=4, en_right=5)),  # it reads some Chinese
                             (asked(ZH_QUESTIONS), general(zh_right=0, en_right=1)),  # it knows little at all
                             (asked(EN_QUESTIONS), general(zh_right=0, en_right=5))):  # English questions
        result = judged(seen, gatekeeper)
        assert result["signals"]["unread_language"] is None
        assert not [p for p in result["points"] + result["next"] if "unread" in p["key"] or "reads" in p["key"]]


def test_a_result_stored_before_languages_were_counted_is_judged_as_before():
    seen, gatekeeper = asked(ZH_QUESTIONS), general(zh_right=0, en_right=5)
    del seen["languages"], gatekeeper["languages"]
    assert judged(seen, gatekeeper)["signals"]["unread_language"] is None
