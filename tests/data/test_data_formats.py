"""Container formats and text encodings."""

import codecs
import json

import pytest
from _data_helpers import rows_of

from easytune.data import import_file, preview, readers

QA_ZH = [
    ("什么是机器学习？", "机器学习是让计算机从数据中学习规律的方法。"),
    ("北京是哪个国家的首都？", "北京是中华人民共和国的首都。"),
    ("请用一句话介绍长城。", "长城是中国古代修建的军事防御工程，全长两万多公里。"),
]


def _csv(rows, header=("问题", "答案"), delimiter=","):
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def test_gbk_csv_with_chinese_headers(tmp_path):
    src = tmp_path / "问答.csv"
    src.write_bytes(_csv(QA_ZH).encode("gbk"))
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.encoding == "gbk"
    assert report.container == "csv" and report.details["delimiter"] == ","
    assert report.shape == "pairs"
    assert report.mapping == {"prompt": "问题", "response": "答案"}
    assert report.rows_total == 3 and report.rows_usable == 3
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [r["line"] for r in rows] == [2, 3, 4]  # header is row 1
    assert rows[0]["messages"] == [
        {"role": "user", "content": QA_ZH[0][0]},
        {"role": "assistant", "content": QA_ZH[0][1]},
    ]
    assert any(s["key"] == "data.suggest.confirm_mapping" for s in report.suggestions)


def test_gb18030_only_characters(tmp_path):
    rows = [("“𠀀”是什么字？", "这是一个扩展区的汉字，GBK 里没有，GB18030 里有。")] + QA_ZH
    src = tmp_path / "qa.csv"
    src.write_bytes(_csv(rows).encode("gb18030"))
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.encoding == "gb18030"
    assert rows_of(tmp_path / "out" / "train.jsonl")[0]["messages"][0]["content"] == rows[0][0]


@pytest.mark.parametrize(
    "codec,bom,name",
    [
        ("utf-16-le", codecs.BOM_UTF16_LE, "utf-16"),
        ("utf-16-be", codecs.BOM_UTF16_BE, "utf-16"),
        ("utf-8", codecs.BOM_UTF8, "utf-8-sig"),
    ],
)
def test_bom_files(tmp_path, codec, bom, name):
    lines = [json.dumps({"question": q, "answer": a}, ensure_ascii=False) for q, a in QA_ZH]
    src = tmp_path / "qa.jsonl"
    src.write_bytes(bom + "\n".join(lines).encode(codec))
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert (report.encoding, report.container, report.rows_usable) == (name, "jsonl", 3)
    assert rows_of(tmp_path / "out" / "train.jsonl")[0]["messages"][0]["content"] == QA_ZH[0][0]


def test_utf16_csv_and_utf16_without_bom(tmp_path):
    src = tmp_path / "qa.csv"
    src.write_bytes(_csv(QA_ZH, header=("question", "answer")).encode("utf-16"))  # with BOM, as Excel writes
    assert import_file(src, out_dir=tmp_path / "a", val_ratio=0).rows_usable == 3
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(
        "\n".join(json.dumps({"q": "hello there", "a": "general kenobi"}) for _ in range(3)).encode(
            "utf-16-le"
        )
    )
    report = import_file(plain, out_dir=tmp_path / "b", val_ratio=0)
    assert report.encoding == "utf-16-le" and report.rows_usable == 3


def test_big5(tmp_path):
    rows = [
        ("什麼是機器學習？", "機器學習是讓電腦從資料中學習規律的方法。"),
        ("臺灣的首都是哪裡？", "臺北是臺灣的政治與經濟中心。"),
    ]
    src = tmp_path / "qa.csv"
    src.write_bytes(_csv(rows, header=("問題", "答案")).encode("big5"))
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.encoding == "big5"
    assert rows_of(tmp_path / "out" / "train.jsonl")[1]["messages"][1]["content"] == rows[1][1]


def test_jsonl_bad_lines_reported_with_exact_line_numbers(tmp_path):
    good = json.dumps({"instruction": "Say hi", "output": "Hi!"})
    lines = [
        good,
        "{not json",
        good,
        "",
        json.dumps({"instruction": "No answer", "output": ""}),
        '{"instruction": "truncated", "output": "x"',
        json.dumps([1, 2]),
        good,
        json.dumps({"foo": 1, "bar": 2}),
        good,
    ]
    src = tmp_path / "data.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.rows_total == 9  # the blank line 4 is not a row
    assert report.blank_skipped == 1
    assert report.rows_usable == 4
    by_line = {r["line"]: r["reason"] for r in report.rejected}
    assert by_line == {
        2: "data.reject.invalid_json",
        5: "data.reject.empty_answer",
        6: "data.reject.invalid_json",
        7: "data.reject.not_object",
        9: "data.reject.unknown_shape",
    }
    assert [r["line"] for r in rows_of(tmp_path / "out" / "train.jsonl")] == [1, 3, 8, 10]
    rejected = rows_of(tmp_path / "out" / "rejected.jsonl")
    assert [r["line"] for r in rejected] == [2, 5, 6, 7, 9]
    assert rejected[0]["original"].startswith("{not json")
    assert report.rejected[0]["params"]["at_line"] == 2


