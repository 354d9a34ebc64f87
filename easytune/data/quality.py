"""Quality checks on canonical rows: duplicates, personal data, language mix, lengths, short answers.

Everything here is streaming and cheap per row. Exact duplicates compare the whole canonical content;
near-duplicates compare a normalised fingerprint (case, width, whitespace and punctuation ignored) for every
row, plus MinHash over character shingles (catches lightly edited copies) for the first `minhash_rows` rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import unicodedata
from array import array
from bisect import bisect_right

from easytune.evaluation.facts import facts_of
from easytune.evaluation.metrics import rouge_l

# ------------------------------------------------------------------------------------------ row text


def row_parts(row: dict) -> tuple[list[str], list[str], list[str]]:
    """(prompt texts, answer texts, other texts) of a canonical row."""
    kind = row["kind"]
    if kind == "text":
        return [row["text"]], [], []
    messages = row["messages"]
    if kind == "sft":
        prompt, answer = [], []
        for m in messages:
            (answer if m["role"] in ("assistant", "function_call") else prompt).append(m["content"])
        return prompt, answer, []
    if kind == "kto":
        return [m["content"] for m in messages[:-1]], [messages[-1]["content"]], []
    return [m["content"] for m in messages], [row["chosen"]], [row["rejected"]]


# ------------------------------------------------------------------------------------------ personal data

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
# Starts with a digit so the regex engine can skip ahead fast; the "+" / "(" before it and the word
# boundaries are checked by hand in find_pii.
_NUMBER = re.compile(r"[0-9](?:[ \-()]{0,2}[0-9]){9,22}[Xx]?")
_WORDISH = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_ARITHMETIC = set("+-*/=×÷^<>")
_NANP = re.compile(r"\(?\d{3}\)?[ \-]?\d{3}[ \-]\d{4}")
_CARD_FORMAT = re.compile(r"\d{13,19}|\d{4}(?:[ \-]\d{4}){2,3}(?:[ \-]\d{1,4})?")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

PII_TYPES = ("phone", "email", "id_card", "bank_card")
MASKS = {"phone": "[PHONE]", "email": "[EMAIL]", "id_card": "[ID_NUMBER]", "bank_card": "[BANK_CARD]"}


def china_id_ok(s: str) -> bool:
    """18-character mainland ID number: plausible region and birth date, and the ISO 7064 check character."""
    if len(s) != 18 or not s[:17].isdigit() or s[0] not in "123456789":
        return False
    total = sum(int(s[i]) * _ID_WEIGHTS[i] for i in range(17))
    if _ID_CHECK[total % 11] != s[17].upper():
        return False
    year, month, day = int(s[6:10]), int(s[10:12]), int(s[12:14])
    return 1900 <= year <= 2100 and 1 <= month <= 12 and 1 <= day <= 31


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = ord(ch) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def _number_kind(raw: str) -> str | None:
    digits = "".join(c for c in raw if c.isdigit())
    n = len(digits)
    if raw[-1] in "Xx":
        return "id_card" if n == 17 and china_id_ok(digits + "X") else None
    if n == 18 and china_id_ok(digits):
        return "id_card"
    local = digits[2:] if (raw.startswith("+86") or (n == 13 and digits.startswith("86"))) else digits
    if len(local) == 11 and local[0] == "1" and local[1] in "3456789":
        return "phone"
    if raw.startswith("+") and 8 <= n <= 15:
        return "phone"
    if local[0] == "0" and 10 <= len(local) <= 12 and any(c in raw for c in "-( "):
        return "phone"  # mainland landline with area code, e.g. 010-12345678
    if n == 10 and _NANP.fullmatch(raw):
        return "phone"
    if (
        13 <= n <= 19
        and (digits[0] in "3456" or (n == 19 and digits[0] == "9"))
        and _CARD_FORMAT.fullmatch(raw)
        and luhn_ok(digits)
    ):
        return "bank_card"
    return None


# Every byte except the ASCII digits: deleting them leaves the digits. A UTF-8 multi-byte character never
# contains a byte in 0x30..0x39, so the count is the same as in the text.
_NOT_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)


def may_have_pii(text: str, data: bytes | None = None) -> bool:
    """Cheap pre-check: False means find_pii would find nothing. `data`: the text as UTF-8, when at hand.

    Every number find_pii looks at has at least 10 ASCII digits, so with the bytes at hand a digit count
    (one C pass) rules most rows out before the regex runs."""
    if "@" in text:
        return True
    if data is not None and len(data.translate(None, _NOT_DIGITS)) < 10:
        return False
    return _NUMBER.search(text) is not None


def find_pii(text: str) -> list[tuple[int, int, str]]:
    """Spans (start, end, type) of personal data in text, in order, not overlapping."""
    spans: list[tuple[int, int, str]] = []
    if "@" in text:
        spans = [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
    for m in _NUMBER.finditer(text):
        start, end = m.span()
        if end < len(text) and text[end] in _WORDISH:
            continue
        if start and text[start - 1] == "(":
            start -= 1
        if start and text[start - 1] == "+":
            start -= 1
        if start and (text[start - 1] in _WORDISH or text[start - 1] in ".-"):
            continue
        raw = text[start:end]
        kind = _number_kind(raw)
        if kind is None or any(s <= start < e for s, e, _ in spans):
            continue
        if kind != "id_card" and _in_arithmetic(text, start, end):
            continue  # a long number in a sum is a number, not a phone or a card
        spans.append((start, end, kind))
    spans.sort()
    return spans


def _in_arithmetic(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - 3) : start].strip()
    after = text[end : end + 3].strip()
    return bool((before and before[-1] in _ARITHMETIC) or (after and after[0] in _ARITHMETIC))


def mask_text(text: str, spans) -> str:
    out, last = [], 0
    for start, end, kind in spans:
        out.append(text[last:start])
        out.append(MASKS[kind])
        last = end
    out.append(text[last:])
    return "".join(out)


def _partial(value: str, kind: str) -> str:
    """A hint of what was found, safe to show in a report."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return local[:1] + "***@" + domain
    keep = 3 if kind == "phone" else 4
    digits = [c for c in value if c.isalnum()]
    if len(digits) <= keep + 4:
        return "*" * len(digits)
    return "".join(digits[:keep]) + "*" * (len(digits) - keep - 4) + "".join(digits[-4:])


