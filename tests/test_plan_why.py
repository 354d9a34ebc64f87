"""Every plan value's reason expands to a longer explanation, in both languages, through every door: the
planner's report (Python and `easytune plan --json`) and step ②'s list."""

import re

import pytest

from support import cli_json


def proposal():
    from easytune.plan.planner import propose

    return propose(model="easytune-tiny", dataset="demo:shop_faq_zh", task="chat", level="L2",
                   overrides={"learning_rate": 0.05})


def sentences(text: str, lang: str) -> int:
    return text.count("。") if lang == "zh" else len(re.findall(r"[.!?](?:\s|$)", text))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_setting_has_a_longer_explanation_than_its_reason(lang):
    from easytune.i18n import t
    from easytune.plan.schema import plan_fields

    reasons = proposal().to_dict(lang)["reasons"]
    assert list(reasons) == [f.name for f in plan_fields()]
    for name, entry in reasons.items():
        why = entry["why"]
        assert why == t(f"planner.why.{name}", lang), name
        assert 2 <= sentences(why, lang) <= 4, (name, why)
        assert why != entry["text"] and len(why) > len(entry["text"]), name  # longer than the one-line reason
        assert why != t(f"plan.field.{name}", lang), name  # and not the field's one-line help again
    if lang == "zh":  # written for Chinese readers, not English left untranslated
        assert all(re.search("[\u4e00-\u9fff]", entry["why"]) for entry in reasons.values())


def test_step_two_list_expands_each_reason_to_its_explanation():
    from html import escape

    from easytune.ui.wizard import plan_summary

    chosen = proposal()
    report = chosen.to_dict("en")
    html = plan_summary(chosen, "en")
    shown = [name for name in report["reasons"] if name not in ("model", "dataset")]
    assert html.count("<details>") == len(shown)
    for name in shown:
        entry = report["reasons"][name]
        assert f"{escape(entry['text'])}</summary><p>{escape(entry['why'])}</p>" in html, name
    assert re.search(r"<strong>Learning rate</strong> ✎ = <code>0\.05</code>", html)  # the user's value, marked


def test_plan_json_carries_the_explanation(home):
    from easytune.i18n import t

    report = cli_json("plan", "--data", "demo:shop_faq_zh", "--task", "chat", "--level", "L2", home=home,
                      lang="zh")
    assert all(entry["why"] == t(f"planner.why.{name}", "zh") for name, entry in report["reasons"].items())
