"""The questions it answered wrong, taught: `easytune jobs next JOB --missed` trains the next version on what the
job trained on plus the test questions its last evaluation judged wrong, with their right answers; the next
version then answers them, and an evaluation no longer counts them, nor any trained question, as new."""

import json
import sqlite3
from pathlib import Path

import pytest

from support import ROOT, cli, cli_json

pytestmark = pytest.mark.slow

# facts no training row holds (a card's name and number, a town, a time): the demo model cannot know them
NEW = [("你们的会员卡叫什么名字？", "星河小铺的会员卡叫“银河卡”，卡号以XH-7731开头。"),
       ("你们的仓库在哪个城市？", "我们的仓库在嘉兴，仓库编号W-2048。"),
       ("在线客服晚上几点下班？", "在线客服每天21:47下班。")]


def rows(pairs) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
                              ensure_ascii=False) + "\n" for q, a in pairs)


@pytest.fixture
def missed_home(demo_job, tmp_path) -> Path:
    """A private copy of the demo home's database, without the evaluations other tests stored: the demo job's folder
    is only read, new jobs are made here."""
    home = tmp_path / "home"
    home.mkdir()
    with sqlite3.connect(demo_job[0] / "easytune.db") as source, sqlite3.connect(home / "easytune.db") as copy:
        source.backup(copy)
        copy.execute("delete from evaluations")
    return home


def test_the_questions_it_missed_are_taught_to_the_next_version_and_no_longer_count_as_new(
        demo_job, missed_home, tmp_path):
    from easytune.evaluation.facts import is_right

    job = demo_job[1]["id"]
    trained = [json.loads(line)["messages"] for line in (ROOT / "assets/demo/shop_faq_zh.jsonl").open()][:2]
    questions = tmp_path / "users-words.jsonl"
    questions.write_text(rows([(m[0]["content"], m[1]["content"]) for m in trained] + NEW), encoding="utf-8")

    unknown = cli("jobs", "next", job, "--missed", "--json", home=missed_home, check=False)  # nothing judged yet
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"] == "missed.error.not_evaluated"
    assert f"easytune eval {job} --questions" in json.loads(unknown.stdout)["message"]

    first = cli_json("eval", job, "--questions", str(questions), "--limit", "8", home=missed_home)
    unseen = first["buckets"]["unseen"]
    # the two questions it trained on are not new: left out, and said
    assert (unseen["rows"], unseen["left_out"]) == (3, 2), unseen
    assert "2 of your test questions (users-words) are in the data this model was trained on" in first["text"]
    assert {s["question"] for s in unseen["samples"] if s["tuned_right"] is False} == {q for q, _ in NEW}

    second = cli_json("jobs", "next", job, "--missed", "--follow", home=missed_home)
    assert second["state"] == "COMPLETED", second
    assert second["missed"] == {"dataset": f"missed-{job}", "rows": 56 + 3, "questions": 3,
                                "evaluation": cli_json("evals", "list", "--job", job, home=missed_home)[0]["id"]}
    made = Path(json.loads((Path(second["job_dir"]) / "job.json").read_text(encoding="utf-8"))["train_file"])
    taught = [json.loads(line)["messages"] for line in made.read_text(encoding="utf-8").splitlines()]
    assert [(m[0]["content"], m[1]["content"]) for m in taught[-3:]] == NEW  # after every row it trained on
    # version 2 now answers them with their facts
    from easytune import chat
    from easytune.settings import load_settings

    settings = load_settings(home=missed_home)
    said = chat.answer_together([chat.prepare_answer(settings, second["id"], question, temperature=0.0,
                                                     max_new_tokens=64) for question, _ in NEW])
    for (question, answer), reply in zip(NEW, said):
        assert is_right(reply.text, answer, question), (question, reply.text)

    # every test question is trained on now: none can tell how it does on new ones, and it says so
    refused = cli("eval", second["id"], "--questions", str(questions), "--json", home=missed_home, check=False,
                  lang="zh")
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "evaluation.error.questions_trained"
    assert "请另写测试问题" in json.loads(refused.stdout)["message"]
    again = cli("jobs", "next", job, "--missed", "--data", "demo:shop_faq_zh", home=missed_home, check=False)
    assert again.returncode == 2 and "--missed" in again.stderr


def test_the_facts_benchmark_prints_both_versions_set_by_set():
    from easytune.evaluation.bench_facts import missed_report

    def answers(right: int, total: int) -> list[dict]:
        return [{"right": i < right} for i in range(total)]

    v1 = {"taught": {"tuned": answers(40, 40)}, "general": {"tuned": answers(27, 50)},
          # asked otherwise: each fact's first rewording, then its second: 8 of the first right, 10 of the second
          "asked_otherwise": {"tuned": [a for pair in zip(answers(8, 20), answers(10, 20)) for a in pair]}}
    v2 = {"taught": answers(37, 40), "first": answers(17, 20), "second": answers(14, 20), "general": answers(24, 50)}
    lines = missed_report({"sets": v1, "missed": {"missed": 12, "rows": 47, "state": "COMPLETED", "train_s": 247.0,
                                                  "sets": v2}})
    assert lines[0].startswith("teach what it missed (jobs next --missed): 12 of its test questions")
    assert "47 rows, version 2 COMPLETED in 247 s" in lines[0]
    figures = [line.split()[-4:] for line in lines[1:]]
    assert figures == [["v1", "40/40", "v2", "37/40"], ["v1", "8/20", "v2", "17/20"], ["v1", "10/20", "v2", "14/20"],
                       ["v1", "27/50", "v2", "24/50"]]