# ------------------------------------------------------------------------------------------ language

_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def _lead_byte_classes() -> bytes:
    """A bytes.translate table that turns each UTF-8 lead byte into a letter naming its script, and each
    ASCII letter into "L" (so b"LL" in the result means a Latin word is there)."""
    table = bytearray(b"." * 256)
    for b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        table[b] = ord("L")
    for b in range(0xE4, 0xEA):
        table[b] = ord("H")  # U+4000..U+9FFF: CJK unified ideographs
    for b in range(0xEA, 0xEE):
        table[b] = ord("K")  # U+A000..U+DFFF: mostly Hangul
    for b in range(0xC3, 0xCA):
        table[b] = ord("A")  # U+00C0..U+027F: accented Latin
    for b in list(range(0xCE, 0xDC)) + [0xE0]:
        table[b] = ord("O")  # Greek, Cyrillic, Hebrew, Arabic, Indic, Thai
    return bytes(table)


_LEADS = _lead_byte_classes()
_KANA = (b"\xe3\x81", b"\xe3\x82", b"\xe3\x83")  # U+3040..U+30FF


def language(sample: str) -> str:
    """'zh', 'en' or 'other' for a short sample (Latin-script text without many accents counts as en)."""
    if sample.isascii():
        return "en" if _LATIN_WORD.search(sample) else "other"
    data = sample.encode("utf-8", "surrogatepass")
    classes = data.translate(_LEADS)
    han = classes.count(b"H")
    words = len(_LATIN_WORD.findall(sample)) if b"LL" in classes else 0  # no regex pass over Latin-free text
    if han:
        kana_hangul = classes.count(b"K") if b"K" in classes else 0
        if b"\xe3\x81" in data or b"\xe3\x82" in data or b"\xe3\x83" in data:  # any kana at all
            kana_hangul += sum(data.count(k) for k in _KANA)
        if kana_hangul * 2 > han:
            return "other"
        if han * 4 >= words * 3:  # ~1.5 Han characters per word
            return "zh"
    elif b"K" in classes or any(k in data for k in _KANA):
        return "other"
    if classes.count(b"O") > words:
        return "other"
    if not words:
        return "zh" if han else "other"
    accented = classes.count(b"A")
    if accented >= 3 and accented * 20 >= words:
        return "other"
    return "en"


# ------------------------------------------------------------------------------------------ lengths

HIST_EDGES = (0, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)


_U32_MAX = 4294967295


