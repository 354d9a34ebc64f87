"""Chat feedback becomes training data: 👍 answers as they were, 👎 answers with the correction written for them."""

import json

import pytest

from easytune.datasets import resolve_dataset
from easytune.i18n import UserError
from easytune.settings import load_settings
from support import cli, cli_json

WRONG = "我们不支持退货。"
FIXED = "收到商品7天内可以申请无理由退货，在订单页点击“申请售后”即可。"


def test_feedback_round_trip_to_a_dataset_through_the_cli(home, tmp_path):
    cli_json("feedback", "add", "job-1", "--prompt", "可以退货吗？", "--answer", WRONG, "--rating", "down",
             "--correction", FIXED, "--system", "你是星河小铺的客服。", home=home)
    cli_json("feedback", "add", "job-1", "--prompt", "Do you ship abroad?", "--answer", "Yes, to 20 countries.",
             "--rating", "up", home=home)
    cli_json("feedback", "add", "job-1", "--prompt", "几点发货？", "--answer", "不知道", "--rating", "down", home=home)
    listed = cli_json("feedback", "list", home=home)
    assert [r["rating"] for r in listed] == [-1, 1, -1] and listed[2]["correction"] == FIXED

    made = cli_json("feedback", "to-dataset", "--name", "shop-fixes", home=home)
    assert (made["rows"], made["corrected"], made["approved"]) == (2, 1, 1)
    shown = cli_json("data", "show", "shop-fixes", home=home)
    assert shown["dataset"]["rows"] == 2 and shown["dataset"]["kind"] == "sft"
    assert [d["name"] for d in cli_json("data", "list", home=home)] == ["shop-fixes"]
    out = tmp_path / "fixes.jsonl"
    cli("data", "export", "shop-fixes", "--out", str(out), home=home)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    corrected = next(r for r in rows if r["messages"][-1]["content"] == FIXED)
    assert [m["role"] for m in corrected["messages"]] == ["system", "user", "assistant"]
    assert WRONG not in out.read_text(encoding="utf-8") and "不知道" not in out.read_text(encoding="utf-8")
    # the next run finds it by name, as it finds any imported dataset
    resolved = resolve_dataset(load_settings(), "shop-fixes")
    assert resolved.kind == "sft" and resolved.train_file.is_file()
    # the same feedback again is recognised, not imported twice
    again = cli_json("feedback", "to-dataset", home=home)
    assert again["duplicate_of"] == made["dataset"]["id"]


def test_the_latest_verdict_on_a_question_wins(settings):
    from easytune import feedback

    feedback.record_feedback(settings, "m", "运费多少？", "10元", "up")
    feedback.record_feedback(settings, "m", "运费多少？", "10元", -1, correction="满99元包邮，不满收8元。")
    feedback.record_feedback(settings, "m", "运费多少？", "满99元包邮，不满收8元。", +1)
    rows = feedback.training_rows(feedback.list_feedback(settings))
    assert [(c["messages"][-1]["content"], is_fix) for c, is_fix in rows] == [("满99元包邮，不满收8元。", False)]
    assert feedback.list_feedback(settings, target="other") == []


def test_nothing_usable_and_bad_ratings_are_refused_clearly(settings, home):
    from easytune import feedback

    with pytest.raises(UserError) as refused:
        feedback.feedback_to_dataset(settings)
    assert refused.value.key == "feedback.error.nothing_usable"
    feedback.record_feedback(settings, "m", "几点发货？", "不知道", "down")
    with pytest.raises(UserError) as refused:
        feedback.feedback_to_dataset(settings)
    assert "1 👎" in refused.value.message("en") and "1 条 👎" in refused.value.message("zh")
    for bad in ("sideways", 0, 2, True):
        with pytest.raises(UserError) as refused:
            feedback.record_feedback(settings, "m", "q", "a", bad)
        assert refused.value.key == "feedback.error.rating"
    with pytest.raises(UserError):
        feedback.record_feedback(settings, "m", "  ", "a", "up")
    result = cli("feedback", "to-dataset", "--json", home=home, check=False, lang="zh")
    assert result.returncode == 2 and json.loads(result.stdout)["error"] == "feedback.error.nothing_usable"
    assert "正确答案" in result.stderr


def test_every_rating_teaches_as_labelled_answers_and_kto_moves_them_the_right_way(home, tmp_path):
    """The labelled feedback dataset keeps the 👎 answers as bad examples (with their corrections as good
    ones), the planner trains it with KTO, and after training the model prefers the good answers over the
    bad ones it was told about: the loss falls from one half and the reward margin turns positive."""
    from support import write_plan

    rated = [("可以退货吗？", WRONG, "down", FIXED), ("Do you ship abroad?", "Yes, to 20 countries.", "up", None),
             ("几点发货？", "不知道", "down", None), ("运费多少？", "满99元包邮，否则8元。", "up", None),
             ("怎么联系客服？", "自己想办法。", "down", "请拨打客服热线 400-820-1234。"),
             ("发什么快递？", "默认中通，加12元可发顺丰。", "up", None)]
    for prompt, answer, rating, correction in rated:
        cli_json("feedback", "add", "job-1", "--prompt", prompt, "--answer", answer, "--rating", rating,
                 *(["--correction", correction] if correction else []), home=home)
    made = cli_json("feedback", "to-dataset", "--labelled", "--name", "rated", home=home)
    assert (made["rows"], made["good"], made["bad"]) == (8, 5, 3)
    assert made["dataset"]["kind"] == "kto"
    plan = write_plan(tmp_path / "kto.yaml", dataset="rated", max_steps=12, eval_every=6, retention_ratio=0.0,
                      max_seq_len=128, batch_size=4, learning_rate=0.002, val_ratio=0.0)
    job = cli_json("train", "--config", str(plan), home=home)
    assert job["state"] == "COMPLETED", job
    from pathlib import Path

    events = [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    assert steps[0]["loss"] == pytest.approx(0.5, abs=1e-3) and steps[-1]["loss"] < 0.45
    margins = [e["reward_margin"] for e in steps[-4:] if "reward_margin" in e]  # batches with good and bad
    assert margins and sum(margins) / len(margins) > 0.1


def test_labelled_feedback_needs_good_and_bad_answers(settings):
    from easytune.feedback import feedback_to_dataset, record_feedback

    record_feedback(settings, "job-1", "可以退货吗？", "可以。", "up")
    with pytest.raises(UserError) as refused:
        feedback_to_dataset(settings, labelled=True)
    assert refused.value.key == "feedback.error.nothing_labelled" and refused.value.params == {"up": 1, "down": 0}
