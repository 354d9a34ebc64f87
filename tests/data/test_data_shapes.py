"""Each supported shape becomes the canonical form; mixed files are handled row by row."""

import json

import pytest
from _data_helpers import rows_of

from easytune.data import import_file
from easytune.data.errors import RowError
from easytune.data.shapes import Normaliser


def one(record, mapping=None):
    row, shape, _ = Normaliser(mapping)(record)
    return row, shape


def test_alpaca_with_system_and_history():
    row, shape = one(
        {
            "instruction": "继续",
            "input": "",
            "output": "好的。",
            "system": "你是助手",
            "history": [["你好", "你好！"], ["今天星期几？", "星期一。"]],
        }
    )
    assert shape == "alpaca"
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert row["messages"][-2] == {"role": "user", "content": "继续"}
    assert row["tools"] is None


@pytest.mark.parametrize(
    "q,a",
    [
        ("question", "answer"),
        ("prompt", "response"),
        ("query", "response"),
        ("问题", "答案"),
        ("问", "答"),
        ("指令", "输出"),
        ("Question", "Answer"),
        ("prompt", "completion"),
    ],
)
def test_pairs(q, a):
    row, shape = one({q: "Q?", a: "A."})
    assert shape in ("pairs", "alpaca")
    assert row["messages"] == [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]


def test_sharegpt_with_tools_and_system():
    row, shape = one(
        {
            "conversations": [
                {"from": "system", "value": "sys"},
                {"from": "human", "value": "weather?"},
                {"from": "function_call", "value": '{"name": "w", "arguments": {}}'},
                {"from": "observation", "value": '{"t": 20}'},
                {"from": "gpt", "value": "20度"},
            ],
            "tools": [{"name": "w", "parameters": {}}],
        }
    )
    assert shape == "sharegpt"
    assert [m["role"] for m in row["messages"]] == ["system", "user", "function_call", "tool", "assistant"]
    assert json.loads(row["tools"]) == [{"name": "w", "parameters": {}}]


def test_openai_messages_multi_turn_tool_calls_and_weight():
    row, shape = one(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                {"role": "assistant", "content": "Hello", "weight": 0},
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"type": "function", "function": {"name": "get", "arguments": '{"city": "Paris"}'}}
                    ],
                },
                {"role": "tool", "content": "20C"},
                {"role": "assistant", "content": "20 degrees."},
            ]
        }
    )
    assert shape == "openai"
    assert row["messages"][2] == {"role": "assistant", "content": "Hello", "train": False}
    assert row["messages"][4]["role"] == "function_call"
    assert json.loads(row["messages"][4]["content"]) == {"name": "get", "arguments": {"city": "Paris"}}


@pytest.mark.parametrize(
    "record,reason",
    [
        ({"messages": [{"role": "user", "content": "a"}]}, "last_turn_unanswered"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            },
            "turn_order",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}]},
            "empty_turn",
        ),
        ({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}, "unknown_role"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "system", "content": "c"},
                ]
            },
            "misplaced_system",
        ),
        ({"messages": "hello"}, "not_a_list"),
        ({"messages": []}, "empty_conversation"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": "x"}]},
                    {"role": "assistant", "content": "b"},
                ]
            },
            "unsupported_content",
        ),
        ({"instruction": "x", "output": {"a": 1}}, "wrong_type"),
        ({"instruction": "", "input": "", "output": "y"}, "empty_prompt"),
        ({"question": "x"}, "missing_answer"),
        ({"answer": "x"}, "missing_prompt"),
        ({"text": "   "}, "empty_text"),
        ({"prompt": "x", "chosen": "same", "rejected": "same"}, "same_chosen_rejected"),
        (
            {
                "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                "label": "maybe",
            },
            "bad_label",
        ),
        (
            {
                "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}],
                "tools": "{oops",
            },
            "invalid_tools",
        ),
        (["a", "b"], "not_object"),
        ({"foo": "a", "bar": "b"}, "unknown_shape"),
    ],
)
def test_row_rejections(record, reason):
    with pytest.raises(RowError) as info:
        one(record)
    assert info.value.reason == reason