class LengthStats:
    """All values in a compact array (4 bytes a row) for exact percentiles and a log-scale histogram
    (both worked out at the end, from the values)."""

    def __init__(self):
        self.values = array("I")
        self.total = 0

    def add(self, n: int) -> None:
        self.values.append(min(n, _U32_MAX))
        self.total += n

    def add_many(self, values: array) -> None:
        """The same as add() for each value, at C speed."""
        self.total += sum(values)
        try:
            self.values.extend(array("I", values))
        except OverflowError:  # a value over 2**32 - 1: stored capped, as add() does
            self.values.extend(array("I", (min(n, _U32_MAX) for n in values)))

    def histogram(self) -> list[int]:
        """Rows per HIST_EDGES bucket. A capped value lands in the last bucket, as the real one would."""
        try:
            import numpy as np

            index = np.searchsorted(HIST_EDGES, np.frombuffer(self.values, dtype=np.uint32), side="right") - 1
            return [int(c) for c in np.bincount(index, minlength=len(HIST_EDGES))]
        except ImportError:  # pragma: no cover - numpy comes with pyarrow
            hist = [0] * len(HIST_EDGES)
            for n in self.values:
                hist[bisect_right(HIST_EDGES, n) - 1] += 1
            return hist

    def summary(self) -> dict | None:
        n = len(self.values)
        if not n:
            return None
        try:
            import numpy as np

            arr = np.frombuffer(self.values, dtype=np.uint32)
            p50, p90, p99 = (int(x) for x in np.percentile(arr, [50, 90, 99], method="nearest"))
            top = int(arr.max())
        except ImportError:  # pragma: no cover - numpy comes with pyarrow
            ordered = sorted(self.values)
            p50, p90, p99 = (ordered[min(n - 1, round(q * (n - 1)))] for q in (0.5, 0.9, 0.99))
            top = ordered[-1]
        buckets = []
        for i, count in enumerate(self.histogram()):
            if count:
                hi = HIST_EDGES[i + 1] if i + 1 < len(HIST_EDGES) else None
                buckets.append({"lo": HIST_EDGES[i], "hi": hi, "count": count})
        return {
            "p50": p50,
            "p90": p90,
            "p99": p99,
            "max": top,
            "mean": round(self.total / n, 1),
            "histogram": buckets,
        }


def estimate_tokens(text: str, n_bytes: int | None = None) -> int:
    """Rough token count without a tokenizer: ~4 Latin characters or ~1 Han character per token.
    `n_bytes`: the length of the text in UTF-8, when already known."""
    n = len(text)
    if n_bytes is None:
        n_bytes = len(text.encode("utf-8", "surrogatepass"))
    wide = (n_bytes - n) // 2
    return max(1, round((n - wide) / 4 + wide))


# ------------------------------------------------------------------------------------------ duplicates

_ASCII_NON_WORD = bytes(c for c in range(128) if not chr(c).isalnum())
# What a fingerprint leaves out: ASCII other than letters and digits (as _ASCII_NON_WORD), and punctuation
# and spaces outside ASCII: Latin-1 signs, general punctuation (dashes, quotes, …), CJK punctuation
# (、。《》「」【】, ideographic space) and full-width punctuation (，！？：；（）).
_NON_WORD = re.compile(
    r"[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f\u00a0-\u00bf\u2000-\u206f\u3000-\u303f"
    r"\uff00-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]+"
)
_FULL_WIDTH_ALNUM = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")


# bytes.translate table: A-Z to a-z, everything else unchanged (str.lower() of ASCII text, in one pass
# together with the deletion of non-word characters).
_ASCII_LOWER = bytes(range(65)) + bytes(range(97, 123)) + bytes(range(91, 256))


def fingerprint(text: str, data: bytes | None = None) -> bytes:
    """UTF-8 of the text with case, full/half width, whitespace and punctuation differences removed.
    `data`: the text as UTF-8 (surrogatepass), when already at hand."""
    if data is None:
        data = text.encode("utf-8", "surrogatepass")
    if data.isascii():
        return data.translate(_ASCII_LOWER, _ASCII_NON_WORD)
    lowered = text.lower()
    # U+FF00..U+FF7F start with these bytes in UTF-8: without them no full-width letter or digit is there
    if (b"\xef\xbc" in data or b"\xef\xbd" in data) and _FULL_WIDTH_ALNUM.search(lowered):
        lowered = unicodedata.normalize("NFKC", text).lower()
    return _NON_WORD.sub("", lowered).encode("utf-8", "surrogatepass")


