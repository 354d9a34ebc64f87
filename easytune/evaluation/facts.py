"""Is an answer right? Its reference's key facts must be in it.

A falling loss and a high ROUGE reward an answer that sounds like the reference ("You can return an
item within 30 days" against "… within 45 days"). The key facts of a reference are what such an
answer gets wrong: numbers (with digits and number words treated alike), amounts, times, codes, quoted
terms, and names — capitalised words that do not open a sentence. Chinese has no capitals: there its
facts are the numbers and quoted terms. A reference with no such fact cannot be judged this way,
and says so (`facts_of` is empty); the caller falls back to its other measures.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from easytune.evaluation.metrics import rouge_l, tokenize

NUMBER_WORDS = {"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
                "fifteen": "15", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "sixty": "60",
                "ninety": "90", "hundred": "100"}
CHINESE_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
                  "九": 9}
CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10000}
NUMERALS = "".join(CHINESE_DIGITS) + "".join(CHINESE_UNITS)
CHINESE_NUMBER = re.compile(f"[{NUMERALS}]+")
LONE_YI = re.compile(f"(?<![{NUMERALS}])一(?![{NUMERALS}])")  # 一 as "a", "the same", "once": no number
# \w would count Chinese characters as letters: "于2011年" must still hold the number 2011
NUMBER = re.compile(r"(?<![A-Za-z0-9.])\d+(?:[.,:]\d+)*")
QUOTED = re.compile(r"[\"“「『]([^\"”」』]{2,40})[\"”」』]")
CODE = re.compile(r"\b[A-Z0-9]*[A-Z][A-Z0-9-]*\d[A-Z0-9-]*\b|\b[A-Z]{2,}[A-Z0-9-]*\b")
WORD = re.compile(r"[A-Za-z][\w'&-]*")
SENTENCE_START = re.compile(r"(?:^|[.!?:;]\s+|\n)\s*$")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
COMMON_CAPITALISED = {"I", "Yes", "No", "The", "A", "An", "You", "We", "Our", "It", "If", "Please", *WEEKDAYS,
                      *(day + "s" for day in WEEKDAYS)}


def chinese_number(text: str) -> str:
    """四十五 → 45, 二〇二四 → 2024, 两千 → 2000."""
    if not any(ch in CHINESE_UNITS for ch in text):
        return "".join(str(CHINESE_DIGITS[ch]) for ch in text)
    total = section = digit = 0
    for ch in text:
        if ch in CHINESE_DIGITS:
            digit = CHINESE_DIGITS[ch]
        elif ch == "万":
            total, section, digit = (total + section + digit) * 10000, 0, 0
        else:
            section += (digit or 1) * CHINESE_UNITS[ch]
            digit = 0
    return str(total + section + digit)


TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
UNITS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9}
COMPOUND = re.compile(rf"\b({'|'.join(TENS)})[- ]({'|'.join(UNITS)})\b")


def normalise(text: str) -> str:
    """Full-width forms folded, number words as digits, thousands separators dropped, lower case."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    text = COMPOUND.sub(lambda m: str(TENS[m.group(1)] + UNITS[m.group(2)]), text)
    text = CHINESE_NUMBER.sub(lambda m: chinese_number(m.group(0)), text)
    return re.sub(r"[a-z]+", lambda m: NUMBER_WORDS.get(m.group(0), m.group(0)), text)


def facts_of(reference: str, question: str = "") -> list[str]:
    """The key facts of a reference answer, normalised; empty when it has none to check. Facts the question
    already states ("When was Lumen & Pine founded?") are not what the answer must supply."""
    text = unicodedata.normalize("NFKC", reference)
    # "one of our stores", "一个助手" (an assistant), "一般" (usually) state no number; "一百" and "十一" do
    spelled = normalise(LONE_YI.sub("", re.sub(r"\b[Oo]ne\b", "", text)))
    facts = [m.group(0).rstrip(".,:") for m in NUMBER.finditer(spelled)]
    facts += [m.group(1) for m in QUOTED.finditer(text)]
    facts += [m.group(0) for m in CODE.finditer(text)]
    for match in WORD.finditer(text):
        word = match.group(0)
        # "I'm", "I'll": the word before the apostrophe decides
        if word[0].isupper() and word.split("'")[0] not in COMMON_CAPITALISED \
                and not SENTENCE_START.search(text[:match.start()]):
            facts.append(word)
    asked = normalise(question)
    seen: dict[str, None] = {}
    for fact in facts:
        seen.setdefault(normalise(fact), None)
    return [fact for fact in seen if fact and not _stated(fact, asked)]


def _stated(fact: str, text: str) -> bool:
    return re.search(rf"(?<![a-z0-9.]){re.escape(fact)}(?![a-z0-9]|\.\d)", text) is not None


