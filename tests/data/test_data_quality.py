"""Duplicates, personal data, language mix, lengths, suggestions."""

import json

from _data_helpers import need_shared_datasets, rows_of

from easytune.data import describe, import_file
from easytune.data.quality import china_id_ok, find_pii, luhn_ok

VALID_ID = "11010519491231002X"  # the published sample number: valid date and check character
INVALID_ID = "110105194912310021"  # same number, wrong check character


def _luhn_complete(prefix: str) -> str:
    """prefix + the one check digit that makes the Luhn sum a multiple of 10 (independent implementation)."""
    for d in "0123456789":
        digits = [int(c) for c in prefix + d][::-1]
        total = sum(digits[0::2]) + sum(sum(divmod(2 * x, 10)) for x in digits[1::2])
        if total % 10 == 0:
            return prefix + d
    raise AssertionError


CARD = _luhn_complete("622202123456789")  # 16-digit UnionPay-style number
BAD_CARD = CARD[:-1] + str((int(CARD[-1]) + 1) % 10)


def _write(tmp_path, rows, name="data.jsonl"):
    src = tmp_path / name
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return src


def test_checksums():
    assert china_id_ok(VALID_ID) and not china_id_ok(INVALID_ID)
    assert luhn_ok(CARD) and not luhn_ok(BAD_CARD)


def test_pii_found_and_masked(tmp_path):
    rows = [
        {"question": "怎么联系你？", "answer": "请拨打 138-1234-5678 或发邮件到 zhang.san@example.com。"},
        {"question": f"我的身份证号是 {VALID_ID}，对吗？", "answer": "收到。"},
        {"question": "卡号", "answer": f"您的卡号 {CARD[:4]} {CARD[4:8]} {CARD[8:12]} {CARD[12:]} 已绑定。"},
        {"question": "Call me", "answer": "Sure: +86 13912345678, or (555) 123-4567."},
        {
            "question": "不是个人信息",
            "answer": f"编号 {INVALID_ID} 和 {BAD_CARD}，以及 3.14159265358979，"
            "1234567890123 + 4 = 1234567890127。",
        },
    ]
    src = _write(tmp_path, rows)
    report = import_file(src, out_dir=tmp_path / "plain", val_ratio=0)
    pii = report.quality["pii"]
    assert pii["counts"] == {"phone": 3, "email": 1, "id_card": 1, "bank_card": 1}
    assert pii["rows"] == 4 and not pii["masked"]
    assert {e["line"] for e in pii["examples"]} == {1, 2, 3, 4}
    assert all(VALID_ID not in e["value"] and "13812345678" not in e["value"] for e in pii["examples"])
    assert "data.suggest.pii_found" in {s["key"] for s in report.suggestions}
    assert "138-1234-5678" in (tmp_path / "plain" / "train.jsonl").read_text(encoding="utf-8")

    report = import_file(src, out_dir=tmp_path / "masked", val_ratio=0, mask_pii=True)
    text = (tmp_path / "masked" / "train.jsonl").read_text(encoding="utf-8")
    for secret in (
        "138-1234-5678",
        "zhang.san@example.com",
        VALID_ID,
        CARD[:4] + " " + CARD[4:8],
        "13912345678",
        "123-4567",
    ):
        assert secret not in text
    masked = rows_of(tmp_path / "masked" / "train.jsonl")
    assert masked[0]["messages"][1]["content"] == "请拨打 [PHONE] 或发邮件到 [EMAIL]。"
    assert masked[1]["messages"][0]["content"] == "我的身份证号是 [ID_NUMBER]，对吗？"
    assert "[BANK_CARD]" in masked[2]["messages"][1]["content"]
    assert masked[4]["messages"][1]["content"] == rows[4]["answer"]  # nothing to mask there
    assert "data.suggest.pii_masked" in {s["key"] for s in report.suggestions}


def test_find_pii_spans():
    text = "邮箱a@b.cn，手机13800138000"
    kinds = [k for _, _, k in find_pii(text)]
    assert kinds == ["email", "phone"]