MINHASH_K, MINHASH_BANDS, MINHASH_ROWS, SHINGLE = 32, 6, 5, 5
MINHASH_MAX_CHARS, MINHASH_MIN_CHARS, MINHASH_THRESHOLD = 2000, 20, 0.7
_MINHASH_MULTS = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def minhash_signatures(texts: list[str]) -> list[bytes | None]:
    """MinHash signatures (one-permutation hashing, 32 buckets of uint32) over 5-character shingles, for a
    whole batch of texts at once; None for texts too short to compare. Needs numpy."""
    import numpy as np

    u32 = np.uint32
    k = MINHASH_K
    texts = [t[:MINHASH_MAX_CHARS] for t in texts]
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.intp, count=len(texts))
    joined = "\x00".join(texts) + "\x00" * SHINGLE
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    n = int(lengths.sum())
    h = codes[:n] * u32(_MINHASH_MULTS[0])
    for j in range(1, SHINGLE):
        h ^= codes[j : j + n] * u32(_MINHASH_MULTS[j])
    h ^= h >> u32(16)  # murmur3 finaliser
    h *= u32(0x85EBCA6B)
    h ^= h >> u32(13)
    h *= u32(0xC2B2AE35)
    h ^= h >> u32(16)
    zero = codes == 0  # the separator: a shingle touching it spans two texts and is ignored
    bad = zero[:n].copy()
    for j in range(1, SHINGLE):
        bad |= zero[j : j + n]
    value = (h >> u32(5)) | (bad.astype(np.uint32) * u32(0xFFFFFFFF))
    key = np.repeat(np.arange(len(texts), dtype=np.intp) * k, lengths)
    key += (h & u32(k - 1)).astype(np.intp)
    sig = np.full(len(texts) * k, 0xFFFFFFFF, dtype=np.uint32)
    np.minimum.at(sig, key, value)
    raw = sig.tobytes()
    width = 4 * k
    return [
        raw[i * width : (i + 1) * width] if len(t) >= MINHASH_MIN_CHARS else None for i, t in enumerate(texts)
    ]


