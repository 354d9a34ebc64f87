"""The shared real-world samples import with the right shape and row count."""

import json

import pytest
from _data_helpers import need_shared_datasets, rows_of

from easytune.data import import_file

ARRAY_SAMPLES = {
    "alpaca_en_demo.json": "alpaca",
    "alpaca_zh_demo.json": "alpaca",
    "identity.json": "alpaca",
    "dpo_en_demo.json": "preference",
    "dpo_zh_demo.json": "preference",
    "kto_en_demo.json": "kto",
}


def _tool_result_without_call(record: dict) -> bool:
    turns = [t["from"] for t in record["conversations"]]
    return any(
        role == "observation" and (i == 0 or turns[i - 1] != "function_call") for i, role in enumerate(turns)
    )


@pytest.mark.parametrize("name,shape", sorted(ARRAY_SAMPLES.items()))
def test_json_array_samples(tmp_path, name, shape):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / name
    expected = len(json.loads(path.read_text(encoding="utf-8")))
    report = import_file(path, out_dir=tmp_path / "out")
    assert report.container == "json"
    assert report.encoding == "utf-8"
    assert report.shape == shape
    assert report.rows_total == expected
    assert report.rows_usable == expected and report.rows_rejected == 0
    train = rows_of(tmp_path / "out" / "train.jsonl")
    val = rows_of(tmp_path / "out" / "val.jsonl")
    assert len(train) + len(val) == expected
    assert sorted(r["line"] for r in train + val) == list(range(1, expected + 1))
    kind = {"alpaca": "sft", "preference": "preference", "kto": "kto"}[shape]
    assert {r["kind"] for r in train + val} == {kind}


def test_alpaca_rows_are_user_then_assistant(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "alpaca_zh_demo.json"
    source = json.loads(path.read_text(encoding="utf-8"))
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    assert report.mapping == {"prompt": "instruction", "input": "input", "response": "output"}
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    first = rows[0]
    assert first["messages"][-1] == {"role": "assistant", "content": source[0]["output"]}
    assert first["messages"][0]["role"] == "user"
    with_input = next(i for i, r in enumerate(source) if r["input"])
    assert (
        rows[with_input]["messages"][0]["content"]
        == source[with_input]["instruction"] + "\n" + source[with_input]["input"]
    )
    # the record index is the line; the line in the file where it starts is kept too
    assert first["line"] == 1 and first["source_line"] == 2


def test_dpo_sample_keeps_system_prompt_and_answers(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "dpo_en_demo.json"
    source = json.loads(path.read_text(encoding="utf-8"))
    import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    i = next(i for i, r in enumerate(source) if r["conversations"][0]["from"] == "system")
    assert rows[i]["messages"][0] == {"role": "system", "content": source[i]["conversations"][0]["value"]}
    assert rows[i]["messages"][-1]["role"] == "user"
    assert rows[i]["chosen"] == source[i]["chosen"]["value"]
    assert rows[i]["rejected"] == source[i]["rejected"]["value"]


def test_kto_sample_labels(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "kto_en_demo.json"
    source = json.loads(path.read_text(encoding="utf-8"))
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [r["label"] for r in rows] == [r["label"] for r in source]
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    assert report.quality["kto_labels"] == {
        "true": sum(r["label"] for r in source),
        "false": sum(not r["label"] for r in source),
    }


def test_glaive_tool_calls(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "glaive_toolcall_zh_demo.json"
    source = json.loads(path.read_text(encoding="utf-8"))
    broken = [i + 1 for i, r in enumerate(source) if _tool_result_without_call(r)]
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    assert report.shape == "sharegpt"
    assert report.rows_total == len(source)
    assert report.rows_usable == len(source) - len(broken)
    assert [r["line"] for r in report.rejected] == broken
    assert {r["reason"] for r in report.rejected} <= {"data.reject.tool_without_call"}
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    with_call = next(r for r in rows if any(m["role"] == "function_call" for m in r["messages"]))
    roles = [m["role"] for m in with_call["messages"]]
    assert roles[roles.index("function_call") + 1] == "tool"
    assert with_call["tools"] and json.loads(with_call["tools"])
    # Chinese kept as is, not escaped
    assert "发票" in (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8")


def test_c4_jsonl_text(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "c4_demo.jsonl"
    expected = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    assert (report.container, report.shape, report.rows_total, report.rows_usable) == (
        "jsonl",
        "text",
        expected,
        expected,
    )
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert rows[0]["kind"] == "text" and rows[0]["chars"] == len(rows[0]["text"]) and rows[0]["line"] == 1


def test_wiki_txt(tmp_path):
    shared_datasets = need_shared_datasets()
    path = shared_datasets / "wiki_demo.txt"
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    assert (report.container, report.shape, report.rows_total) == ("text", "text", len(lines))
    assert report.details["unit"] == "line"
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert rows[0]["text"] == lines[0]
    assert any(s["key"] == "data.suggest.text_pretraining" for s in report.suggestions)


def test_identity_placeholders_suggested(tmp_path):
    shared_datasets = need_shared_datasets()
    report = import_file(shared_datasets / "identity.json", out_dir=tmp_path / "out")
    keys = {s["key"] for s in report.suggestions}
    assert "data.suggest.placeholders" in keys and "data.suggest.few_rows" in keys
    assert {"name", "author"} <= set(report.quality["placeholders"]["names"])