def test_jsonl_line_with_undecodable_bytes(tmp_path):
    good = json.dumps({"question": "你好吗？", "answer": "我很好，谢谢。"}, ensure_ascii=False).encode()
    bad = json.dumps({"question": "编码", "answer": "混乱"}, ensure_ascii=False).encode("gbk")
    src = tmp_path / "mixed.jsonl"
    src.write_bytes(b"\n".join([good] * 20 + [bad] + [good] * 20))
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.encoding == "utf-8"
    assert report.rows_usable == 40
    assert report.rejected == [{"line": 21, "reason": "data.reject.bad_encoding", "params": {}}]
    assert (tmp_path / "out" / "rejected.jsonl").read_text(encoding="utf-8").count("\n") == 1


def test_csv_quoted_multiline_field(tmp_path):
    answer = 'Step 1: mix.\nStep 2: "whisk", then rest.\n\nStep 3: cook.'
    src = tmp_path / "qa.csv"
    src.write_text(
        _csv([("How to make crepes?", answer), ("Second?", "Yes, second.")], header=("prompt", "response")),
        encoding="utf-8",
    )
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert rows[0]["messages"][1]["content"] == answer
    assert [r["line"] for r in rows] == [2, 3]
    assert report.shape == "pairs"


def test_tsv_and_semicolon(tmp_path):
    src = tmp_path / "qa.tsv"
    src.write_text(_csv(QA_ZH, delimiter="\t"), encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "a", val_ratio=0)
    assert report.container == "tsv" and report.rows_usable == 3
    src = tmp_path / "qa.csv"
    src.write_text(
        _csv([("a; b?", "c")] + QA_ZH, header=("query", "response"), delimiter=";"), encoding="utf-8"
    )
    report = import_file(src, out_dir=tmp_path / "b", val_ratio=0)
    assert report.details["delimiter"] == ";" and report.rows_usable == 4


