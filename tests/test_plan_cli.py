"""The planner through the CLI: a value the user sets is kept, marked and checked; the plan it writes trains."""

import pytest

from support import cli, cli_json

pytestmark = pytest.mark.slow


def test_a_user_value_is_kept_marked_and_warned_about_when_out_of_range(home):
    report = cli_json("plan", "--data", "demo:shop_faq_en", "--task", "chat", "--level", "L1",
                      "--set", "learning_rate=0.09", home=home)
    assert report["plan"]["learning_rate"] == 0.09
    assert report["reasons"]["learning_rate"]["key"] == "planner.reason.user_set"
    assert "learning_rate" in report["user_set"]
    assert any(w.get("field") == "learning_rate" for w in report["warnings"]), report["warnings"]


def test_the_plan_the_planner_writes_trains_the_built_in_model(home, tmp_path):
    plan = tmp_path / "plan.yaml"
    cli("plan", "--data", "demo:identity_en", "--task", "style", "--level", "L1", "--out", str(plan), home=home)
    job = cli_json("train", "--config", str(plan), home=home)
    assert job["state"] == "COMPLETED", job
    assert job["final_loss"] < job["first_loss"]
