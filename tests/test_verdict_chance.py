"""A rise of the facts right counts only where it is hardly chance. One answer more of five is "20 points" and
a coin's toss; on the real model the facts benchmark's run gets 24 more of 38 questions asked in other words,
which no coin does. Buckets are written by hand here: each question judged right or wrong for both models."""

from easytune.evaluation.config import evaluation_config
from easytune.evaluation.facts import changes
from easytune.evaluation.verdict import judge, verdict_text

LIMITS = evaluation_config()["verdict"]


def bucket(base_right: int, tuned_right: int, judged: int, source: str = "holdout") -> dict:
    """A bucket of `judged` questions: the base model right on the first `base_right`, the tuned one on the
    first `tuned_right`."""
    base, tuned = ([i < right for i in range(judged)] for right in (base_right, tuned_right))

    def side(right: int, rouge: float, loss: float) -> dict:
        return {"rouge_l": rouge, "loss": loss, "facts": right / judged, "facts_judged": judged, "probe": None}

    return {"rows": judged, "source": source, "missing": None, "base": side(base_right, 0.1, 4.0),
            "tuned": side(tuned_right, 0.1 + 0.5 * tuned_right / judged, 4.0 - 2.0 * tuned_right / judged),
            "facts_change": changes(base, tuned), **({"dataset": "asked-otherwise"} if source == "questions" else {})}


def judged(seen: dict, unseen: dict) -> dict:
    general = bucket(50, 50, 100, source="gatekeeper")
    return judge({"seen": seen, "unseen": unseen, "gatekeeper": general},
                 {"cf_score": 0.05, "cf_pct": 2.0, "cf_level": None}, LIMITS)


def keys(steps: list[dict]) -> set[str]:
    return {step["key"] for step in steps}


def test_questions_turned_right_and_turned_wrong_are_counted_where_both_answers_were_judged():
    assert changes([False, True, True, None, False], [True, True, False, None, False]) == {"gained": 1, "lost": 1}


def test_one_answer_more_of_five_is_not_called_learning_and_the_user_is_told_to_ask_more():
    result = judged(bucket(0, 1, 5), bucket(0, 6, 20))
    assert result["verdict"] == "no_gain" and result["signals"]["by_chance"] == ["seen"]
    point = next(p for p in result["points"] if p["key"] == "evaluation.point.by_chance_seen")
    assert point["params"] == {"judged": 5, "gained": 1, "lost": 0}
    assert "evaluation.next.more_questions" in keys(result["next"])
    assert "evaluation.next.train_more" not in keys(result["next"])  # more training is not what it needs
    for lang, words in (("en", "too few to tell"), ("zh", "分不清")):
        assert words in verdict_text(result, lang)
    # the same figures stored before the counts were kept: judged as they were then
    old = bucket(0, 1, 5)
    del old["facts_change"]
    assert judged(old, bucket(0, 6, 20))["signals"]["learned"] is True


def test_a_rise_on_a_few_test_questions_is_not_called_carrying_over():
    result = judged(bucket(1, 30, 30), bucket(1, 3, 10, source="questions"))  # 2 more right of 10: 20 points
    assert result["signals"]["transfers"] is None and result["signals"]["by_chance"] == ["unseen"]
    assert "evaluation.point.by_chance_questions" in keys(result["points"])
    assert "evaluation.point.partly_carried" not in keys(result["points"])
    assert "evaluation.next.more_questions" in keys(result["next"])
    assert "evaluation.next.hold_out" not in keys(result["next"])  # there are test questions: too few of them
    assert result["verdict"] == "improved"  # what it was taught, it learned beyond doubt


def test_the_benchmarks_rise_on_questions_asked_in_other_words_is_far_beyond_chance():
    result = judged(bucket(1, 31, 31), bucket(0, 24, 38, source="questions"))
    assert result["verdict"] == "improved"
    assert result["signals"]["transfers"] is True and result["signals"]["by_chance"] == []
    assert not [p for p in result["points"] + result["next"] if "chance" in p["key"] or "more_questions" in p["key"]]


def test_a_rise_as_likely_as_the_fall_beside_it_is_chance_whatever_the_count():
    # 12 turned right and 6 turned wrong of 40: 15 points more, no clearer than a coin (p ≈ 0.12)
    seen = bucket(1, 31, 31)
    unseen = bucket(0, 6, 40)
    unseen["base"]["facts"], unseen["tuned"]["facts"] = 6 / 40, 12 / 40
    unseen["facts_change"] = {"gained": 12, "lost": 6}
    assert judged(seen, unseen)["signals"]["by_chance"] == ["unseen"]
    unseen["facts_change"] = {"gained": 12, "lost": 0}  # the same 15 points with nothing lost
    assert judged(seen, unseen)["signals"]["by_chance"] == []