def test_preference_variants():
    row, shape = one({"prompt": "Q", "chosen": "good", "rejected": "bad", "system": "S"})
    assert shape == "preference"
    assert row == {
        "kind": "preference",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
        "chosen": "good",
        "rejected": "bad",
    }
    row, _ = one(
        {
            "conversations": [{"from": "human", "value": "Q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        }
    )
    assert (row["chosen"], row["rejected"]) == ("good", "bad")
    row, _ = one(
        {
            "chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
            "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}],
        }
    )
    assert row["messages"] == [{"role": "user", "content": "Q"}] and row["chosen"] == "good"
    row, _ = one(
        {
            "prompt": [{"role": "user", "content": "Q"}],
            "chosen": [{"role": "assistant", "content": "g"}],
            "rejected": [{"role": "assistant", "content": "b"}],
        }
    )
    assert (row["chosen"], row["rejected"]) == ("g", "b")


def test_kto_variants():
    row, shape = one({"prompt": "Q", "completion": "A", "label": "false"})
    assert shape == "kto" and row["label"] is False
    assert row["messages"][-1] == {"role": "assistant", "content": "A"}
    row, _ = one(
        {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "label": 1}
    )
    assert row["label"] is True


def test_text_rows():
    row, shape = one({"text": "Some text.", "id": 3, "url": "http://x"})
    assert shape == "text" and row == {"kind": "text", "text": "Some text.", "chars": 10}


def test_mapping_override_and_forced_shape():
    row, shape = one(
        {"q_text": "Q", "a_text": "A", "note": "n"}, mapping={"prompt": "q_text", "response": "a_text"}
    )
    assert shape == "pairs" and row["messages"][1]["content"] == "A"
    row, shape = one({"body": "x", "question": "y"}, mapping={"shape": "text", "text": "body"})
    assert shape == "text" and row["text"] == "x"
    row, shape = one(
        {"dialog": [{"speaker": "user", "words": "hi"}, {"speaker": "assistant", "words": "yo"}]},
        mapping={"messages": "dialog", "role": "speaker", "content": "words"},
    )
    assert shape == "openai" and row["messages"][1]["content"] == "yo"


def test_mixed_file(tmp_path):
    records = [
        {"instruction": "a", "input": "", "output": "b"},
        {"conversations": [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}]},
        {"messages": [{"role": "user", "content": "e"}, {"role": "assistant", "content": "f"}]},
        {"text": "plain"},
        {"weird": True},
        {"prompt": "p", "chosen": "x", "rejected": "y"},
    ]
    src = tmp_path / "mixed.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.shape == "mixed"
    assert report.shapes == {"alpaca": 1, "sharegpt": 1, "openai": 1, "text": 1, "preference": 1}
    assert report.rows_total == 6 and report.rows_usable == 5
    assert report.rejected == [
        {"line": 5, "reason": "data.reject.unknown_shape", "params": {"fields": '["weird"]'}}
    ]
    assert [r["kind"] for r in rows_of(tmp_path / "out" / "train.jsonl")] == [
        "sft",
        "sft",
        "sft",
        "text",
        "preference",
    ]
    assert any(s["key"] == "data.suggest.mixed_shapes" for s in report.suggestions)


def test_report_mapping_for_sharegpt(tmp_path):
    src = tmp_path / "c.json"
    src.write_text(
        json.dumps(
            [
                {
                    "conversations": [{"from": "human", "value": "c"}, {"from": "gpt", "value": "d"}],
                    "system": "s",
                }
            ]
        ),
        encoding="utf-8",
    )
    report = import_file(src, out_dir=tmp_path / "out")
    assert report.mapping == {
        "messages": "conversations",
        "system": "system",
        "role": "from",
        "content": "value",
    }
    assert report.mapping_source == "auto"