class MinHashIndex:
    """LSH index over MinHash signatures (6 bands of 5 buckets), filled one row at a time in file order."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.sigs: list[int] = []  # as integers, ready for _lanes_differing
        self.lines = array("q")
        self.asks = array("Q")  # question_key() of each row
        self.tables: list[dict] = [{} for _ in range(MINHASH_BANDS)]

    def full(self) -> bool:
        return len(self.sigs) >= self.capacity

    def add(self, sig: bytes, line: int, asked: int = 0) -> int | None:
        """Index one signature; return the line of an earlier similar row, if any. A row that answers as an
        earlier one does to a question in other words (`asked`: question_key(), 0 for none) is not a copy of
        it but the same answer asked another way, which teaches it better."""
        idx = len(self.sigs)
        mine = int.from_bytes(sig, "little")
        self.sigs.append(mine)
        self.lines.append(line)
        self.asks.append(asked)
        width = 4 * MINHASH_ROWS
        candidates = set()
        for b, table in enumerate(self.tables):
            other = table.setdefault(sig[b * width : (b + 1) * width], idx)
            if other != idx:
                candidates.add(other)
        if not candidates:
            return None
        need = MINHASH_THRESHOLD * MINHASH_K
        for other in sorted(candidates):
            reworded = asked and self.asks[other] and asked != self.asks[other]
            if not reworded and MINHASH_K - _lanes_differing(mine ^ self.sigs[other]) >= need:
                return self.lines[other]
        return None


# Signatures compared as one big integer each: XOR them, then count the 32-bit lanes that are not zero.
# Adding 0x7FFFFFFF to the low 31 bits of a lane carries into its top bit exactly when those bits are
# not all zero (and never into the next lane); OR-ing the lane itself in covers its top bit.
_LOW31 = int.from_bytes(b"\xff\xff\xff\x7f" * MINHASH_K, "little")
_TOP1 = int.from_bytes(b"\x00\x00\x00\x80" * MINHASH_K, "little")


def _lanes_differing(x: int) -> int:
    """How many of the MINHASH_K 32-bit lanes of x are not zero (the buckets two signatures disagree on)."""
    return ((((x & _LOW31) + _LOW31) | x) & _TOP1).bit_count()


class FingerprintTable:
    """64-bit key -> 64-bit value, open addressing in two flat arrays: ~22 bytes a row instead of the ~115
    a dict of Python ints costs, which matters for files with millions of rows."""

    def __init__(self, capacity: int = 1 << 14):
        self.keys = array("Q", bytes(8 * capacity))
        self.values = array("Q", bytes(8 * capacity))
        self.mask = capacity - 1
        self.count = 0

    def setdefault(self, key: int, value: int) -> int | None:
        """The value stored for key, or None after storing `value` for it."""
        key = key or 1  # 0 marks an empty slot
        keys, mask = self.keys, self.mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key:
                return self.values[i]
            if not k:
                keys[i] = key
                self.values[i] = value
                self.count += 1
                if self.count * 4 > mask * 3:
                    self._grow()
                return None
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = zip(self.keys, self.values)
        capacity = 2 * (self.mask + 1)
        self.keys = array("Q", bytes(8 * capacity))
        self.values = array("Q", bytes(8 * capacity))
        self.mask = capacity - 1
        keys, values, mask = self.keys, self.values, self.mask
        for key, value in old:
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                values[i] = value


# ------------------------------------------------------------------------------------------ per row

_PLACEHOLDER = re.compile(r"\{\{\s*([\w.\-]+)\s*\}\}")
EXAMPLES = 10
SHORT_ANSWER_CHARS = 5


def fingerprint_key(all_text: str, data: bytes | None = None) -> tuple[int, bytes]:
    """(64-bit key, normalised bytes) used to find near-duplicates. `data`: all_text as UTF-8, if at hand."""
    fp_bytes = fingerprint(all_text, data)
    return int.from_bytes(hashlib.blake2b(fp_bytes, digest_size=8).digest(), "little"), fp_bytes


def question_key(parts: tuple) -> int:
    """A 64-bit key of what a row asks (its prompt texts, fingerprinted: case, width, spacing and punctuation
    ignored), for a row whose answer is the longer part: there, rows alike (MinHash) but asking different
    things are alike by their answer. 0 for any other row (a long text with a short answer: two lightly
    edited copies of the text ask different things and are still copies). `parts`: row_parts()."""
    prompt, answer, _ = parts
    asked = "\n".join(prompt)
    if not (asked and answer) or len(asked) >= sum(map(len, answer)):
        return 0
    digest = hashlib.blake2b(fingerprint(asked), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


def digest_low(digest: bytes) -> int:
    """The part of a row's content hash kept beside its fingerprint: equal fingerprints with equal lows
    are exact duplicates, with different lows near ones."""
    return int.from_bytes(digest[:3], "little")


def measure(
    row: dict,
    parts: tuple,
    all_text: str,
    tokenizer_len=None,
    short_chars: int = SHORT_ANSWER_CHARS,
    n_bytes: int | None = None,
) -> tuple:
    """What the statistics need from one row, as a small tuple:
    (language, chars, answer chars or -1, tokens, short answer, placeholder names, has system prompt,
    multi-turn, has tools, KTO label or None). `n_bytes`: len of all_text in UTF-8, if known."""
    prompt, answer, _ = parts
    sample = (prompt[-1][:150] + "\n" + answer[-1][:150]) if answer and prompt else all_text[:300]
    tokens = tokenizer_len(all_text) if tokenizer_len else estimate_tokens(all_text, n_bytes)
    answer_chars = sum(map(len, answer)) if answer else -1
    short = bool(answer) and len(answer[-1].strip()) < short_chars
    names = tuple(sorted(set(_PLACEHOLDER.findall(all_text)))) if "{{" in all_text else ()
    kind = row["kind"]
    system = multi = tools = False
    if kind != "text":
        messages = row["messages"]
        system = bool(messages) and messages[0]["role"] == "system"
        multi = [m["role"] for m in messages].count("user") > 1
        tools = bool(row.get("tools"))
    label = row["label"] if kind == "kto" else None
    return language(sample), len(all_text), answer_chars, tokens, short, names, system, multi, tools, label


def kept_key(value: str) -> str:
    """A value as `keep` compares it: letters and digits only, so "400-820-1234" keeps "400 820 1234" too."""
    return "".join(ch for ch in value.casefold() if ch.isalnum())


def scan_pii(row: dict, all_text: str, mask: bool, data: bytes | None = None, keep: frozenset = frozenset()):
    """Personal data in the row: None, or (counts per type, [(type, partial value)], row changed).
    With mask=True the row's texts are masked in place. `data`: all_text as UTF-8, if at hand. `keep`: values
    (as kept_key gives them) that are not personal — a company's own hotline — left as they are, not counted."""
    if not may_have_pii(all_text, data):
        return None
    counts = dict.fromkeys(PII_TYPES, 0)
    hits: list[tuple[str, str]] = []
    changed = False

    def scan(text: str) -> str:
        nonlocal changed
        spans = [s for s in find_pii(text) if not keep or kept_key(text[s[0]:s[1]]) not in keep]
        if not spans:
            return text
        for start, end, kind in spans:
            counts[kind] += 1
            if len(hits) < EXAMPLES:
                hits.append((kind, _partial(text[start:end], kind)))
        if mask:
            changed = True
            return mask_text(text, spans)
        return text

    if row["kind"] == "text":
        row["text"] = scan(row["text"])
        if changed:
            row["chars"] = len(row["text"])
    else:
        for m in row["messages"]:
            m["content"] = scan(m["content"])
        if row["kind"] == "preference":
            row["chosen"] = scan(row["chosen"])
            row["rejected"] = scan(row["rejected"])
    if not hits:
        return None
    return tuple(counts[k] for k in PII_TYPES), hits, changed


