"""What kind of bytes a file holds: archive refusals, spreadsheet/Parquet magic, binary data, text encoding.

Text files are read through `open_text`, which counts the bytes read (for progress) and hashes them (so the
import knows the file's sha256 without a second pass). Undecodable bytes become lone surrogates
(`surrogateescape`), so one bad line is rejected on its own instead of stopping the import.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from easytune.i18n import UserError

HEAD_BYTES = 256 * 1024
WINDOW_BYTES = 64 * 1024

# (magic, offset, name shown to the user)
_ARCHIVES = (
    (b"PK\x03\x04", 0, "ZIP"),
    (b"PK\x05\x06", 0, "ZIP"),
    (b"PK\x07\x08", 0, "ZIP"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"7z\xbc\xaf\x27\x1c", 0, "7z"),
    (b"Rar!\x1a\x07", 0, "RAR"),
    (b"\xfd7zXZ\x00", 0, "xz"),
    (b"\x28\xb5\x2f\xfd", 0, "zstd"),
    (b"ustar", 257, "tar"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy .xls / .doc

# The commonest Chinese characters (simplified and traditional). Real Chinese text is mostly made of
# them; bytes decoded with the wrong double-byte codec come out as rare characters instead.
_COMMON_HAN = frozenset(
    "的一是不了在人有我他这个们中来上大为和国地到以说时要就出会可也你对生能而子那得于着下自之年过发后作里用"
    "道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心她本前开但因只从想实日军者"
    "意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相见被利"
    "什二等产或新己制身果加西月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义"
    "各入几口认条平系气题活更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指"
    "许统区保至队形社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程"
    "北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每济车亲极林服快"
    "办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团集百需价花党华城石级整府离"
    "况请技际约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史委乎查轻易早曾除农找装广显吧李"
    "标谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半节土投某案黑维革划敌致"
    "这個們來為國說時會對過還後裡學發麼經當現動實樣點開長問間題從與機關種應兩進於無體義話見電聽請讓認識員應該"
)

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HAN_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]{2,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass
class Sniffed:
    """What the first bytes say: `kind` is xlsx, parquet, text or binary; text files also get an encoding.
    A binary file is refused by the readers (readers.open_source), which know the formats to name instead."""

    kind: str
    size: int
    encoding: str | None = None  # codec used to read
    encoding_name: str | None = None  # what the report shows (gbk, utf-8-sig, ...)
    head_text: str = ""  # decoded head, for container detection
    head_complete: bool = False  # the head is the whole file


def sniff(path: Path, *, max_bytes: int | None = None) -> Sniffed:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError("data.file_not_found", name=path.name) from None
    if not path.is_file():
        raise UserError("data.not_a_file", name=path.name)
    if size == 0:
        raise UserError("data.empty_file", name=path.name)
    if max_bytes is not None and size > max_bytes:
        raise UserError("data.file_too_large", name=path.name, size_mb=_mb(size), limit_mb=_mb(max_bytes))
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        windows = []
        if size > HEAD_BYTES + 2 * WINDOW_BYTES:
            for where in (size // 2, size - WINDOW_BYTES):
                f.seek(where)
                windows.append(f.read(WINDOW_BYTES))

    if head.startswith(b"PAR1"):
        return Sniffed("parquet", size)
    if head.startswith(b"PK\x03\x04"):
        kind = _zip_kind(path)
        if kind == "xlsx":
            return Sniffed("xlsx", size)
        if kind in ("docx", "pptx"):
            raise UserError("data.unsupported_document", name=path.name, kind=kind.upper())
    for magic, offset, name in _ARCHIVES:
        if head[offset : offset + len(magic)] == magic:
            raise UserError("data.archive", name=path.name, kind=name)
    if _BZIP2.match(head):
        raise UserError("data.archive", name=path.name, kind="bzip2")
    if head.startswith(_OLE2):
        raise UserError("data.old_office_file", name=path.name)
    if head.startswith(b"%PDF"):
        raise UserError("data.unsupported_document", name=path.name, kind="PDF")

    codec, name = detect_encoding(head, windows, complete=size <= HEAD_BYTES)
    if codec is None:
        if name == "binary":
            return Sniffed("binary", size)
        raise UserError("data.unknown_encoding", name=path.name)
    text = codecs.getincrementaldecoder(codec)(errors="replace").decode(head, final=size <= HEAD_BYTES)
    text = text.removeprefix("\ufeff")
    if _looks_binary(text):
        return Sniffed("binary", size)
    return Sniffed("text", size, codec, name, text, size <= HEAD_BYTES)


def detect_encoding(
    head: bytes, windows: list[bytes] = (), *, complete: bool = False
) -> tuple[str | None, str]:
    """(codec to read with, name to report). codec None means: binary, or an encoding we cannot tell."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", "utf-8-sig"
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32", "utf-32"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", "utf-16"
    utf16 = _utf16_without_bom(head)
    if utf16:
        return utf16, utf16
    if b"\x00" in head or any(b"\x00" in w for w in windows):
        return None, "binary"
    chunks = [head] + [w[w.find(b"\n") + 1 :] for w in windows if b"\n" in w]
    if _decodes(chunks, "utf-8", complete):
        return "utf-8", "utf-8"
    candidates = []
    for codec in ("gb18030", "big5"):
        if _decodes(chunks, codec, complete):
            text = "".join(codecs.getincrementaldecoder(codec)(errors="replace").decode(c) for c in chunks)
            score = _chinese_score(text)
            if score >= 0.12:
                candidates.append((score, codec))
    if candidates:
        codec = max(candidates)[1]
        if codec == "gb18030":
            return "gb18030", "gbk" if _decodes(chunks, "gbk", complete) else "gb18030"
        return "big5", "big5"
    # Mostly UTF-8 with a few broken lines: read as UTF-8; the broken lines get rejected one by one.
    lines = head.split(b"\n")
    if not complete and len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut mid-character
    bad = 0
    for line in lines:
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad += 1
    if bad < len(lines) and bad <= max(1, len(lines) // 20):
        return "utf-8", "utf-8"
    guessed = _charset_normalizer_guess(head)
    if guessed:
        return guessed, guessed
    return None, "unknown"


def _utf16_without_bom(head: bytes) -> str | None:
    sample = head[: 4096 - (4096 % 2)]
    if len(sample) < 4:
        return None
    even_nul = sample[0::2].count(0)
    odd_nul = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_nul > 0.4 * half and even_nul < 0.05 * half:
        codec = "utf-16-le"
    elif even_nul > 0.4 * half and odd_nul < 0.05 * half:
        codec = "utf-16-be"
    else:
        return None
    try:
        codecs.getincrementaldecoder(codec)().decode(sample, final=False)
    except UnicodeDecodeError:
        return None
    return codec


def _decodes(chunks: list[bytes], codec: str, complete: bool) -> bool:
    for i, chunk in enumerate(chunks):
        try:
            codecs.getincrementaldecoder(codec)().decode(chunk, final=complete and i == 0)
        except UnicodeDecodeError:
            return False
    return True


def _chinese_score(text: str) -> float:
    """Share of Han characters that are common ones, damped when they come one at a time between Latin
    letters (the mark of Latin-1 text decoded as a double-byte Chinese codec)."""
    han = _HAN.findall(text)
    if not han:
        return 0.0
    common = sum(1 for c in han if c in _COMMON_HAN) / len(han)
    in_runs = sum(len(m) for m in _HAN_RUN.findall(text)) / len(han)
    return common * min(1.0, in_runs)


def _charset_normalizer_guess(head: bytes) -> str | None:
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # optional: without it, unusual encodings are refused with a clear message
        return None
    best = from_bytes(head).best()
    if best is None or best.encoding in ("utf_8", "ascii"):
        return None
    if best.chaos > 0.2:
        return None
    return codecs.lookup(best.encoding).name


def _looks_binary(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return False
    controls = len(_CONTROL.findall(sample))
    replaced = sample.count("\ufffd")
    return controls > max(8, len(sample) // 200) or replaced > max(8, len(sample) // 50)


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return "zip"
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "word/document.xml" in names:
        return "docx"
    if "ppt/presentation.xml" in names:
        return "pptx"
    return "zip"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"


class _CountingReader(io.RawIOBase):
    """Raw reader that counts and hashes every byte it hands out; or, given a byte range, reads only that
    range (and hashes nothing: a piece of a file has no use for the hash)."""

    def __init__(self, path: Path, start: int = 0, end: int | None = None):
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self.count = 0
        self.sha = hashlib.sha256() if start == 0 and end is None else None
        self._left = None if end is None else end - start  # bytes of the range not read yet
        if start:
            self._f.seek(start)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._left is not None:
            if self._left <= 0:
                return 0
            if len(b) > self._left:
                b = memoryview(b)[: self._left]
        n = self._f.readinto(b)
        if n:
            self.count += n
            if self._left is not None:
                self._left -= n
            if self.sha is not None:
                self.sha.update(memoryview(b)[:n])
        return n

    def close(self) -> None:
        self._f.close()
        super().close()


class TextFile:
    """A text stream over a file plus how far it has read and the sha256 of what it has read.
    With start/end: a stream over that byte range only (no hash)."""

    def __init__(
        self, path: Path, encoding: str, *, newline: str | None = None, start: int = 0, end: int | None = None
    ):
        self.codec = encoding
        self._raw = _CountingReader(path, start, end)
        buffered = io.BufferedReader(self._raw, buffer_size=1 << 20)
        self.stream = io.TextIOWrapper(buffered, encoding=encoding, errors="surrogateescape", newline=newline)
        self.size = os.path.getsize(path)

    def readinto_raw(self, buf: bytearray) -> int:
        """Fill buf with the next bytes of the file, undecoded (counted and hashed like the text is).
        Only for a file that is read this way from the start, never through `stream`."""
        return self._raw.readinto(buf)

    @property
    def bytes_read(self) -> int:
        return self._raw.count

    def sha256(self) -> str:
        return self._raw.sha.hexdigest()

    def close(self) -> None:
        self.stream.close()
