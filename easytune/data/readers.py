"""Stream records out of each container format, each with the line (or row) it came from.

Every reader yields tuples `(line, value, raw, source_line, error)`:
- `line`: 1-based line for JSON Lines and text, record index for JSON arrays, spreadsheet row for
  CSV/XLSX (header = row 1), row index for Parquet;
- `value`: a dict (structured rows) or a str (raw text); None when `error` is set;
- `raw`: the original text of the record when there is one (kept for rejected.jsonl);
- `source_line`: the line where a JSON array element starts (None elsewhere);
- `error`: a RowError for a record that could not even be parsed.
Memory stays bounded: nothing holds more than one record (plus a read buffer) at a time.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from easytune.data.encoding import Sniffed, TextFile
from easytune.data.errors import RowError
from easytune.i18n import UserError

CHUNK_CHARS = 1 << 20
RAW_KEEP = 2000  # characters of an oversized record kept for rejected.jsonl

def _snippet(text: str, pos: int, width: int = 30) -> str:
    start = max(0, pos - width)
    return text[start : pos + width].replace("\n", "⏎").replace("\r", "")


_UNDECODED = re.compile("[\udc80-\udcff]")


def _json_error(err: json.JSONDecodeError, text: str, first_line: int = 1) -> RowError:
    if _UNDECODED.search(text):
        return RowError("bad_encoding")
    return RowError(
        "invalid_json", at_line=first_line + err.lineno - 1, col=err.colno, snippet=_snippet(err.doc, err.pos)
    )


# The C scanner json.loads ends up in, called directly: for the common record (an object filling its line)
# it saves the layers around it. Same decoder settings as json.loads, so the same values come out.
_scan_value = json.scanner.make_scanner(json.JSONDecoder())


def parse_json(raw: str, line: int):
    """One JSON record. A trailing comma (an array element pasted as a line) is forgiven."""
    if raw[:1] == "{":
        try:
            value, end = _scan_value(raw, 0)
        except (StopIteration, ValueError):
            pass  # the full route below says what is wrong
        else:
            if end == len(raw) or not raw[end:].strip(" \t\n\r"):  # only JSON whitespace may follow
                return value
    try:
        return json.loads(raw)
    except ValueError as err:
        stripped = raw.rstrip()
        if stripped.endswith(","):
            try:
                return json.loads(stripped[:-1])
            except ValueError:
                pass
        raise _json_error(err, raw, line) from None


class Source:
    """An opened input: what it is, and a generator of records."""

    container: str = ""
    encoding: str | None = None
    details: dict
    columns: list[str] | None = None

    #: JSON sources can hand out raw record text (value None) so that parsing happens in the first stage,
    #: which may run in worker processes.
    parse = True

    def __init__(self, path: Path, size: int):
        self.path = path
        self.size = size
        self.details = {}
        self.blank = 0  # blank lines / empty rows skipped (reported, never counted as rows)

    @classmethod
    def for_file(cls, path: Path, sniffed: Sniffed, details: dict, *, max_record_bytes: int, sheet: str | None):
        """Open `path` as detection found it; `details` is what its reader's recogniser saw."""
        raise NotImplementedError

    def records(self) -> Iterator[tuple]:
        raise NotImplementedError

    @property
    def bytes_done(self) -> int:
        return self.size

    def sha256(self) -> str | None:
        return None

    def close(self) -> None:
        pass


class _TextSource(Source):
    def __init__(
        self, path: Path, sniffed: Sniffed, *, newline: str | None = None, start: int = 0, end: int | None = None
    ):
        super().__init__(path, sniffed.size)
        self.encoding = sniffed.encoding_name
        self.text = TextFile(path, sniffed.encoding, newline=newline, start=start, end=end)

    @property
    def bytes_done(self) -> int:
        return self.text.bytes_read

    def sha256(self) -> str | None:
        return self.text.sha256()

    def close(self) -> None:
        self.text.close()


# ---------------------------------------------------------------------------------------------- JSON Lines


