"""Importing and managing datasets through the CLI: reports with line numbers, nothing lost, nothing half-stored."""

import json

import pytest

from support import SHARED, cli, cli_json


def stored(home):
    """What an import can leave behind: the uploads and datasets folders and the dataset rows."""
    files = sorted(str(p.relative_to(home)) for sub in ("uploads", "datasets") for p in (home / sub).rglob("*")
                   if (home / sub).exists())
    rows = cli_json("data", "list", home=home)
    return files, rows


def test_jsonl_with_bad_lines_reports_those_lines_and_keeps_the_rest(home, tmp_path):
    good = {"messages": [{"role": "user", "content": "你好"},
                         {"role": "assistant", "content": "你好！有什么可以帮你？"}]}
    lines = [json.dumps(good, ensure_ascii=False)] * 3 + ['{"messages": [', json.dumps(good, ensure_ascii=False),
                                                          '{"messages": [{"role": "user", "content": "只有问题"}]}']
    path = tmp_path / "faq.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli_json("data", "add", str(path), home=home)
    report = result["report"]
    assert report["rows_total"] == 6 and report["rows_usable"] == 4 and report["rows_rejected"] == 2
    assert sorted(r["line"] for r in report["rejected"]) == [4, 6]
    text = cli("data", "show", result["dataset"]["id"], home=home).stdout
    assert "你好！有什么可以帮你？" in text
    original = home / "uploads" / result["dataset"]["id"] / "faq.jsonl"
    assert original.read_bytes() == path.read_bytes(), "the upload is kept untouched"
    human = cli("data", "add", str(path), home=home, lang="zh").stdout
    assert "之前已经导入过" in human, "the same file is recognised by its content"


@pytest.mark.parametrize("content, key", [
    (b"", "data.empty_file"),
    (b"   \n\t\n", "data.blank_file"),
    (bytes(range(256)) * 40, "data.binary_file"),
    (b"PK\x03\x04" + b"\x00" * 100, "data.archive"),
])
def test_bad_files_get_a_message_and_store_nothing(home, tmp_path, content, key):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    before = stored(home)
    result = cli("data", "add", str(path), "--json", home=home, check=False)
    assert result.returncode == 2
    error = json.loads(result.stdout.splitlines()[0])
    assert error["error"] == key and error["message"]
    assert stored(home) == before


def test_delete_is_refused_while_a_job_needs_the_data(settings, home, tmp_path):
    from easytune import datasets, jobs
    from easytune.plan.schema import TrainingPlan

    path = tmp_path / "qa.csv"
    path.write_text("问题,答案\n怎么退货,七天内可以退货\n几点发货,下午四点前下单当天发货\n", encoding="gbk")
    added = datasets.add_dataset(settings, path)
    assert added["report"]["encoding"].lower() in ("gbk", "gb18030")
    assert "七天内可以退货" in json.dumps(datasets.show_dataset(settings, added["dataset"]["id"]), ensure_ascii=False)
    job = jobs.create_job(settings, TrainingPlan(dataset=added["dataset"]["id"]))  # PENDING, not started
    result = cli("data", "rm", added["dataset"]["id"], home=home, check=False)
    assert result.returncode == 2 and job["id"] in result.stderr
    jobs.stop_job(settings, job["id"])
    cli("data", "rm", added["dataset"]["id"], home=home)
    assert stored(home) == ([], [])


@pytest.mark.skipif(not (SHARED / "datasets").is_dir(), reason="shared sample datasets are not present")
def test_shared_samples_import_with_their_shape(home):
    expected = {"alpaca_zh_demo.json": "alpaca", "dpo_en_demo.json": "preference", "wiki_demo.txt": "text",
                "glaive_toolcall_zh_demo.json": "sharegpt", "kto_en_demo.json": "kto"}
    for name, shape in expected.items():
        report = cli_json("data", "add", str(SHARED / "datasets" / name), home=home)["report"]
        assert report["shape"] == shape, (name, report["shape"])
        assert report["rows_total"] == report["rows_usable"] + report["rows_rejected"]


def test_the_companys_hotline_is_kept_while_customers_numbers_are_masked(tmp_path):
    """Masking personal data must not erase what the model should learn to say: the shop's own hotline,
    named once with --keep (spaced differently in one row), stays; a customer's number is masked."""
    home = tmp_path / "home"
    rows = [{"question": f"问题 {i}：怎么联系客服？", "answer": "请拨打客服热线 400-820-1234，我们 9 点到 21 点在线。"}
            for i in range(6)]
    rows.append({"question": "我的手机号是 13812345678，能回电吗？", "answer": "可以，请拨 400 820 1234 或等待回电。"})
    data = tmp_path / "faq.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    added = cli_json("data", "add", str(data), "--name", "faq", home=home)
    assert added["report"]["quality"]["pii"]["rows"] == 7  # the hotline looks like a phone number

    fixed = cli_json("data", "reimport", "faq", "--mask-pii", "--keep", "400-820-1234", home=home)
    pii = fixed["report"]["quality"]["pii"]
    assert pii["masked"] and pii["kept"] == ["400-820-1234"] and pii["rows"] == 1 and pii["counts"]["phone"] == 1
    shown = cli_json("data", "show", "faq", "--limit", "20", home=home)["preview"]["rows"]
    text = json.dumps(shown, ensure_ascii=False)
    assert text.count("400-820-1234") == 6 and "400 820 1234" in text and "13812345678" not in text
    assert "data.suggest.pii_kept" in {s["key"] for s in fixed["report"]["suggestions"]}
