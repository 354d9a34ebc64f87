"""The verdict's headline says which case it is, on hand-made bucket numbers (no model): a loss that fell
while the answers stayed off the references is "not yet", never "learned at a cost" or "improved"."""

import pytest

from easytune.i18n import t

NO_UNSEEN = {"rows": 0, "source": None, "missing": "evaluation.missing.unseen"}


def bucket(base_match, tuned_match, base_loss, tuned_loss):
    return {"rows": 8, "source": "holdout", "missing": None,
            "base": {"rouge_l": base_match, "loss": base_loss}, "tuned": {"rouge_l": tuned_match, "loss": tuned_loss}}


def text_bucket(base_loss, tuned_loss):
    return {"rows": 8, "source": "holdout", "missing": None,
            "base": {"rouge_l": None, "loss": base_loss}, "tuned": {"rouge_l": None, "loss": tuned_loss}}


GENERAL_KEPT = bucket(0.40, 0.40, 2.0, 2.06)


def judged(seen, unseen=NO_UNSEEN, general=GENERAL_KEPT):
    from easytune.evaluation.config import evaluation_config
    from easytune.evaluation.verdict import judge

    return judge({"seen": seen, "unseen": unseen, "gatekeeper": general},
                 {"cf_score": 0.01, "cf_pct": 1.0, "cf_level": None}, evaluation_config()["verdict"])


def keys(result, part):
    return {p["key"].removeprefix("evaluation.") for p in result[part]}


@pytest.mark.parametrize("match_gain", [0.002, 0.05, 0.09])
def test_loss_fell_but_answers_do_not_match_yet_is_not_yet(match_gain):
    """4% → 4%: the loss halved, yet the answers are not the data's answers."""
    from easytune.evaluation.verdict import verdict_text

    result = judged(bucket(0.041, 0.041 + match_gain, 9.0, 4.5), unseen=bucket(0.05, 0.05 + match_gain, 8.0, 5.0))
    assert result["verdict"] == "no_gain"
    assert result["headline"]["key"] == "evaluation.headline.not_yet"
    assert result["signals"]["not_yet"] and not result["signals"]["learned"]
    assert "next.not_yet" in keys(result, "next") and "next.train_more" not in keys(result, "next")
    en, zh = verdict_text(result, "en"), verdict_text(result, "zh")
    assert en.startswith("Not there yet") and "learned your data" not in en and "Tuning helped" not in en
    assert "presets/demo.yaml" in en and zh.startswith("还没学会") and "presets/demo.yaml" in zh


def test_nothing_moved_is_plain_no_gain():
    result = judged(bucket(0.12, 0.13, 3.0, 2.9))
    assert result["verdict"] == "no_gain" and result["headline"]["key"] == "evaluation.headline.no_gain"
    assert keys(result, "next") >= {"next.train_more"} and not result["signals"]["not_yet"]


def test_improved_only_when_the_answers_match_clearly_better():
    from easytune.evaluation.config import evaluation_config

    needed = evaluation_config()["verdict"]["learned_match"]
    just_below = judged(bucket(0.20, 0.20 + needed - 0.01, 3.0, 1.0), unseen=bucket(0.20, 0.30, 3.0, 1.5))
    at_threshold = judged(bucket(0.20, 0.20 + needed, 3.0, 1.0), unseen=bucket(0.20, 0.30, 3.0, 1.5))
    assert just_below["verdict"] == "no_gain" and just_below["headline"]["key"] == "evaluation.headline.not_yet"
    assert at_threshold["verdict"] == "improved" and at_threshold["headline"]["key"] == "evaluation.headline.improved"
    assert "next.safety_export" in keys(at_threshold, "next")


def test_raw_text_has_no_answers_so_its_falling_loss_is_what_improved():
    result = judged(text_bucket(3.0, 2.0))
    assert result["verdict"] == "improved" and result["headline"]["key"] == "evaluation.headline.improved_text"
    assert judged(text_bucket(3.0, 2.9))["headline"]["key"] == "evaluation.headline.no_gain"


def test_mixed_names_its_cost():
    learned = bucket(0.12, 0.78, 3.0, 0.5)
    forgot = judged(learned, unseen=bucket(0.10, 0.41, 3.0, 2.0), general=bucket(0.40, 0.05, 2.0, 3.5))
    memorised = judged(learned, unseen=bucket(0.10, 0.10, 3.0, 3.1))
    assert forgot["verdict"] == memorised["verdict"] == "mixed"
    assert forgot["headline"]["key"] == "evaluation.headline.mixed" and "next.retention" in keys(forgot, "next")
    assert memorised["headline"]["key"] == "evaluation.headline.mixed_memorised"
    assert "next.more_variety" in keys(memorised, "next")
    assert "forgot" in t(forgot["headline"]["key"], "en") and "forgot" not in t(memorised["headline"]["key"], "en")


def test_falling_loss_with_answers_further_off_is_still_harmful():
    result = judged(bucket(0.50, 0.40, 3.0, 2.0))
    assert result["verdict"] == "harmful" and result["headline"]["key"] == "evaluation.headline.harmful"


def test_every_headline_and_next_step_reads_in_both_languages():
    from easytune.evaluation.verdict import verdict_text

    cases = [judged(bucket(0.041, 0.043, 9.0, 4.5)), judged(bucket(0.12, 0.13, 3.0, 2.9)),
             judged(bucket(0.20, 0.40, 3.0, 1.0)), judged(text_bucket(3.0, 2.0)),
             judged(bucket(0.12, 0.78, 3.0, 0.5), unseen=bucket(0.10, 0.10, 3.0, 3.1)),
             judged(bucket(0.12, 0.78, 3.0, 0.5), general=bucket(0.40, 0.05, 2.0, 3.5)),
             judged(bucket(0.50, 0.30, 1.0, 1.5))]
    assert {c["verdict"] for c in cases} == {"improved", "mixed", "no_gain", "harmful"}
    assert len({c["headline"]["key"] for c in cases}) == 7
    for case in cases:
        assert verdict_text(case, "zh") != verdict_text(case, "en")