class JsonLinesSource(_TextSource):
    """JSON Lines. A big UTF-8 file can also be cut into byte ranges (`ranges`) that other processes read
    with `open_range`, each yielding exactly the records (and line numbers) this source would."""

    container = "jsonl"

    def __init__(
        self, path, sniffed, *, max_record_bytes: int, start: int = 0, end: int | None = None, first_line: int = 1
    ):
        super().__init__(path, sniffed, start=start, end=end)
        self.max_record_bytes = max_record_bytes
        self.first_line = first_line

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed, max_record_bytes=max_record_bytes)

    def splittable(self) -> bool:
        """Whether `ranges` works: in UTF-8 a 0x0A byte is always a line break, never part of a character."""
        return self.text.codec in ("utf-8", "utf-8-sig")

    def ranges(self, piece: int) -> Iterator[tuple[int, int, int]]:
        r"""The whole file as consecutive byte ranges (start, end, first line) of about `piece` bytes, each
        ending just after a line break (or at the end of the file). The bytes go through the same counting,
        hashing reader as `records` would use (sha256 and bytes_done stay right); use one or the other.

        Line numbers follow the text reader's universal newlines: \n, \r\n and a lone \r each end a line.
        A range never ends between \r and \n (it ends after a \n); a block read here can, hence `cr_before`.
        """
        buf = bytearray(piece)
        start = pos = 0  # where the current range starts; bytes read so far
        first_line = 1
        breaks = 0  # line breaks in [start, pos)
        cr_before = False  # the previous block ended with \r
        while n := self.text.readinto_raw(buf):
            cut = buf.rfind(b"\n", 0, n) + 1  # the range ends here (0: no line break in this block)
            breaks += _line_breaks(buf, 0, cut or n, cr_before)
            if cut:
                yield start, pos + cut, first_line
                first_line += breaks
                start = pos + cut
                breaks = _line_breaks(buf, cut, n, False)
            cr_before = buf[n - 1] == 0x0D
            pos += n
        if start < pos:
            yield start, pos, first_line

    def records(self):
        readline = self.text.stream.readline
        limit = self.max_record_bytes
        quarter = limit // 4
        parse = self.parse
        lineno = self.first_line - 1
        while True:
            line = readline(limit + 1)
            if not line:
                return
            lineno += 1
            n = len(line)
            if n > quarter and (n > limit or len(line.encode("utf-8", "surrogatepass")) > limit):
                size = len(line.encode("utf-8", "surrogatepass"))
                if not line.endswith("\n"):
                    while True:
                        more = readline(CHUNK_CHARS)
                        if not more:
                            break
                        size += len(more.encode("utf-8", "surrogatepass"))
                        if more.endswith("\n"):
                            break
                yield (
                    lineno,
                    None,
                    line[:RAW_KEEP],
                    None,
                    RowError("too_large", size_kb=size // 1024, limit_kb=limit // 1024),
                )
                continue
            if line.isspace():
                self.blank += 1
                continue
            if not parse:
                yield lineno, None, line, None, None
                continue
            try:
                yield lineno, parse_json(line, lineno), line, None, None
            except RowError as err:
                yield lineno, None, line, None, err


def _line_breaks(buf: bytearray, i: int, j: int, cr_before: bool) -> int:
    r"""Line breaks (\n, \r\n or a lone \r) in buf[i:j]; cr_before: the byte before buf[i] was \r."""
    n = buf.count(b"\n", i, j)
    if buf.find(b"\r", i, j) >= 0:
        n += buf.count(b"\r", i, j) - buf.count(b"\r\n", i, j)
    if cr_before and i < j and buf[i] == 0x0A:
        n -= 1  # \r\n split between two blocks: counted once already, as the lone \r before
    return n


def open_range(path: Path, codec: str, start: int, end: int, first_line: int, max_record_bytes: int):
    """A JsonLinesSource over one range from `JsonLinesSource.ranges` (of a file read with `codec`)."""
    # A byte order mark is only skipped at the very start of the file, as the whole-file reader does.
    codec = codec if start == 0 else "utf-8"
    sniffed = Sniffed("text", end - start, codec, codec)
    return JsonLinesSource(
        path, sniffed, max_record_bytes=max_record_bytes, start=start, end=end, first_line=first_line
    )


# ---------------------------------------------------------------------------------- JSON array / JSON stream

_WS = re.compile(r"[ \t\r\n]*")
_STRUCT = re.compile(r'["\[\]{}]')
_STR_BODY = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
_SCALAR = re.compile(r"[^,\[\]{}\s]*")


class JsonSource(_TextSource):
    """A JSON array of records, or a stream of (possibly pretty-printed) JSON values one after another.

    Elements are found by a bracket/string scanner, then parsed one at a time, so a huge array never sits
    in memory and one broken element is rejected on its own. A cut-off file is a UserError that says where.
    """

    def __init__(self, path, sniffed, *, max_record_bytes: int, array: bool):
        super().__init__(path, sniffed)
        self.container = "json" if array else "json_stream"
        self.max_chars = max_record_bytes
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line = 1  # line number at buf[lpos]
        self.lpos = 0

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed, max_record_bytes=max_record_bytes, array=details["array"])

    # buffer management ---------------------------------------------------------------------------------
    def _more(self) -> int:
        """Read another chunk, dropping buf[:pos]. Returns how far indices shifted, or -1 at end of file."""
        if self.eof:
            return -1
        chunk = self.text.stream.read(CHUNK_CHARS)
        if not chunk:
            self.eof = True
            return -1
        shift = self.pos
        if shift:
            self.line += self.buf.count("\n", self.lpos, shift)
            self.buf = self.buf[shift:] + chunk
            self.pos = 0
            self.lpos = 0
        else:
            self.buf += chunk
        return shift

    def _line_at(self, i: int) -> int:
        if i > self.lpos:
            self.line += self.buf.count("\n", self.lpos, i)
            self.lpos = i
        return self.line

    def _peek(self) -> str | None:
        """Next non-whitespace character (pos moves onto it), or None at end of file."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self._more() < 0:
                return None

    def _scan(self) -> tuple[str | None, int, bool]:
        """Scan the value starting at pos. Returns (text or None if oversized, size in chars, complete)."""
        start = self.pos
        first = self.buf[start]
        if first in "{[":
            depth = 0
            i = start
            in_str = False
            oversized = None
            dropped = 0
            while True:
                buf = self.buf
                n = len(buf)
                if in_str:
                    j = _STR_BODY.match(buf, i).end()
                    if j < n and buf[j] == '"':
                        i = j + 1
                        in_str = False
                    else:
                        i = j
                if not in_str:
                    while True:
                        m = _STRUCT.search(buf, i)
                        if m is None:
                            i = n
                            break
                        i = m.end()
                        ch = buf[i - 1]
                        if ch == '"':
                            j = _STR_BODY.match(buf, i).end()
                            if j < n and buf[j] == '"':
                                i = j + 1
                                continue
                            in_str = True
                            i = j
                            break
                        if ch == "{" or ch == "[":
                            depth += 1
                        else:
                            depth -= 1
                            if depth == 0:
                                self.pos = i
                                if oversized is not None:
                                    return None, dropped + i - start, True
                                return buf[start:i], i - start, True
                # need more input
                if oversized is None and i - start > self.max_chars:
                    oversized = buf[start : start + RAW_KEEP]
                    self.oversized_raw = oversized
                if oversized is not None:
                    dropped += i - start
                    self.pos = i  # forget what was scanned; keep only the scanner state
                    start = i
                else:
                    self.pos = start
                shift = self._more()
                if shift < 0:
                    return None, dropped + len(self.buf) - start, False
                i -= shift
                start -= shift
        if first == '"':
            i = start + 1
            oversized = False
            dropped = 0
            while True:
                j = _STR_BODY.match(self.buf, i).end()
                if j < len(self.buf) and self.buf[j] == '"':
                    self.pos = j + 1
                    if oversized:
                        return None, dropped + j + 1 - start, True
                    return self.buf[start : j + 1], j + 1 - start, True
                i = j
                if not oversized and i - start > self.max_chars:
                    oversized = True
                    self.oversized_raw = self.buf[start : start + RAW_KEEP]
                if oversized:
                    dropped += i - start
                    self.pos = start = i
                else:
                    self.pos = start
                shift = self._more()
                if shift < 0:
                    return None, dropped + len(self.buf) - start, False
                i -= shift
                start -= shift
        while True:
            j = _SCALAR.match(self.buf, start).end()
            if j < len(self.buf) or self.eof:
                self.pos = max(j, start + 1)
                return self.buf[start : self.pos], self.pos - start, True
            self.pos = start
            if self._more() < 0:
                self.pos = len(self.buf)
                return self.buf[start:], len(self.buf) - start, True
            start = self.pos

    def records(self):
        index = 0
        in_array = False
        last_line = 1
        while True:
            ch = self._peek()
            if ch is None:
                if in_array:
                    raise UserError("data.json_unclosed", name=self.path.name, record=index, line=last_line)
                return
            if in_array:
                if ch == "]":
                    self.pos += 1
                    in_array = False
                    continue
                if ch == ",":
                    self.pos += 1
                    continue
            elif ch == "[":
                self.pos += 1
                in_array = True
                self.details["arrays"] = self.details.get("arrays", 0) + 1
                continue
            index += 1
            line = self._line_at(self.pos)
            self.oversized_raw = None
            text, size, complete = self._scan()
            last_line = self._line_at(self.pos)
            if not complete:
                raise UserError("data.json_truncated", name=self.path.name, record=index, line=line)
            if text is None or size > self.max_chars:
                raw = self.oversized_raw if text is None else text[:RAW_KEEP]
                yield (
                    index,
                    None,
                    raw,
                    line,
                    RowError("too_large", size_kb=size // 1024, limit_kb=self.max_chars // 1024),
                )
                continue
            if not self.parse:
                yield index, None, text, line, None
                continue
            try:
                yield index, parse_json(text, line), text, line, None
            except RowError as err:
                yield index, None, text, line, err


# ---------------------------------------------------------------------------------------------------- CSV

_CSV_DELIMITERS = (",", "\t", ";", "|")


def sniff_delimiter(sample: str, ext: str) -> tuple[str, int, float]:
    """(delimiter, columns, consistency 0..1) from the first rows of a CSV/TSV sample."""
    if len(sample) >= 65536:
        cut = sample.rfind("\n", 0, 65536)
        sample = sample[: cut if cut > 0 else 65536]
    order = (
        ("\t",) + tuple(d for d in _CSV_DELIMITERS if d != "\t")
        if ext in (".tsv", ".tab")
        else _CSV_DELIMITERS
    )
    best = (order[0], 1, 0.0)
    best_score = -1.0
    for delim in order:
        try:
            rows = [r for r in csv.reader(sample.splitlines(keepends=True)[:2000], delimiter=delim) if r][:60]
        except csv.Error:
            continue
        if len(rows) > 2 and len(sample) >= 65536:
            rows = rows[:-1]  # the sample may end mid-record
        if not rows:
            continue
        width = len(rows[0])
        if width < 2:
            continue
        consistent = sum(1 for r in rows if len(r) == width) / len(rows)
        score = consistent + min(width, 8) / 100
        if score > best_score:
            best, best_score = (delim, width, consistent), score
    return best


def _clean_header(names) -> list[str]:
    out, seen = [], {}
    for i, name in enumerate(names, 1):
        name = "" if name is None else str(name).replace("\ufeff", "").strip()
        if not name:
            name = f"column{i}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        else:
            seen[name] = 1
        out.append(name)
    return out


class CsvSource(_TextSource):
    container = "csv"

    def __init__(self, path, sniffed, *, max_record_bytes: int, delimiter: str):
        super().__init__(path, sniffed, newline="")
        self.delimiter = delimiter
        self.container = "tsv" if delimiter == "\t" else "csv"
        self.details["delimiter"] = delimiter
        self.max_record_bytes = max_record_bytes
        csv.field_size_limit(max(csv.field_size_limit(), max_record_bytes))
        self._reader = csv.reader(self.text.stream, delimiter=delimiter)
        try:
            header = next(self._reader)
        except StopIteration:
            header = []
        except csv.Error:
            raise UserError("data.csv_unreadable", name=path.name, line=1) from None
        self.columns = _clean_header(header)
        if not any(h.strip() for h in header):
            raise UserError("data.csv_no_header", name=path.name)

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed, max_record_bytes=max_record_bytes, delimiter=details["delimiter"])

    def records(self):
        reader = self._reader
        columns = self.columns
        width = len(columns)
        row_no = 1
        errors_in_a_row = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                row_no += 1
                errors_in_a_row += 1
                if errors_in_a_row > 100:
                    raise UserError("data.csv_unreadable", name=self.path.name, line=row_no) from None
                text = str(err)
                reason = (
                    RowError(
                        "too_large",
                        size_kb=self.max_record_bytes // 1024,
                        limit_kb=self.max_record_bytes // 1024,
                    )
                    if "field limit" in text
                    else RowError("csv_broken_row")
                )
                yield row_no, None, None, None, reason
                continue
            errors_in_a_row = 0
            row_no += 1
            if not row or not any(cell.strip() for cell in row):
                self.blank += 1
                continue
            if len(row) > width:
                while len(row) > width and not row[-1].strip():
                    row.pop()
                if len(row) > width:
                    yield (
                        row_no,
                        None,
                        self.delimiter.join(row),
                        None,
                        RowError("csv_field_count", expected=width, got=len(row)),
                    )
                    continue
            if len(row) < width:
                row = row + [""] * (width - len(row))
            yield row_no, dict(zip(columns, row)), None, None, None


# --------------------------------------------------------------------------------------------- plain text


class TextLinesSource(_TextSource):
    """Raw text: one record per line, or per paragraph (blocks separated by blank lines)."""

    container = "text"

    def __init__(self, path, sniffed, *, max_record_bytes: int, unit: str):
        super().__init__(path, sniffed)
        self.unit = unit
        self.details["unit"] = unit
        self.max_record_bytes = max_record_bytes

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed, max_record_bytes=max_record_bytes, unit=details["unit"])

    def _lines(self):
        readline = self.text.stream.readline
        limit = self.max_record_bytes
        lineno = 0
        while True:
            line = readline(limit + 1)
            if not line:
                return
            lineno += 1
            if len(line) > limit and not line.endswith("\n"):
                size = len(line)
                while True:
                    more = readline(CHUNK_CHARS)
                    size += len(more)
                    if not more or more.endswith("\n"):
                        break
                yield lineno, None, line[:RAW_KEEP], size
                continue
            yield lineno, line.rstrip("\r\n"), None, 0

    def records(self):
        limit = self.max_record_bytes
        if self.unit == "line":
            for lineno, text, raw, size in self._lines():
                if text is None:
                    yield (
                        lineno,
                        None,
                        raw,
                        None,
                        RowError("too_large", size_kb=size // 1024, limit_kb=limit // 1024),
                    )
                elif not text.strip():
                    self.blank += 1
                else:
                    yield lineno, text, text, None, None
            return
        block: list[str] = []
        start = 0
        size = 0
        over = None
        for lineno, text, raw, big in self._lines():
            if text is not None and not text.strip():
                if block or over:
                    yield from self._paragraph(start, block, size, over)
                    block, size, over = [], 0, None
                self.blank += 1
                continue
            if not block and over is None:
                start = lineno
            if text is None:
                over = raw
                size += big
                continue
            size += len(text) + 1
            if over is None and size > limit:
                over = "\n".join(block)[:RAW_KEEP]
                block = []
            if over is None:
                block.append(text)
        if block or over:
            yield from self._paragraph(start, block, size, over)

    def _paragraph(self, start, block, size, over):
        if over is not None:
            limit = self.max_record_bytes
            yield start, None, over, None, RowError("too_large", size_kb=size // 1024, limit_kb=limit // 1024)
        else:
            text = "\n".join(block)
            yield start, text, text, None, None


# -------------------------------------------------------------------------------------------------- Excel


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    return str(value)


class XlsxSource(Source):
    container = "xlsx"

    def __init__(self, path, size, *, sheet: str | None = None):
        super().__init__(path, size)
        try:
            from openpyxl import load_workbook
        except ImportError:  # pragma: no cover - declared dependency
            raise UserError("data.xlsx_support_missing") from None
        try:
            self._wb = load_workbook(path, read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a damaged workbook
            raise UserError("data.xlsx_unreadable", name=path.name) from None
        names = self._wb.sheetnames
        if sheet is not None and sheet not in names:
            raise UserError("data.xlsx_no_sheet", name=path.name, sheet=sheet, sheets=", ".join(names))
        self._ws = None
        self._rows = None
        for name in [sheet] if sheet else names:
            rows = self._wb[name].iter_rows(values_only=True)
            for header_row, header in enumerate(rows, 1):
                if header and any(c not in (None, "") for c in header):
                    self._ws, self._rows, self._header = self._wb[name], rows, header
                    self._header_row = header_row
                    break
            if self._ws is not None:
                break
        if self._ws is None:
            raise UserError("data.empty_workbook", name=path.name)
        self.details["sheet"] = self._ws.title
        self.details["sheets"] = names
        width = len(self._header)
        while width and self._header[width - 1] in (None, ""):
            width -= 1
        self.columns = _clean_header(self._header[:width])
        self._max_row = self._ws.max_row or 0
        self._done_rows = self._header_row

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed.size, sheet=sheet)

    @property
    def bytes_done(self) -> int:
        if not self._max_row:
            return 0
        return min(self.size, self.size * self._done_rows // self._max_row)

    def records(self):
        columns = self.columns
        width = len(columns)
        row_no = self._header_row
        for row in self._rows:
            row_no += 1
            self._done_rows = row_no
            cells = [_cell(v) for v in row[:width]]
            if not any(c != "" and c is not None for c in cells):
                extra = [v for v in row[width:] if v not in (None, "")]
                if not extra:
                    self.blank += 1
                    continue
            if len(cells) < width:
                cells += [""] * (width - len(cells))
            yield row_no, dict(zip(columns, cells)), None, None, None

    def close(self) -> None:
        self._wb.close()


# ------------------------------------------------------------------------------------------------ Parquet


class ParquetSource(Source):
    container = "parquet"

    def __init__(self, path, size):
        super().__init__(path, size)
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - declared dependency
            raise UserError("data.parquet_support_missing") from None
        try:
            self._pf = pq.ParquetFile(path)
        except Exception:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError variants when damaged
            raise UserError("data.parquet_unreadable", name=path.name) from None
        self.columns = list(self._pf.schema_arrow.names)
        self._total = self._pf.metadata.num_rows
        self._done = 0

    @classmethod
    def for_file(cls, path, sniffed, details, *, max_record_bytes, sheet):
        return cls(path, sniffed.size)

    @property
    def bytes_done(self) -> int:
        return self.size * self._done // self._total if self._total else self.size

    def records(self):
        row_no = 0
        try:
            for batch in self._pf.iter_batches(batch_size=2048):
                for value in batch.to_pylist():
                    row_no += 1
                    yield row_no, value, None, None, None
                self._done = row_no
        except OSError:
            raise UserError("data.parquet_unreadable", name=self.path.name) from None

    def close(self) -> None:
        self._pf.close() if hasattr(self._pf, "close") else None


# ------------------------------------------------------------------------------------------ recognising


def _json_array(sniffed: Sniffed, ext: str, claimed: bool) -> dict | None:
    return {"array": True} if re.match(r"\[\s*(?:[{\[\"\]]|$)", sniffed.head_text.lstrip()) else None


def _json_lines(sniffed: Sniffed, ext: str, claimed: bool) -> dict | None:
    """Objects one per line: most of the first complete lines parse on their own (or the first does)."""
    head = sniffed.head_text
    if not head.lstrip().startswith("{"):
        return None
    lines = [ln for ln in head.splitlines()[:50] if ln.strip()]
    complete_lines = lines if sniffed.head_complete else lines[:-1]
    parsed = 0
    for ln in complete_lines[:20]:
        try:
            json.loads(ln)
            parsed += 1
        except ValueError:
            pass
    if complete_lines and parsed and (parsed >= len(complete_lines[:20]) / 2 or _first_parses(complete_lines)):
        return {}
    if claimed and not complete_lines:  # one record longer than the head: the extension says what it is
        return {}
    return None


def _json_stream(sniffed: Sniffed, ext: str, claimed: bool) -> dict | None:
    return {"array": False} if sniffed.head_text.lstrip().startswith("{") else None


def _first_parses(lines: list[str]) -> bool:
    try:
        json.loads(lines[0])
        return True
    except ValueError:
        return False


def _delimited(sniffed: Sniffed, ext: str, claimed: bool) -> dict | None:
    """Rows of the same width: certain when named .csv/.tsv, else only when nearly every row agrees."""
    head = sniffed.head_text
    delim, width, consistency = sniff_delimiter(head, ext)
    if claimed or (width >= 2 and consistency >= 0.9 and head.count("\n") >= 1):
        return {"delimiter": delim, "width": width}
    return None


def _plain_text(sniffed: Sniffed, ext: str, claimed: bool) -> dict:
    return {"unit": text_unit(sniffed.head_text)}


def text_unit(head: str) -> str:
    """'paragraph' when blank lines separate blocks of several lines, else 'line'."""
    lines = head.splitlines()
    blank = sum(1 for ln in lines if not ln.strip())
    if not blank:
        return "line"
    blocks = blank + 1
    return "paragraph" if (len(lines) - blank) / blocks >= 1.5 else "line"


# ------------------------------------------------------------------------------------------- the readers


@dataclass(frozen=True)
class Reader:
    """One kind of data file the import reads. Detection, opening, the upload picker's file types and the
    messages that list what is supported all read READERS: a new reader is one entry here (with its Source
    and, for text, its recogniser) plus its data.container.<name> message."""

    name: str  # the container it reports (data.container.<name> names it to the user)
    extensions: tuple[str, ...]  # the names it is known by: the upload picker and the messages list them
    source: type[Source]  # opened with Source.for_file(path, sniffed, details, ...)
    magic: str = "text"  # Sniffed.kind it reads: a binary format is told by its first bytes (encoding.sniff)
    # A text format: its details when the head is this format, else None; `claimed`: the extension is its own.
    recognise: Callable[[Sniffed, str, bool], dict | None] | None = None
    sure: bool = False  # its content is unmistakable: it wins over another reader's extension
    extension_decides: bool = False  # a file named like it is read as it, whatever the content looks like
    mismatch: str | None = None  # message key for a file named like a `sure` reader that holds something else
    also_claims: tuple[str, ...] = ()  # other spellings of its extensions, claimed but not listed

    def claims(self, ext: str) -> bool:
        return ext in self.extensions or ext in self.also_claims


# In the order they are tried: unmistakable content first, then guesses, plain text last (it takes anything).
READERS: tuple[Reader, ...] = (
    Reader("json", (".json",), JsonSource, recognise=_json_array, sure=True, mismatch="data.not_json"),
    Reader("jsonl", (".jsonl",), JsonLinesSource, recognise=_json_lines, sure=True, mismatch="data.not_json",
           also_claims=(".ndjson",)),
    Reader("json_stream", (), JsonSource, recognise=_json_stream, sure=True),
    Reader("csv", (".csv", ".tsv"), CsvSource, recognise=_delimited, extension_decides=True,
           also_claims=(".tab",)),
    Reader("text", (".txt",), TextLinesSource, recognise=_plain_text, also_claims=(".text", ".md")),
    Reader("xlsx", (".xlsx",), XlsxSource, magic="xlsx"),
    Reader("parquet", (".parquet",), ParquetSource, magic="parquet"),
)
PLAIN_TEXT = next(r for r in READERS if r.name == "text")  # where a file whose head is still blank goes


def listed_extensions() -> list[str]:
    """The file types the import names to the user (upload picker, messages), in the readers' order."""
    return [ext for reader in READERS for ext in reader.extensions]