def test_csv_wrong_field_count(tmp_path):
    src = tmp_path / "qa.csv"
    src.write_text("question,answer\nq1,a1\nq2,a2,extra\nq3,a3,\n", encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out")
    assert report.rows_usable == 2
    assert report.rejected == [
        {"line": 3, "reason": "data.reject.csv_field_count", "params": {"expected": 2, "got": 3}}
    ]


def test_xlsx(tmp_path):
    openpyxl = pytest.importorskip("openpyxl")
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "问答"
    ws.append(["问", "答", "备注"])
    for q, a in QA_ZH:
        ws.append([q, a, "x"])
    ws.append([None, None, None])
    ws.append(["2 + 2 = ?", 4, None])
    src = tmp_path / "qa.xlsx"
    wb.save(src)
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert (report.container, report.encoding, report.shape) == ("xlsx", None, "pairs")
    assert report.details["sheet"] == "问答"
    assert report.mapping == {"prompt": "问", "response": "答"}
    assert report.ignored_fields == ["备注"]
    assert report.rows_total == 4 and report.blank_skipped == 1
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [r["line"] for r in rows] == [2, 3, 4, 6]
    assert rows[-1]["messages"][1]["content"] == "4"


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table(
        {
            "messages": [
                [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "2+2?"},
                    {"role": "assistant", "content": "4"},
                ],
            ],
            "source": ["a", "b"],
        }
    )
    src = tmp_path / "chat.parquet"
    pq.write_table(table, src)
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert (report.container, report.shape, report.rows_usable) == ("parquet", "openai", 2)
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [r["line"] for r in rows] == [1, 2]
    assert rows[1]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_json_array_streams_across_small_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 7)  # force many refills mid-string and mid-escape
    records = [
        {"instruction": f'题目 {i} \\ "quoted" [x] {{y}}', "output": f"答案 {i}\n换行"} for i in range(30)
    ]
    records[10] = {"instruction": "bad", "output": 5, "extra": [1, {"a": "]"}]}
    text = json.dumps(records, ensure_ascii=False, indent=2)
    text = text.replace('"output": 5', '"output": 5,')  # an invalid element in the middle
    src = tmp_path / "data.json"
    src.write_text(text, encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.rows_total == 30 and report.rows_usable == 29
    assert report.rejected[0]["line"] == 11 and report.rejected[0]["reason"] == "data.reject.invalid_json"
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert rows[0]["messages"][0]["content"] == records[0]["instruction"]
    source_lines = text.splitlines()
    from easytune.data.summary import where  # the report names the record and the line it starts on

    start = report.rejected[0]["source_line"]
    assert source_lines[start - 1].strip() == "{" and '"bad"' in source_lines[start]
    assert where(report.rejected[0], "en") == f"record 11 (line {start})"
    assert where(report.rejected[0], "zh") == f"第 11 条记录（第 {start} 行）"
    for row in rows:
        assert source_lines[row["source_line"] - 1].strip() == "{"


def test_pretty_printed_objects_one_after_another(tmp_path):
    records = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    src = tmp_path / "data.json"
    src.write_text("\n".join(json.dumps(r, indent=2) for r in records), encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.container == "json_stream" and report.rows_usable == 3


def test_record_over_size_limit_is_rejected_alone(tmp_path):
    small = {"instruction": "hi", "output": "hello"}
    big = {"instruction": "big", "output": "x" * 5000}
    src = tmp_path / "data.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in [small, big, small]), encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "a", max_record_bytes=1024, val_ratio=0)
    assert [(r["line"], r["reason"]) for r in report.rejected] == [(2, "data.reject.too_large")]
    assert report.rows_usable == 2
    arr = tmp_path / "data.json"
    arr.write_text(json.dumps([small, big, small], indent=1), encoding="utf-8")
    report = import_file(arr, out_dir=tmp_path / "b", max_record_bytes=1024, val_ratio=0)
    assert [(r["line"], r["reason"]) for r in report.rejected] == [(2, "data.reject.too_large")]
    assert report.rows_usable == 2
    assert [r["line"] for r in rows_of(tmp_path / "b" / "train.jsonl")] == [1, 3]


def test_text_paragraphs(tmp_path):
    src = tmp_path / "book.txt"
    src.write_text(
        "第一段第一行\n第一段第二行\n\n第二段第一行\n第二段第二行\n第二段第三行\n\n\n第三段\n",
        encoding="utf-8",
    )
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert report.details["unit"] == "paragraph" and report.rows_total == 3
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [r["line"] for r in rows] == [1, 4, 9]
    assert rows[1]["text"] == "第二段第一行\n第二段第二行\n第二段第三行"


def test_preview_source_and_cleaned(tmp_path):
    src = tmp_path / "qa.csv"
    src.write_text(_csv(QA_ZH * 5), encoding="utf-8")
    page = preview(src, offset=2, limit=5)
    assert (
        page["kind"] == "source"
        and page["shape"] == "pairs"
        and page["mapping"] == {"prompt": "问题", "response": "答案"}
    )
    assert [r["line"] for r in page["rows"]] == [4, 5, 6, 7, 8] and page["has_more"]
    report = import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    page = preview(tmp_path / "out", offset=10, limit=10)
    assert page["total"] == report.splits["train"] == 15
    assert [r["line"] for r in page["rows"]] == [12, 13, 14, 15, 16] and not page["has_more"]
    assert preview(tmp_path / "out" / "train.jsonl", 0, 1)["rows"][0]["line"] == 2


def test_oversized_array_element_skipped_while_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 16)
    records = [
        {"q": "one", "a": "first"},
        {"q": "big", "a": '[{"x": "' + 'y\\"' * 200 + '"}]', "nested": [[{"k": "]]}}"}]] * 20},
        {"q": "three", "a": "third"},
    ]
    src = tmp_path / "data.json"
    src.write_text(json.dumps(records, indent=2), encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", max_record_bytes=300, val_ratio=0)
    assert [(r["line"], r["reason"]) for r in report.rejected] == [(2, "data.reject.too_large")]
    rows = rows_of(tmp_path / "out" / "train.jsonl")
    assert [(r["line"], r["messages"][1]["content"]) for r in rows] == [(1, "first"), (3, "third")]
    lines = src.read_text(encoding="utf-8").splitlines()
    assert lines[rows[1]["source_line"] - 1].strip() == "{" and '"three"' in lines[rows[1]["source_line"]]


def test_huge_scalar_element_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CHUNK_CHARS", 32)
    src = tmp_path / "data.json"
    src.write_text('[{"q": "a", "a": "b"}, "' + "z\\n" * 500 + '", {"q": "c", "a": "d"}]', encoding="utf-8")
    report = import_file(src, out_dir=tmp_path / "out", max_record_bytes=200)
    assert [(r["line"], r["reason"]) for r in report.rejected] == [(2, "data.reject.too_large")]
    assert report.rows_usable == 2
