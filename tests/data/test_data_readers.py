"""The readers' registry: each data file format is declared once, and detection, opening and the messages
that list what is supported all follow it."""

import dataclasses

import pytest

from easytune.data import import_file, readers
from easytune.data.encoding import sniff
from easytune.i18n import LANGUAGES, UserError, catalog, t


def _detect(path):
    reader, _ = readers.detect_reader(sniff(path), path.suffix.lower())
    return reader.name


def test_each_extension_has_one_reader_and_every_reader_has_its_messages():
    claimed = [ext for r in readers.READERS for ext in r.extensions + r.also_claims]
    assert len(claimed) == len(set(claimed)), "an extension claimed by two readers"
    assert all(ext.startswith(".") and ext == ext.lower() for ext in claimed)
    for lang in LANGUAGES:
        for reader in readers.READERS:
            assert catalog(lang)[f"data.container.{reader.name}"].strip()
            if reader.sure and reader.extensions:  # a file named like it that holds something else is refused
                assert catalog(lang)[reader.mismatch].strip()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("rows.json", '[{"q": "a", "a": "b"}]', "json"),
    ("rows.jsonl", '{"q": "a", "a": "b"}\n{"q": "c", "a": "d"}\n', "jsonl"),
    ("rows.ndjson", '{"q": "a", "a": "b"}\n', "jsonl"),
    ("rows.csv", '{"q": "a"}\n', "csv"),  # the extension decides, whatever the content looks like
    ("rows.tab", "q\ta\nx\ty\n", "csv"),
    ("notes.txt", "q,a\nx,y\nz,w\n", "text"),  # a .txt is never guessed to be a table
    ("notes.md", '[{"q": "a"}]', "json"),  # unmistakable content wins over a weaker extension
    ("rows.dat", "q,a\nx,y\nz,w\n", "csv"),  # an extension nobody claims: the content is guessed
    ("rows", '{"q": "a",\n "a": "b"}\n', "json_stream"),
    ("rows", "just a line\n", "text"),
])
def test_the_registry_reads_each_name_and_content(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert _detect(path) == expected


def test_a_file_named_like_a_sure_format_must_hold_it(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("q,a\nx,y\n", encoding="utf-8")
    with pytest.raises(UserError) as refused:
        _detect(path)
    assert refused.value.key == "data.not_json" and refused.value.params["snippet"] == "q,a"


def test_messages_list_every_listed_extension(tmp_path):
    listed = readers.listed_extensions()
    assert listed == [".json", ".jsonl", ".csv", ".tsv", ".txt", ".xlsx", ".parquet"]
    path = tmp_path / "blob.bin"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(UserError) as refused:
        readers.open_source(path, sniff(path), max_record_bytes=1 << 20)
    for lang in LANGUAGES:
        text = refused.value.message(lang)
        assert all(ext in text for ext in listed), text
        for key in ("datasets.is_folder", "datasets.not_regular_file"):
            assert all(ext in t(key, lang, path="x", formats=readers.supported_formats()) for ext in listed)


class _KeyValueSource(readers.TextLinesSource):
    """A toy format: `key = value` lines, read as plain text lines."""

    container = "keyvalue"

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed, max_record_bytes=max_record_bytes, unit="line")


def _key_values(sniffed, ext, claimed):
    return {} if sniffed.head_text.startswith("@keyvalue") else None


def test_a_reader_declared_in_the_registry_is_detected_listed_and_opened(tmp_path, monkeypatch):
    new = readers.Reader("keyvalue", (".kv",), _KeyValueSource, recognise=_key_values, sure=True,
                         mismatch="data.not_json")
    monkeypatch.setattr(readers, "READERS", (new, *readers.READERS))
    assert ".kv" in readers.listed_extensions() and ".kv" in readers.supported_formats()

    path = tmp_path / "notes.txt"  # its content is recognised whatever the file is called
    path.write_text("@keyvalue\nname = Easy\n", encoding="utf-8")
    assert _detect(path) == "keyvalue"
    report = import_file(path, out_dir=tmp_path / "out", val_ratio=0)
    assert report.container == "keyvalue" and report.rows_total == 2

    named = tmp_path / "other.kv"  # and a file named like it must hold it
    named.write_text("plain words\n", encoding="utf-8")
    with pytest.raises(UserError):
        _detect(named)


def test_a_binary_reader_is_chosen_by_the_magic_sniff_found(tmp_path, monkeypatch):
    parquet = next(r for r in readers.READERS if r.name == "parquet")
    renamed = dataclasses.replace(parquet, name="columnar")
    monkeypatch.setattr(readers, "READERS", tuple(renamed if r is parquet else r for r in readers.READERS))
    sniffed = readers.Sniffed("parquet", 10)
    assert readers.detect_reader(sniffed, ".csv")[0] is renamed