def supported_formats() -> str:
    """The listed extensions as the {formats} of a message."""
    return ", ".join(listed_extensions())


def detect_reader(sniffed: Sniffed, ext: str) -> tuple[Reader, dict]:
    """The reader of a file and what its recogniser saw. A binary format is told by its magic bytes; a text
    format by its content, where the extension decides (CSV), insists (JSON) or rules out guesses."""
    if sniffed.kind != "text":
        return next(r for r in READERS if r.magic == sniffed.kind), {}
    head = sniffed.head_text.lstrip()
    if not head:
        if sniffed.head_complete:
            raise UserError("data.blank_file")
        return PLAIN_TEXT, {"unit": "line"}
    text_readers = [r for r in READERS if r.magic == "text"]
    owner = next((r for r in text_readers if r.claims(ext)), None)
    if owner is not None and owner.extension_decides:
        return owner, owner.recognise(sniffed, ext, True)
    for reader in (r for r in text_readers if r.sure):
        details = reader.recognise(sniffed, ext, reader is owner)
        if details is not None:
            return reader, details
    if owner is not None and owner.sure:
        raise UserError(owner.mismatch, snippet=head.splitlines()[0][:60])
    # Guesses only for a name no reader claims (or their own): a .txt stays text even if it looks tabular.
    for reader in (r for r in text_readers if not r.sure and owner in (None, r)):
        details = reader.recognise(sniffed, ext, reader is owner)
        if details is not None:
            return reader, details
    raise AssertionError("plain text takes any content")  # pragma: no cover


def open_source(path: Path, sniffed: Sniffed, *, max_record_bytes: int, sheet: str | None = None) -> Source:
    path = Path(path)
    if sniffed.kind == "binary":  # no reader reads it: name the formats that are read
        raise UserError("data.binary_file", name=path.name, formats=supported_formats())
    reader, details = detect_reader(sniffed, path.suffix.lower())
    return reader.source.for_file(path, sniffed, details, max_record_bytes=max_record_bytes, sheet=sheet)