def fact_score(answer: str, reference: str, question: str = "") -> tuple[int, int]:
    """(facts of the reference found in the answer, facts in the reference)."""
    facts = facts_of(reference, question)
    said = normalise(answer)
    return sum(1 for fact in facts if _stated(fact, said)), len(facts)


def is_right(answer: str, reference: str, question: str = "") -> bool | None:
    """Every key fact present; None when the reference has no fact to check."""
    found, total = fact_score(answer, reference, question)
    return None if total == 0 else found == total


def has_key(answer: str, key: list[str]) -> bool:
    """A gatekeeper answer is right when it states one of its key's alternatives (a word in any of its
    common forms: "scatter" is stated by "scatters")."""
    said = normalise(answer)
    return any(_stated(normalise(k), said) or (k[-1:].isalpha() and re.search(
        rf"(?<![a-z0-9.]){re.escape(normalise(k))}(?:s|es|ed|ing|er|ers)(?![a-z0-9])", said)) for k in key)


def judge_answer(answer: str, reference: str, key: list[str] | None = None, question: str = "") -> bool | None:
    """Right or wrong by the answer key where there is one, else by the reference's key facts."""
    return has_key(answer, key) if key else is_right(answer, reference, question)


def accuracy(judged: list[bool | None]) -> tuple[float | None, int]:
    """(share right among the answers that could be judged, how many could)."""
    known = [right for right in judged if right is not None]
    return (sum(known) / len(known) if known else None), len(known)


def changes(base: list[bool | None], tuned: list[bool | None]) -> dict:
    """{"gained": questions only the tuned model answers right, "lost": those only the base model does}, among
    the questions judged on both sides: what the change in the share right is made of, question by question."""
    pairs = [(b, t) for b, t in zip(base, tuned) if b is not None and t is not None]
    return {"gained": sum(t and not b for b, t in pairs), "lost": sum(b and not t for b, t in pairs)}


def swapped(reference: str, others: list[str], question: str = "") -> str | None:
    """The reference with its own key fact replaced by a fact of the same kind (a number for a number, a
    name for a name) from another reference: the answer a model that learned only the style would give
    as readily. None when no such fact exists."""
    mine = facts_of(reference, question)
    if not mine:
        return None
    elsewhere = {fact for other in others for fact in facts_of(other)}
    fact = next((f for f in mine if f not in elsewhere), mine[0])  # its own fact, not the shop's name
    is_number = fact[:1].isdigit()
    candidates = [c for other in others for c in facts_of(other)
                  if c != fact and c[:1].isdigit() == is_number and c not in mine]
    candidates.sort(key=lambda c: abs(len(c) - len(fact)))  # the same length where possible: the same token count
    text = unicodedata.normalize("NFKC", reference)
    pattern = re.compile(rf"(?<![A-Za-z0-9.]){re.escape(fact)}(?![A-Za-z0-9]|\.\d)", re.IGNORECASE)
    if not candidates or not pattern.search(text):  # e.g. a number the reference spells out in words
        return None
    return pattern.sub(candidates[0] if is_number else candidates[0].title(), text, count=1)


@dataclass(frozen=True)
class Taught:
    """An answer the job was trained on, the first question it was taught for, and its key facts."""
    question: str
    answer: str
    facts: tuple[str, ...]
    first_words: tuple[str, ...]  # each fact's first word: an answer without it cannot state that fact


def taught_answers(pairs: list[tuple[str, str]]) -> list[Taught]:
    """(question, answer) pairs of the training rows → each distinct answer with facts to check, once."""
    out: dict[str, Taught | None] = {}
    for question, answer in pairs:
        key = normalise(answer)
        if key not in out:
            found = [(fact, words[0]) for fact in facts_of(answer) if (words := tokenize(fact))]
            out[key] = Taught(question, answer, *map(tuple, zip(*found))) if found else None
    return [taught for taught in out.values() if taught is not None]


def given_instead(answer: str, reference: str, taught: list[Taught], question: str = "") -> Taught | None:
    """The taught answer a wrong answer is, instead of its own: it states every fact of that answer which its own
    reference lacks, and reads more like it than like its own reference. A small model asked in words it was not
    taught often answers with another fact of the same data; which one tells the user what it mixed up. None
    where no taught answer fits (a right answer is the caller's to leave out)."""
    own, said = set(facts_of(reference, question)), normalise(answer)
    words = set(tokenize(said))
    best, best_match = None, rouge_l(answer, reference)
    for other in taught:
        distinct = [(fact, first) for fact, first in zip(other.facts, other.first_words) if fact not in own]
        # each fact's first word before the fact itself: a dataset may hold 20,000 answers
        if not distinct or any(first not in words for _, first in distinct) \
                or not all(_stated(fact, said) for fact, _ in distinct):
            continue
        match = rouge_l(answer, other.answer)
        if match > best_match:
            best, best_match = other, match
    return best
