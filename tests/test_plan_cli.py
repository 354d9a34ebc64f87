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


def test_a_demo_is_planned_from_its_rows_as_an_upload_of_it_would_be(home):
    """A demo's plan reads the same report an import of its file writes: lengths sized to its rows, not a guess,
    and question copies only for questions written with spaces."""
    english = cli_json("plan", "--data", "demo:shop_faq_en", "--task", "domain", "--level", "L2", home=home)
    assert english["reasons"]["max_seq_len"]["key"] != "planner.reason.seq_unknown"
    assert english["plan"]["max_seq_len"] <= 128, english["plan"]["max_seq_len"]
    assert english["plan"]["question_variants"] > 0, english["reasons"]["question_variants"]
    assert any(w["key"] == "planner.warn.one_way_asked" for w in english["warnings"]), english["warnings"]
    chinese = cli_json("plan", "--data", "demo:shop_faq_zh", "--task", "domain", "--level", "L2", home=home)
    assert chinese["plan"]["question_variants"] == 0
    assert chinese["reasons"]["question_variants"]["key"] == "planner.reason.question_variants_unspaced"
    assert cli_json("data", "list", home=home) == []  # planning imports nothing in the user's name