_LANGS = ("zh", "en", "other")
_LANG_CODE = {lang: i for i, lang in enumerate(_LANGS)}


class StatsBatch:
    """What `measure` found for a batch of rows, a compact column per field: cheap to send back from a
    worker process (a few arrays instead of a tuple per row), and added up a column at a time."""

    __slots__ = ("lang", "chars", "answer_chars", "tokens", "short", "system", "multi", "tools", "names", "labels")

    def __init__(self):
        self.lang = bytearray()  # index into _LANGS
        self.chars = array("q")
        self.answer_chars = array("q")  # -1: the row has no answer
        self.tokens = array("q")
        self.short = bytearray()  # 0/1 flags
        self.system = bytearray()
        self.multi = bytearray()
        self.tools = bytearray()
        self.names: dict[int, tuple] = {}  # row -> placeholder names, for the few rows that have some
        self.labels: dict[int, bool] = {}  # row -> KTO label

    def __len__(self) -> int:
        return len(self.lang)

    def append(self, stats: tuple) -> None:
        lang, chars, answer_chars, tokens, short, names, system, multi, tools, label = stats
        i = len(self.lang)
        self.lang.append(_LANG_CODE[lang])
        self.chars.append(chars)
        self.answer_chars.append(answer_chars)
        self.tokens.append(tokens)
        self.short.append(short)
        self.system.append(system)
        self.multi.append(multi)
        self.tools.append(tools)
        if names:
            self.names[i] = names
        if label is not None:
            self.labels[i] = label

    def row(self, i: int) -> tuple:
        """Row i as the tuple `measure` returned."""
        return (
            _LANGS[self.lang[i]],
            self.chars[i],
            self.answer_chars[i],
            self.tokens[i],
            bool(self.short[i]),
            self.names.get(i, ()),
            bool(self.system[i]),
            bool(self.multi[i]),
            bool(self.tools[i]),
            self.labels.get(i),
        )


def _flagged(flags: bytearray, limit: int) -> list[int]:
    """Positions of the first `limit` set flags."""
    out: list[int] = []
    i = flags.find(1)
    while i >= 0 and len(out) < limit:
        out.append(i)
        i = flags.find(1, i + 1)
    return out


# ------------------------------------------------------------------------------------------ ways asked

WAYS_MAX_ROWS = 10_000  # the count reads the imported rows again: a blink for data of this size


SAME_ANSWER_WORDS = 0.5  # ROUGE-L between two wordings of one answer (identity answers: median 0.67; a shop's
#                          different answers stating the same number or hotline: 0.41 at most)
SAME_ANSWER_GROUP = 100  # answers compared pairwise at most, per set of facts


def ways_asked(paths) -> dict | None:
    """{"answers": distinct answers of the single-question rows, "one_way": how many of them one question alone
    asks}, from imported rows (None where no row is a single question and its answer). A small model taught a fact
    by one question recalls it mostly for those words (the planner warns, presets/intents.yaml)."""
    pairs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row.get("kind") == "sft" and (pair := question_and_answer(row)):
                    pairs.append(pair)
    ways = ways_per_answer(pairs)
    return {"answers": len(ways), "one_way": sum(n == 1 for n in ways.values())} if ways else None


def question_and_answer(row: dict) -> tuple[str, str] | None:
    """(question, answer) of a row that is one question and its answer, a system turn aside; else None."""
    turns = [m for m in row.get("messages") or [] if m.get("role") != "system"]
    if [m.get("role") for m in turns] != ["user", "assistant"]:
        return None
    question, answer = (str(m.get("content") or "") for m in turns)
    return question, answer