def test_exact_and_near_duplicates(tmp_path):
    base = {
        "instruction": "Explain photosynthesis in simple terms for a ten year old child.",
        "output": "Plants use sunlight, water and air to make their own food and give off oxygen.",
    }
    founded = "Kestrel Cycles opened its first repair shop in 1987 and has fixed bikes ever since."
    rows = [
        base,
        {"instruction": "Name three primary colours.", "output": "Red, blue and yellow."},
        dict(base),  # exact copy: line 3
        {
            "instruction": "explain  PHOTOSYNTHESIS in simple terms for a ten-year-old child!",
            "output": base["output"],
        },  # case / spacing / punctuation: line 4
        {
            "instruction": base["instruction"],
            "output": "Plants use sunlight, water and air to make their own food and they give off oxygen.",
        },  # edited
        {
            "instruction": "A different question entirely about the moon?",
            "output": "The moon orbits the Earth.",
        },
        # the same answer asked another way (lines 7, 8): not a copy, it teaches the answer better
        {"instruction": "When was Kestrel Cycles founded?", "output": founded},
        {"instruction": "What year did Kestrel Cycles open?", "output": founded},
    ]
    src = _write(tmp_path, rows)
    report = import_file(src, out_dir=tmp_path / "keep", val_ratio=0)
    dup = report.quality["duplicates"]
    assert (dup["exact"], dup["near"]) == (1, 2)
    assert {(e["line"], e["first_line"], e["kind"]) for e in dup["examples"]} == {
        (3, 1, "exact"),
        (4, 1, "near"),
        (5, 1, "near"),
    }
    assert report.rows_usable == 8

    report = import_file(src, out_dir=tmp_path / "drop", val_ratio=0, drop_duplicates=True)
    assert report.rows_usable == 5 and report.rows_rejected == 3 and report.rows_dropped_duplicates == 3
    assert [r["line"] for r in rows_of(tmp_path / "drop" / "train.jsonl")] == [1, 2, 6, 7, 8]
    rejected = rows_of(tmp_path / "drop" / "rejected.jsonl")
    assert [(r["line"], r["reason"], r["params"]["first_line"]) for r in rejected] == [
        (3, "data.reject.duplicate", 1),
        (4, "data.reject.near_duplicate", 1),
        (5, "data.reject.near_duplicate", 1),
    ]
    assert rejected[0]["original"].startswith('{"instruction"')


def test_languages_short_answers_and_lengths(tmp_path):
    rows = [{"question": "什么是光合作用？", "answer": "植物利用阳光把水和二氧化碳变成养分。"}] * 6 + [
        {"question": f"What is {i}?", "answer": "A number." if i % 2 else "No"} for i in range(4)
    ]
    report = import_file(
        _write(tmp_path, rows),
        out_dir=tmp_path / "out",
        context_len=8,
        tokenizer_len=lambda s: len(s.split()) + sum(1 for c in s if ord(c) > 0x2E80),
    )
    q = report.quality
    assert q["languages"]["zh"]["rows"] == 6 and q["languages"]["en"]["rows"] == 4
    assert q["short_answers"]["count"] == 2 and q["short_answers"]["examples"] == [7, 9]
    tokens = q["tokens"]
    assert tokens["estimated"] is False and tokens["over_context"] == 6 and tokens["max"] >= tokens["p50"]
    assert sum(b["count"] for b in tokens["histogram"]) == 10
    assert q["length_chars"]["max"] == max(len(r["question"]) + 1 + len(r["answer"]) for r in rows)
    keys = {s["key"] for s in report.suggestions}
    assert {
        "data.suggest.language_mix",
        "data.suggest.short_answers",
        "data.suggest.over_context",
        "data.suggest.few_rows",
    } <= keys


def test_every_suggestion_renders_in_both_languages(tmp_path):
    shared_datasets = need_shared_datasets()
    seen = set()
    for name in ("identity.json", "glaive_toolcall_zh_demo.json", "kto_en_demo.json", "c4_demo.jsonl"):
        report = import_file(shared_datasets / name, out_dir=tmp_path / name, context_len=256)
        for s in report.suggestions:
            seen.add(s["key"])
            for lang in ("zh", "en"):
                assert "{" not in describe(s, lang).replace("{{", "")
        for r in report.rejected:
            assert describe(r, "zh") and describe(r, "en")
    assert len(seen) >= 6
