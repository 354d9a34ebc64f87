"""Blind evaluation: metrics on known pairs, the verdict rules on fixed numbers, and real evaluations of
the shared demo job and of a run wrecked by a destructive learning rate.

The evaluation home is a private copy of the demo home's database (the demo job's folder is only
read), so the rows written here, and the second job trained here, stay here."""

import json
import sqlite3
from pathlib import Path

import pytest

from support import ROOT, cli, cli_json, mlflow_run, tensorboard_scalars, write_plan

VERDICTS = {"improved", "mixed", "no_gain", "harmful"}
LIMIT = "8"  # questions per bucket: enough for differences this large, and quick


# ---- metrics ---------------------------------------------------------------------------------------

def test_tokenizer_splits_cjk_characters_and_keeps_latin_words_and_numbers_whole():
    from easytune.evaluation.metrics import tokenize

    assert tokenize("星河小铺满99元包邮；Free shipping over $49, can’t wait!") == [
        "星", "河", "小", "铺", "满", "99", "元", "包", "邮", "free", "shipping", "over", "49", "can't", "wait"]
    assert tokenize("16:00前付款。") == ["16", "00", "前", "付", "款"]
    assert tokenize("，。！？…") == []


def test_rouge_l_and_bleu_on_known_english_pair():
    from easytune.evaluation.metrics import rouge_l, sentence_bleu

    candidate, reference = "The cat sat on the mat.", "the cat is on the mat"
    assert rouge_l(candidate, reference) == pytest.approx(5 / 6)  # LCS 5 of 6 tokens on both sides
    # clipped precisions 5/6, then add-one smoothed (3+1)/(5+1), (1+1)/(4+1), (0+1)/(3+1); equal lengths
    assert sentence_bleu(candidate, reference) == pytest.approx((5 / 6 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    assert rouge_l(reference, reference) == 1.0 and sentence_bleu(reference, reference) == pytest.approx(1.0)
    assert rouge_l("completely different words", reference) == 0.0
    assert sentence_bleu("completely different words", reference) == 0.0


def test_rouge_l_and_bleu_on_known_chinese_pair():
    import math

    from easytune.evaluation.metrics import bleu, rouge_l, sentence_bleu

    candidate, reference = "满99元包邮", "全场满99元包邮。"
    # 5 tokens against 7: precision 1, recall 5/7, so F1 = 10/12
    assert rouge_l(candidate, reference) == pytest.approx(10 / 12)
    # every n-gram of the candidate is in the reference: BLEU is the brevity penalty exp(1 - 7/5)
    assert sentence_bleu(candidate, reference) == pytest.approx(math.exp(1 - 7 / 5))
    # corpus BLEU pools counts: a perfect answer beside a wrong one scores between the two
    assert 0 < bleu([reference, "退货"], [reference, "不支持"]) < 1


def test_the_longest_common_subsequence_is_the_textbook_one_on_random_token_lists():
    """ROUGE-L's subsequence is counted on an integer's bits; the textbook table must give the same length,
    on short alphabets (many matches) and long ones, empty lists and repeats."""
    import random

    from easytune.evaluation.metrics import _lcs

    def textbook(a, b):
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
        return table[-1][-1]

    rng = random.Random(7)
    for _ in range(2000):
        alphabet = rng.choice(["ab", "abcdef", "星河小铺满元包邮", [str(n) for n in range(60)]])
        a, b = ([rng.choice(alphabet) for _ in range(rng.randint(0, 70))] for _ in range(2))
        assert _lcs(a, b) == textbook(a, b), (a, b)


def test_exact_match_only_for_short_label_answers():
    from easytune.evaluation.metrics import exact_match, looks_like_labels

    assert exact_match("正面。", "正面") and exact_match("Refund", "refund!") and not exact_match("负面", "正面")
    assert looks_like_labels(["正面", "负面", "中性"], 16, 0.2)
    faq = [json.loads(line)["messages"][1]["content"] for line in open(ROOT / "assets/demo/shop_faq_zh.jsonl")]
    assert not looks_like_labels(faq, 16, 0.2)
    long_labels = ["This message is about billing"] * 30 + ["This message is about shipping"] * 30
    assert looks_like_labels(long_labels, 16, 0.2)  # few distinct answers: a classification-style set


# ---- verdict rules on fixed numbers ------------------------------------------------------------------

def bucket(base_match, tuned_match, base_loss, tuned_loss, source="holdout"):
    return {"rows": 8, "source": source, "missing": None,
            "base": {"rouge_l": base_match, "loss": base_loss}, "tuned": {"rouge_l": tuned_match, "loss": tuned_loss}}


def judged(seen, unseen, general, cf_level=None):
    from easytune.evaluation.config import evaluation_config
    from easytune.evaluation.verdict import judge

    return judge({"seen": seen, "unseen": unseen, "gatekeeper": general},
                 {"cf_score": 0.01, "cf_pct": 1.0, "cf_level": cf_level}, evaluation_config()["verdict"])


@pytest.mark.parametrize(("seen", "unseen", "general", "expected"), [
    (bucket(0.12, 0.78, 3.0, 0.5), bucket(0.10, 0.41, 3.0, 2.0), bucket(0.40, 0.40, 2.0, 2.06), "improved"),
    (bucket(0.12, 0.78, 3.0, 0.5), bucket(0.10, 0.41, 3.0, 2.0), bucket(0.40, 0.05, 2.0, 3.5), "mixed"),
    (bucket(0.12, 0.78, 3.0, 0.5), bucket(0.10, 0.10, 3.0, 3.1), bucket(0.40, 0.40, 2.0, 2.0), "mixed"),
    (bucket(0.12, 0.13, 3.0, 2.9), bucket(0.10, 0.10, 3.0, 3.0), bucket(0.40, 0.40, 2.0, 2.0), "no_gain"),
    # the loss fell a quarter but every answer is wrong, and general knowledge is gone
    (bucket(0.04, 0.00, 9.0, 6.9), bucket(0.06, 0.00, 8.1, 7.1), bucket(0.41, 0.00, 2.1, 7.7), "harmful"),
    (bucket(0.50, 0.30, 1.0, 1.5), bucket(0.10, 0.10, 3.0, 3.0), bucket(0.40, 0.40, 2.0, 2.0), "harmful"),
])
def test_verdict_rules(seen, unseen, general, expected):
    assert judged(seen, unseen, general)["verdict"] == expected


def test_verdict_says_so_when_nothing_was_held_out():
    from easytune.evaluation.verdict import verdict_text

    unseen = {"rows": 0, "source": None, "missing": "evaluation.missing.unseen"}
    result = judged(bucket(0.12, 0.78, 3.0, 0.5), unseen, bucket(0.40, 0.40, 2.0, 2.06))
    assert result["verdict"] == "improved" and result["signals"]["transfers"] is None
    text = verdict_text(result, "en")
    assert "No held-out questions" in text and "78% (base 12%)" in text and "val_ratio" in text
    assert "没有留出的问题" in verdict_text(result, "zh")


def test_training_forgetting_score_counts_even_when_the_gatekeeper_looks_fine():
    result = judged(bucket(0.12, 0.78, 3.0, 0.5), bucket(0.10, 0.41, 3.0, 2.0), bucket(0.40, 0.40, 2.0, 2.0),
                    cf_level="error")
    assert result["verdict"] == "mixed" and result["signals"]["forgetting"] == "severe"


def test_shipped_evaluation_data_loads():
    from easytune.evaluation.buckets import gatekeeper_bucket
    from easytune.evaluation.config import evaluation_config

    cfg = evaluation_config()
    assert set(cfg["verdict"]) >= {"learned_match", "learned_loss_pct", "severe_forgetting_pct"}
    assert cfg["safety"]["flag_drop_points"] > 0 and cfg["rows"]["gatekeeper"] >= 30
    from easytune.evaluation.facts import has_key

    general = gatekeeper_bucket(100).items
    assert len(general) == 100 and all(item.reference and item.messages for item in general)
    assert all(item.key and has_key(item.reference, item.key) for item in general), "every question has its key"
    zh = [item for item in general if any("\u4e00" <= ch <= "\u9fff" for ch in item.reference)]
    assert len(zh) == 50 and (general[0] in zh) != (general[1] in zh)  # interleaved: a small limit asks both
    assert (ROOT / "presets/gatekeeper/README.md").read_text().count("Apache-2.0") == 1


def test_bad_requests_name_the_problem(tmp_path):
    home = tmp_path / "home"
    unknown = cli("eval", "no-such-job", "--json", home=home, check=False)
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"] == "jobs.error.unknown"
    zero = cli("eval", "no-such-job", "--limit", "0", "--json", home=home, check=False, lang="zh")
    assert zero.returncode == 2 and "至少为 1" in json.loads(zero.stdout)["message"]
    assert cli_json("evals", "list", home=home) == []


# ---- real evaluations --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def eval_home(demo_job, tmp_path_factory) -> Path:
    demo_home, _ = demo_job
    home = tmp_path_factory.mktemp("evaluation") / "home"
    home.mkdir()
    with sqlite3.connect(demo_home / "easytune.db") as source, sqlite3.connect(home / "easytune.db") as copy:
        source.backup(copy)
    return home


@pytest.fixture(scope="module")
def demo_eval(demo_job, eval_home) -> dict:
    return cli_json("eval", demo_job[1]["id"], "--limit", LIMIT, home=eval_home)


@pytest.mark.slow
def test_tuned_demo_model_beats_its_base_on_trained_questions(demo_eval):
    seen, unseen, general = (demo_eval["buckets"][name] for name in ("seen", "unseen", "gatekeeper"))
    assert seen["rows"] == 8 and seen["source"] == "train_file"
    assert seen["tuned"]["rouge_l"] > seen["base"]["rouge_l"] + 0.3, seen
    assert seen["tuned"]["loss"] < seen["base"]["loss"] / 2, seen
    assert seen["tuned"]["bleu"] > seen["base"]["bleu"] and seen["tuned"]["ppl"] < seen["base"]["ppl"]
    assert seen["tuned"]["exact_match"] is None  # FAQ answers are sentences, not labels
    # the demo has no validation file: the questions training held out are asked (6 of 62 at val_ratio 0.1)
    assert unseen["source"] == "holdout" and unseen["rows"] == 6
    assert general["rows"] == 8 and general["base"]["loss"] > 0
    assert {s["question"] for s in seen["samples"]}.isdisjoint({s["question"] for s in unseen["samples"]})
    assert demo_eval["verdict"] in VERDICTS and demo_eval["passed"] == int(demo_eval["verdict"] == "improved")
    assert demo_eval["forgetting"]["cf_pct"] is not None  # the training's own forgetting score is carried


@pytest.mark.slow
def test_result_is_stored_listed_and_explained_in_both_languages(demo_job, demo_eval, eval_home):
    from easytune.evaluation.verdict import verdict_text
    from easytune.i18n import t

    job_id = demo_job[1]["id"]
    [row] = [r for r in cli_json("evals", "list", "--job", job_id, home=eval_home) if r["id"] == demo_eval["id"]]
    assert row["kind"] == "quality" and row["passed"] == demo_eval["passed"]
    assert row["result"]["buckets"]["seen"]["tuned"] == demo_eval["buckets"]["seen"]["tuned"]
    assert demo_eval["id"] in {r["id"] for r in cli_json("evals", "list", "--dataset", "demo:shop_faq_zh",
                                                          home=eval_home)}
    assert cli_json("evals", "list", "--kind", "safety", "--job", job_id, home=eval_home) == []
    seen = demo_eval["buckets"]["seen"]
    numbers = f"{round(seen['tuned']['rouge_l'] * 100)}%"
    en, zh = verdict_text(row["result"], "en"), verdict_text(row["result"], "zh")
    assert "On questions it was trained on" in en and numbers in en and "General knowledge" in en
    assert "训练过的问题" in zh and numbers in zh and "通用知识" in zh
    human = cli("evals", "list", "--job", job_id, home=eval_home, lang="zh").stdout
    assert f"{demo_eval['id']}  quality" in human and t(demo_eval["headline"]["key"], "zh") in human


@pytest.mark.slow
def test_destructive_learning_rate_is_judged_harmful(demo_job, demo_eval, eval_home, tmp_path):
    from easytune.evaluation.service import compare_jobs
    from easytune.settings import load_settings

    plan = write_plan(tmp_path / "wreck.yaml", learning_rate=0.1, epochs=2, eval_every=1000,  # 0.1: the top
                      tensorboard=True, mlflow=True)  # (the verdict joins both: see the end)
    job = cli_json("train", "--config", str(plan), home=eval_home)
    assert job["state"] == "COMPLETED", job
    result = cli_json("eval", job["id"], "--limit", LIMIT, home=eval_home)
    general = result["buckets"]["gatekeeper"]
    assert general["tuned"]["loss"] > 1.5 * general["base"]["loss"], general  # it really did forget
    assert result["verdict"] == "harmful" and result["passed"] == 0
    assert result["signals"]["forgetting"] == "severe" and not result["signals"]["learned"]
    assert "next.lower_lr" in {step["key"].removeprefix("evaluation.") for step in result["next"]}
    assert result["text"].startswith("This run did harm")

    # its plan keeps TensorBoard and MLflow: the evaluation's figures and verdict joined both, read by their tools
    _, run = mlflow_run(eval_home / "tracking" / "mlruns")
    assert run.data.tags["easytune.job_id"] == job["id"] and run.data.tags["easytune.verdict"] == "harmful"
    assert run.data.metrics["evaluation/gatekeeper/tuned_loss"] == pytest.approx(general["tuned"]["loss"])
    read = tensorboard_scalars(Path(job["job_dir"]) / "tensorboard")
    assert [value for _, value in read["evaluation/gatekeeper/base_loss"]] == [pytest.approx(general["base"]["loss"])]
    assert len(read["train/loss"]) == len(cli_json("jobs", "metrics", job["id"], home=eval_home)["loss"])

    rows = compare_jobs(load_settings(home=eval_home), "demo:shop_faq_zh")
    by_job = {row["job_id"]: row for row in rows}
    assert {demo_job[1]["id"], job["id"]} <= set(by_job)
    assert by_job[job["id"]]["verdict"] == "harmful" and by_job[job["id"]]["learning_rate"] == 0.1
    assert by_job[demo_job[1]["id"]]["seen_match"] > by_job[job["id"]]["seen_match"]
    assert by_job[job["id"]]["general_loss_pct"] > by_job[demo_job[1]["id"]]["general_loss_pct"]

    # "This run did harm": exporting it is asked first, and the confirmation is written into the card
    refused = cli_json("export", job["id"], "--format", "adapter", home=eval_home, check=False)
    assert refused["error"] == "export.error.harmful"
    out = tmp_path / "anyway"
    cli("export", job["id"], "--format", "adapter", "--confirm-unsafe", "--out", str(out), home=eval_home)
    assert "judged this run harmful and the export was explicitly confirmed" in (out / "README.md").read_text()


def test_the_time_left_follows_the_work_done(monkeypatch):
    from easytune.evaluation import progress

    clock = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    eta = progress.Eta()
    assert eta.text(0, 200, "en") == "0%"  # nothing done: no guess
    clock[0] += 20
    assert eta.text(50, 200, "en") == "25% · about 60 s left"  # 20 s for a quarter: 60 s to go
    assert eta.text(100, 200, "zh") == "50% · 约剩 20 秒"
    clock[0] += 280
    assert eta.text(150, 200, "en") == "75% · about 2 min left"  # 300 s for three quarters: 100 s to go
    assert eta.text(200, 200, "en") == "100%"


@pytest.mark.slow
def test_an_evaluation_reports_its_progress_as_it_goes(demo_job, eval_home):
    import re

    done = cli("eval", demo_job[1]["id"], "--limit", "2", "--answers", home=eval_home)
    said = done.stderr
    shown = [int(p) for p in re.findall(r"Evaluating… (\d+)%", said)]
    assert len(shown) >= 6 and shown == sorted(shown) and shown[-1] == 100, said
    # --answers: after the verdict, each question asked, with its reference and both models' answers
    stored = cli_json("evals", "list", "--job", demo_job[1]["id"], home=eval_home)[0]["result"]
    for name, bucket in stored["buckets"].items():
        for sample in bucket["samples"]:
            assert f"{sample['question']}\n    Reference (its facts): {sample['reference']}" in done.stdout, name


@pytest.mark.slow
def test_the_users_own_test_questions_are_asked_instead_of_the_held_out_rows(demo_job, eval_home, tmp_path):
    trained = [json.loads(line) for line in (ROOT / "assets/demo/shop_faq_zh.jsonl").read_text().splitlines()[:5]]
    for row in trained:  # asked a little otherwise: a question it trained on word for word is not a new one
        row["messages"][0]["content"] = "请问" + row["messages"][0]["content"]
    asked = tmp_path / "my-questions.jsonl"
    asked.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in trained), encoding="utf-8")
    before = len(cli_json("evals", "list", home=eval_home))

    result = cli_json("eval", demo_job[1]["id"], "--questions", str(asked), "--limit", "5", home=eval_home)
    unseen = result["buckets"]["unseen"]
    assert unseen["source"] == "questions" and unseen["dataset"] == "my-questions" and unseen["rows"] == 5
    assert sorted(s["question"] for s in unseen["samples"]) == sorted(row["messages"][0]["content"] for row in trained)
    # these are questions it was taught, a word added: its answers to them match clearly better than the base's
    assert unseen["tuned"]["rouge_l"] > unseen["base"]["rouge_l"] + 0.3, unseen
    assert "On your test questions (my-questions, 5): answers match" in result["text"]
    assert "my-questions" in {row["name"] for row in cli_json("data", "list", home=eval_home)}  # imported once

    text_only = tmp_path / "notes.jsonl"
    text_only.write_text('{"text": "星河小铺创立于2015年。"}\n', encoding="utf-8")
    refused = cli("eval", demo_job[1]["id"], "--questions", str(text_only), "--json", home=eval_home, check=False,
                  lang="zh")
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "evaluation.error.no_questions"
    message = json.loads(refused.stdout)["message"]
    assert "notes" in message and "问题 + 正确答案" in message
    unknown = cli("eval", demo_job[1]["id"], "--questions", "no-such-set", "--json", home=eval_home, check=False)
    assert unknown.returncode == 2 and json.loads(unknown.stdout)["error"] == "datasets.unknown"
    assert len(cli_json("evals", "list", home=eval_home)) == before + 1  # the refused ones stored nothing
