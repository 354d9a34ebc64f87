"""A plan as a user reads it: values in their language, and no setting explained as if it mattered when it
does not apply to this run."""

from __future__ import annotations

import re

import pytest

from easytune.plan.service import make_plan
from easytune.ui.wizard import demo_plan, plan_summary, shown_value


@pytest.fixture
def proposal(settings):
    plan = demo_plan()
    return make_plan(settings, model=plan.model, dataset=plan.dataset, task="chat", level="L2")


def test_the_chinese_summary_shows_values_in_chinese(proposal):
    summary = plan_summary(proposal, "zh")
    shown = re.findall(r"<code>([^<]*)</code>", summary)
    assert shown and not {"True", "False", "lora", "all_linear", "cosine", "auto", "sft"} & set(shown)
    assert "所有线性层" in shown and "余弦（逐渐放缓）" in shown
    assert shown_value("learning_rate", 5e-3, "zh") == "0.005"  # numbers stay as they are


def test_settings_that_do_not_apply_say_so(proposal, settings):
    reasons = proposal.to_dict("en")["reasons"]
    assert reasons["dpo_beta"]["text"].startswith("Not used")
    assert not any("the usual default" in entry["text"] for entry in reasons.values())
