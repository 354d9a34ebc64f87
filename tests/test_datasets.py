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