def ways_per_answer(pairs) -> dict[bytes, int]:
    """{answer's fingerprint: how many different questions ask it} over (question, answer) pairs, compared as the
    duplicate check compares them (`fingerprint`: case, width, spaces and marks ignored). Two answers that state
    the same key facts (evaluation.facts) in mostly the same words are one answer asked more ways: an identity
    set's 25 answers, each worded its own way, all give the assistant's name."""
    questions: dict[bytes, set[bytes]] = {}
    texts: dict[bytes, str] = {}
    for question, answer in pairs:
        questions.setdefault(fingerprint(answer), set()).add(fingerprint(question))
        texts.setdefault(fingerprint(answer), answer)
    asked = {key: set(found) for key, found in questions.items()}  # each answer's questions and its rewordings'
    stating: dict[frozenset, list[bytes]] = {}
    for key, answer in texts.items():
        if facts := frozenset(facts_of(answer)):
            stating.setdefault(facts, []).append(key)
    for keys in stating.values():
        if 1 < len(keys) <= SAME_ANSWER_GROUP:
            for first, second in itertools.combinations(keys, 2):
                if rouge_l(texts[first], texts[second]) >= SAME_ANSWER_WORDS:
                    asked[first] |= questions[second]
                    asked[second] |= questions[first]
    return {key: len(found) for key, found in asked.items()}


# ------------------------------------------------------------------------------------------ collector


