"""Files that cannot be imported: a clear message key in both languages, and nothing written."""

import gzip
import io
import json
import random
import tarfile
import zipfile

import pytest

from easytune.data import NoUsableRows, import_file
from easytune.i18n import UserError

GOOD = json.dumps({"question": "hi", "answer": "hello"})


def _zip(path):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("data.jsonl", GOOD)


def _tar(path):
    with tarfile.open(path, "w") as t:
        data = GOOD.encode()
        info = tarfile.TarInfo("data.jsonl")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))


def _garbage(path):
    rng = random.Random(7)
    path.write_bytes(bytes(rng.randrange(256) for _ in range(4096)))


CASES = {
    "empty": ("data.json", lambda p: p.write_bytes(b""), "data.empty_file"),
    "whitespace": (
        "data.jsonl",
        lambda p: p.write_text(" \n\t\n  \r\n", encoding="utf-8"),
        "data.blank_file",
    ),
    "bom_only": ("data.csv", lambda p: p.write_bytes(b"\xef\xbb\xbf\n\n"), "data.blank_file"),
    "binary_json": ("data.json", _garbage, "data.binary_file"),
    "zip": ("data.json", _zip, "data.archive"),
    "gzip": ("data.jsonl", lambda p: p.write_bytes(gzip.compress(GOOD.encode())), "data.archive"),
    "7z": ("data.7z", lambda p: p.write_bytes(b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 40), "data.archive"),
    "rar": ("data.rar", lambda p: p.write_bytes(b"Rar!\x1a\x07\x01\x00" + b"\x00" * 40), "data.archive"),
    "tar": ("data.tar", _tar, "data.archive"),
    "truncated_array": (
        "data.json",
        lambda p: p.write_text("[\n" + ",\n".join([GOOD] * 3) + ',\n{"question": "cut', encoding="utf-8"),
        "data.json_truncated",
    ),
    "unclosed_array": (
        "data.json",
        lambda p: p.write_text("[\n" + ",\n".join([GOOD] * 3) + "\n", encoding="utf-8"),
        "data.json_unclosed",
    ),
    "empty_array": ("data.json", lambda p: p.write_text("[]", encoding="utf-8"), "data.no_rows"),
    "header_only": (
        "data.csv",
        lambda p: p.write_text("question,answer\n", encoding="utf-8"),
        "data.no_rows",
    ),
    "not_json": (
        "data.json",
        lambda p: p.write_text("question: hi\nanswer: hello\n", encoding="utf-8"),
        "data.not_json",
    ),
    "unknown_columns": (
        "data.csv",
        lambda p: p.write_text("foo,bar\n1,2\n", encoding="utf-8"),
        "data.unknown_columns",
    ),
    "unknown_fields": (
        "data.jsonl",
        lambda p: p.write_text('{"foo": 1}\n{"bar": 2}\n', encoding="utf-8"),
        "data.unknown_shape_file",
    ),
    "old_xls": (
        "data.xls",
        lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100),
        "data.old_office_file",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(tmp_path, case):
    name, make, key = CASES[case]
    src = tmp_path / name
    make(src)
    out = tmp_path / "out"
    with pytest.raises(UserError) as info:
        import_file(src, out_dir=out)
    assert info.value.key == key
    for lang in ("zh", "en"):
        text = info.value.message(lang)
        assert text and "{" not in text
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary folder left behind


def test_truncated_array_says_where(tmp_path):
    src = tmp_path / "data.json"
    src.write_text("[\n" + ",\n".join([GOOD] * 3) + ',\n{"question": "cut', encoding="utf-8")
    with pytest.raises(UserError) as info:
        import_file(src, out_dir=tmp_path / "out")
    assert info.value.params["record"] == 4 and info.value.params["line"] == 5
    assert "4" in info.value.message("zh") and "5" in info.value.message("en")


def test_file_over_max_bytes(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text("\n".join([GOOD] * 100), encoding="utf-8")
    with pytest.raises(UserError) as info:
        import_file(src, out_dir=tmp_path / "out", max_bytes=1000)
    assert info.value.key == "data.file_too_large"
    assert not (tmp_path / "out").exists()


def test_failed_import_leaves_existing_out_dir_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("previous\n", encoding="utf-8")
    src = tmp_path / "data.json"
    src.write_text('[{"question": "x"', encoding="utf-8")
    with pytest.raises(UserError):
        import_file(src, out_dir=out)
    assert [p.name for p in out.iterdir()] == ["train.jsonl"]
    assert (out / "train.jsonl").read_text(encoding="utf-8") == "previous\n"


def test_every_row_rejected(tmp_path):
    src = tmp_path / "data.jsonl"
    src.write_text('{"question": "a", "answer": ""}\n{"question": "b", "answer": " "}\n', encoding="utf-8")
    with pytest.raises(NoUsableRows) as info:
        import_file(src, out_dir=tmp_path / "out")
    assert info.value.key == "data.no_usable_rows"
    assert info.value.report.rows_rejected == 2
    assert "answer" in info.value.message("en") and "答案" in info.value.message("zh")
    assert not (tmp_path / "out").exists()


def test_bad_mapping(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("q,a\nx,y\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        import_file(src, out_dir=tmp_path / "out", mapping={"question": "q"})
    assert info.value.key == "data.mapping_unknown_role"
    with pytest.raises(UserError) as info:
        import_file(src, out_dir=tmp_path / "out", mapping={"prompt": "nope", "response": "a"})
    assert info.value.key == "data.mapping_field_missing"
    assert not (tmp_path / "out").exists()
