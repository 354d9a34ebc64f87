"""The import as a whole: split, files, report, progress, hashing, catalogs, import cost."""

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from easytune.data import bench, content_hash, import_file
from easytune.i18n import LANGUAGES, LOCALES_DIR

DATA_DIR = Path(__file__).resolve().parents[2] / "easytune" / "data"


def _rows(n):
    return [
        {"question": f"问题 {i}：{i} 的平方是多少？", "answer": f"{i} 的平方是 {i * i}。"} for i in range(n)
    ]


def _write(tmp_path, rows, name="data.jsonl"):
    src = tmp_path / name
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return src


def test_split_is_deterministic(tmp_path):
    src = _write(tmp_path, _rows(400))
    a = import_file(src, out_dir=tmp_path / "a", seed=1)
    b = import_file(src, out_dir=tmp_path / "b", seed=1)
    c = import_file(src, out_dir=tmp_path / "c", seed=2)
    for name in ("train.jsonl", "val.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "val.jsonl").read_bytes() != (tmp_path / "c" / "val.jsonl").read_bytes()
    assert a.splits == b.splits and a.splits["train"] + a.splits["val"] == 400
    assert 20 <= a.splits["val"] <= 60 and 20 <= c.splits["val"] <= 60
    # the split depends on content, not position: shuffling the file keeps each row's side
    shuffled = _write(tmp_path, list(reversed(_rows(400))), "shuffled.jsonl")
    import_file(shuffled, out_dir=tmp_path / "d", seed=1)

    def val_texts(folder):
        return {
            json.dumps(r["messages"], ensure_ascii=False)
            for r in map(json.loads, (folder / "val.jsonl").read_text(encoding="utf-8").splitlines())
        }

    assert val_texts(tmp_path / "a") == val_texts(tmp_path / "d")
    none = import_file(src, out_dir=tmp_path / "e", val_ratio=0)
    assert none.splits == {"train": 400, "val": 0}


def test_report_and_files(tmp_path):
    src = _write(tmp_path, _rows(30) + [{"question": "坏的", "answer": ""}])
    seen = []
    report = import_file(
        src, out_dir=tmp_path / "out", progress=lambda done, total: seen.append((done, total))
    )
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "rejected.jsonl",
        "report.json",
        "train.jsonl",
        "val.jsonl",
    ]
    assert report.rows_total == report.rows_usable + report.rows_rejected == 31
    data = report.to_dict()
    assert json.loads(json.dumps(data)) == json.loads((out / "report.json").read_text(encoding="utf-8"))
    for key in (
        "container",
        "encoding",
        "shape",
        "mapping",
        "rows_total",
        "rows_usable",
        "rows_rejected",
        "rejected",
        "quality",
        "suggestions",
        "splits",
        "sha256",
    ):
        assert key in data
    assert report.sha256 == hashlib.sha256(src.read_bytes()).hexdigest() == content_hash(src)
    assert seen and seen[-1] == (src.stat().st_size, src.stat().st_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert report.files["train"] == str(out / "train.jsonl")


def test_reimport_replaces_files(tmp_path):
    src = _write(tmp_path, _rows(10) + _rows(10))
    import_file(src, out_dir=tmp_path / "out", val_ratio=0)
    assert len((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 20
    import_file(src, out_dir=tmp_path / "out", val_ratio=0, drop_duplicates=True)
    assert len((tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()) == 10
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_catalog_has_every_key_in_both_languages():
    catalogs = {lang: {} for lang in LANGUAGES}
    for lang in LANGUAGES:
        catalogs[lang] = yaml.safe_load((LOCALES_DIR / lang / "data.yaml").read_text(encoding="utf-8"))
    assert set(catalogs["zh"]) == set(catalogs["en"])
    for key, text in catalogs["en"].items():
        assert key.startswith("data."), key
        params = set(re.findall(r"\{(\w+)\}", text))
        assert params == set(re.findall(r"\{(\w+)\}", catalogs["zh"][key])), key
    source = "\n".join(p.read_text(encoding="utf-8") for p in DATA_DIR.glob("*.py"))
    used = set(re.findall(r'"(data\.[a-z_]+(?:\.[a-z_]+)?)"', source))
    used |= {"data.reject." + r for r in re.findall(r'RowError\(\s*"([a-z_]+)"', source)}
    used |= {"data.suggest." + r for r in re.findall(r'_s\(\s*"([a-z_]+)"', source)}
    used |= {"data.reject.duplicate", "data.reject.near_duplicate"}
    used = {k for k in used if not k.endswith(".")}
    missing = used - set(catalogs["en"])
    assert not missing, missing


def test_import_stays_light():
    code = (
        "import sys, easytune.data; heavy = ['torch', 'transformers', 'datasets', 'gradio', 'pyarrow', "
        "'openpyxl', 'numpy', 'pandas']; print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.stdout.strip() == "[]"


def test_bench_smoke(capsys):
    assert bench.main(["--mb", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "rows/s" in out and "peak RSS" in out


def test_worker_processes_give_the_same_result(tmp_path):
    rows = _rows(3000) + _rows(200)  # with exact duplicates
    rows += [{"question": "联系方式", "answer": "手机 13812345678，邮箱 li.si@example.com"}] * 3
    rows += [{"question": "bad", "answer": ""}]
    src = tmp_path / "data.jsonl"
    src.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n{broken\n", encoding="utf-8"
    )
    options = {"drop_duplicates": True, "mask_pii": True, "minhash_rows": 1500}
    one = import_file(src, out_dir=tmp_path / "one", workers=1, **options)
    two = import_file(src, out_dir=tmp_path / "two", workers=2, **options)
    assert one.options["workers"] == 0 and two.options["workers"] == 2
    for name in ("train.jsonl", "val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    a, b = one.to_dict(), two.to_dict()
    for key in ("elapsed_s", "files", "options"):
        a.pop(key), b.pop(key)
    assert a == b
    assert one.quality["duplicates"]["exact"] == 202
    # a JSON array goes through the same stage (elements are found here, parsed in the workers)
    array = tmp_path / "data.json"
    array.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    import_file(array, out_dir=tmp_path / "array1", workers=1, **options)
    import_file(array, out_dir=tmp_path / "array2", workers=2, **options)
    for name in ("train.jsonl", "val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "array1" / name).read_bytes() == (tmp_path / "array2" / name).read_bytes(), name
    assert one.rows_rejected == one.rows_dropped_duplicates + 2  # the empty answer and the broken line


def test_workers_reading_byte_ranges_see_what_one_reader_sees(tmp_path, monkeypatch):
    """Big JSON Lines files are cut into byte ranges that the workers read themselves. Line numbers, blank
    lines, Windows and old Mac line ends, a byte order mark, broken and oversized lines, duplicates and the
    MinHash limit must come out exactly as when one process reads the file from start to end."""
    from easytune.data import pipeline

    lines = [json.dumps(r, ensure_ascii=False).encode() for r in _rows(300)]
    lines[5] = b""  # blank
    lines[6] = "\u3000 ".encode()  # blank too (Unicode whitespace)
    lines[40] = b'{"question": "bad \xff byte", "answer": "x"}'  # not UTF-8
    lines[41] = b'{"question": "broken", "answer": '
    lines[42] = b'{"question": "pasted", "answer": "from an array"},'
    lines[77] = json.dumps({"question": "long", "answer": "长" * 400}, ensure_ascii=False).encode()
    lines[90] = lines[10]  # exact duplicate
    lines[91] = lines[11].replace("？".encode(), b"?")  # near duplicate
    ends = [b"\n", b"\r\n", b"\r", b"\n"]
    data = b"\xef\xbb\xbf" + b"".join(line + ends[i % 4] for i, line in enumerate(lines))
    src = tmp_path / "data.jsonl"
    src.write_bytes(data[:-1])  # and no line end at the very end
    options = {"drop_duplicates": True, "minhash_rows": 120, "max_record_bytes": 1000}
    one = import_file(src, out_dir=tmp_path / "one", workers=1, **options)
    monkeypatch.setattr(pipeline, "RANGE_BYTES", 512)  # dozens of ranges, some ending mid-line in a block
    two = import_file(src, out_dir=tmp_path / "two", workers=2, **options)
    assert two.options["workers"] == 2
    for name in ("train.jsonl", "val.jsonl", "rejected.jsonl"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name
    a, b = one.to_dict(), two.to_dict()
    for key in ("elapsed_s", "files", "options"):
        a.pop(key), b.pop(key)
    assert a == b
    assert one.sha256 == hashlib.sha256(data[:-1]).hexdigest() and one.blank_skipped == 2
    rejected = {r["line"]: r for r in one.rejected}
    assert rejected[78]["reason"] == "data.reject.too_large" and rejected[78]["params"]["limit_kb"] == 0
    assert rejected[41]["reason"] == "data.reject.bad_encoding" and 91 in rejected and 92 in rejected