class QualityCheck:
    """Adds up what `measure`, `scan_pii` and the duplicate check found, row by row in file order."""

    def __init__(
        self,
        *,
        tokenizer: bool = False,
        context_len: int | None = None,
        mask_pii: bool = False,
        keep_values: tuple[str, ...] = (),
        minhash_rows: int = 50_000,
        short_answer_chars: int = SHORT_ANSWER_CHARS,
    ):
        self.tokenizer = tokenizer
        self.context_len = context_len
        self.mask_pii = mask_pii
        self.keep_values = keep_values
        self.short_answer_chars = short_answer_chars
        self.seen = FingerprintTable()
        self.exact = self.near = self.near_minhash = 0
        self.dup_examples: list[dict] = []
        self.minhash = None
        self.minhash_rows = minhash_rows
        self.minhash_checked = 0
        self.pii_counts = dict.fromkeys(PII_TYPES, 0)
        self.pii_rows = 0
        self.pii_examples: list[dict] = []
        self.langs = {"zh": 0, "en": 0, "other": 0}
        self.chars = LengthStats()
        self.answer_chars = LengthStats()
        self.tokens = LengthStats()
        self.over_context = 0
        self.over_context_examples: list[int] = []
        self.short = 0
        self.short_examples: list[int] = []
        self.placeholders: dict[str, int] = {}
        self.placeholder_rows = 0
        self.labels = {"true": 0, "false": 0}
        self.multi_turn = self.with_system = self.with_tools = 0

    # duplicates ----------------------------------------------------------------------------------------
    def duplicate(self, fp: int, low: int, line: int, sig: bytes | None = None,
                  asked: int = 0) -> tuple[str, int] | None:
        """('exact' | 'near', first line) when this row repeats an earlier one, else None.
        fp: fingerprint key (fingerprint_key); low: digest_low() of the row's content hash; asked: its
        question_key()."""
        packed = self.seen.setdefault(fp, (line << 24) | low)
        if packed is not None:
            first = packed >> 24
            kind = "exact" if (packed & 0xFFFFFF) == low else "near"
            return self._dup(kind, line, first)
        if sig is not None and self.minhash_rows and self.minhash_checked < self.minhash_rows:
            if self.minhash is None:
                self.minhash = MinHashIndex(self.minhash_rows)
            self.minhash_checked += 1
            first = self.minhash.add(sig, line, asked)
            if first is not None:
                self.near_minhash += 1
                return self._dup("near", line, first)
        return None

    def _dup(self, kind: str, line: int, first: int) -> tuple[str, int]:
        if kind == "exact":
            self.exact += 1
        else:
            self.near += 1
        if len(self.dup_examples) < EXAMPLES:
            self.dup_examples.append({"line": line, "first_line": first, "kind": kind})
        return kind, first

    # the rest --------------------------------------------------------------------------------------------
    def add_pii(self, found, line: int) -> None:
        counts, hits, _ = found
        self.pii_rows += 1
        for kind, n in zip(PII_TYPES, counts):
            self.pii_counts[kind] += n
        for kind, value in hits:
            if len(self.pii_examples) < EXAMPLES:
                self.pii_examples.append({"line": line, "type": kind, "value": value})

    def add(self, stats: tuple, line: int) -> None:
        lang, chars, answer_chars, tokens, short, names, system, multi, tools, label = stats
        self.langs[lang] += 1
        self.chars.add(chars)
        self.tokens.add(tokens)
        if self.context_len and tokens > self.context_len:
            self.over_context += 1
            if len(self.over_context_examples) < EXAMPLES:
                self.over_context_examples.append(line)
        if answer_chars >= 0:
            self.answer_chars.add(answer_chars)
        if short:
            self.short += 1
            if len(self.short_examples) < EXAMPLES:
                self.short_examples.append(line)
        if names:
            self.placeholder_rows += 1
            for name in names:
                if name in self.placeholders or len(self.placeholders) < 50:
                    self.placeholders[name] = self.placeholders.get(name, 0) + 1
        if label is not None:
            self.labels["true" if label else "false"] += 1
        self.with_system += system
        self.multi_turn += multi
        self.with_tools += tools

    def add_batch(self, batch: StatsBatch, lines, keep: list[int] | None = None) -> None:
        """add() for rows of a batch: all of them (keep=None), a column at a time, or those listed in
        `keep` (in order). lines: the rows' line numbers."""
        if keep is not None:
            for i in keep:
                self.add(batch.row(i), lines[i])
            return
        for code, lang in enumerate(_LANGS):
            self.langs[lang] += batch.lang.count(code)
        self.chars.add_many(batch.chars)
        self.tokens.add_many(batch.tokens)
        self.answer_chars.add_many(array("q", (n for n in batch.answer_chars if n >= 0)))
        if self.context_len:
            limit = self.context_len
            for i, tokens in enumerate(batch.tokens):
                if tokens > limit:
                    self.over_context += 1
                    if len(self.over_context_examples) < EXAMPLES:
                        self.over_context_examples.append(lines[i])
        self.short += batch.short.count(1)
        if len(self.short_examples) < EXAMPLES:
            self.short_examples += [lines[i] for i in _flagged(batch.short, EXAMPLES - len(self.short_examples))]
        for names in batch.names.values():  # in row order
            self.placeholder_rows += 1
            for name in names:
                if name in self.placeholders or len(self.placeholders) < 50:
                    self.placeholders[name] = self.placeholders.get(name, 0) + 1
        for label in batch.labels.values():
            self.labels["true" if label else "false"] += 1
        self.with_system += batch.system.count(1)
        self.multi_turn += batch.multi.count(1)
        self.with_tools += batch.tools.count(1)

    def summary(self, rows: int, kinds: dict[str, int]) -> dict:
        def share(n: int) -> float:
            return round(100 * n / rows, 1) if rows else 0.0

        tokens = self.tokens.summary()
        if tokens is not None:
            tokens["estimated"] = not self.tokenizer
            tokens["context_len"] = self.context_len
            tokens["over_context"] = self.over_context
            tokens["over_context_pct"] = share(self.over_context)
            tokens["over_context_examples"] = self.over_context_examples
        out = {
            "duplicates": {
                "exact": self.exact,
                "near": self.near,
                "near_by_minhash": self.near_minhash,
                "pct": share(self.exact + self.near),
                "examples": self.dup_examples,
                "minhash_rows": self.minhash_checked,
            },
            "pii": {
                "rows": self.pii_rows,
                "pct": share(self.pii_rows),
                "counts": self.pii_counts,
                "masked": self.mask_pii,
                "kept": list(self.keep_values),
                "examples": self.pii_examples,
            },
            "short_answers": {
                "count": self.short,
                "pct": share(self.short),
                "threshold": self.short_answer_chars,
                "examples": self.short_examples,
            },
            "languages": {lang: {"rows": n, "pct": share(n)} for lang, n in self.langs.items()},
            "length_chars": self.chars.summary(),
            "answer_chars": self.answer_chars.summary(),
            "tokens": tokens,
            "placeholders": {
                "rows": self.placeholder_rows,
                "names": dict(sorted(self.placeholders.items(), key=lambda kv: -kv[1])),
            },
            "structure": {
                "multi_turn": self.multi_turn,
                "with_system": self.with_system,
                "with_tools": self.with_tools,
            },
        }
        if kinds.get("kto"):
            out["kto_labels"] = self.labels
        return out
