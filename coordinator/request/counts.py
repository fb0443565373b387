"""Row counts: how many rows a request sentence asks for.

Owns: `find_row_count`, which reads digits ("2,000", "1.5k", "10^3"), East Asian
counters ("50件") and number words ("twenty", "two dozen") that stand within a
few words of a noun naming rows, caps a count at `MAX_ROWS` with a note, and
refuses a count below one.
Must not: default a count the text does not name (the parser does), do I/O, or import `node/`.
"""

from __future__ import annotations

import math
import re

from coordinator.request.reading import RequestError
from coordinator.spec import MAX_ROWS

_ROW_NOUNS = (
    r"rows?|examples?|samples?|pairs?|items?|records?|entries|entry|instances?|questions?|prompts?|q&as?|qas?|"
    r"dialog(?:ue)?s?|conversations?|sentences?|paragraphs?|documents?|data ?points?|triples?|tuples?|problems?|"
    r"exercises?|tasks?|instructions?|responses?|answers?|reviews?|summar(?:y|ies)|texts?|lines?|facts?|"
    r"definitions?|descriptions?|messages?|tweets?|posts?|stories|story|poems?|jokes?|recipes?|flashcards?|cards?|"
    r"quizzes|quiz|puzzles?|riddles?|emails?|queries|query|labels?|translations?|snippets?"
)
# A count is a number followed, within four words, by a noun that names rows.
_GAP = r"(?:\s+[^\s\d.,;:!?]+){0,4}?\s*"
_MULT = {"k": 1_000, "thousand": 1_000, "m": 1_000_000, "mn": 1_000_000, "million": 1_000_000}
_MULT |= {"b": 10**9, "billion": 10**9}
_DIGITS = (
    r"(?P<sign>[-−–]\s*)?(?P<num>\d{1,3}(?:[,_'\u00a0\u202f]\d{3})+|\d{1,3}(?:\.\d{3})+|\d+(?:\.\d+)?)"
    r"(?:\s*(?P<exp>(?:\^|\*\*)\s*\d{1,4}|[eE]\d{1,4}|[x×]\s*10\s*\^\s*\d{1,4}))?"
    r"(?:\s*(?P<mult>k|thousand|mn|m|million|b|billion)\b)?"
)
_DIGIT_COUNT = re.compile(r"(?<![\w.,^])" + _DIGITS + rf"(?={_GAP}(?:{_ROW_NOUNS})\b)", re.IGNORECASE)
# East Asian counters follow the number directly: "50件", "100個", "30개".
_COUNTER_COUNT = re.compile(r"(?P<sign>)(?P<num>\d+)(?P<exp>)(?P<mult>)\s*(?:件|個|条|行|組|개|건|条目)")
_LABELLED_COUNT = re.compile(
    r"\b(?:rows|count|n|size|number of (?:rows|examples|items|samples))\s*[:=]\s*" + _DIGITS, re.IGNORECASE
)

_ONES = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "a": 1, "an": 1,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000}
_NUMBER_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES, "dozen"], key=len, reverse=True))
_WORD_NUMBER = re.compile(
    rf"\b(?P<words>(?:{_NUMBER_WORD})\b(?:(?:[\s-]+(?:and\s+)?)(?:{_NUMBER_WORD})\b)*)"
    rf"(?={_GAP}(?:{_ROW_NOUNS})\b)",
    re.IGNORECASE,
)


def _words_to_int(words: str) -> int | None:
    tokens = [t for t in re.split(r"[\s-]+", words.lower()) if t and t != "and"]
    if not tokens or all(t in {"a", "an"} for t in tokens):
        return None
    total, current, seen = 0, 0, False
    for tok in tokens:
        if tok in _ONES:
            current += _ONES[tok]
        elif tok in _TENS:
            current += _TENS[tok]
        elif tok == "dozen":
            current = max(current, 1) * 12
        elif tok == "hundred":
            current = max(current, 1) * 100
        elif tok in _SCALES:
            total += max(current, 1) * _SCALES[tok]
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _digits_value(m: re.Match[str]) -> float:
    raw = m.group("num")
    if re.fullmatch(r"\d{1,3}(?:\.\d{3})+", raw) and not m.group("mult"):
        value = float(raw.replace(".", ""))  # "2.000 rows": a fractional row count means nothing; read thousands
    else:
        value = float(re.sub(r"[,_'\u00a0\u202f]", "", raw))
    exp = m.group("exp")
    if exp:
        power = int(re.findall(r"\d+", exp)[-1])
        try:
            value = value * 10.0**power if exp.lstrip()[0] in "xX×eE" else value**power
        except OverflowError:
            return math.inf  # "10^9999 rows": too many, whatever the exact number
    mult = (m.group("mult") or "").lower()
    if mult:
        value *= _MULT[mult]
    return value


def find_row_count(text: str) -> tuple[int | None, str | None]:
    """(count, note) from the request; count None when the text names none. Raises for non-positive counts."""
    digit: list[tuple[int, float, str]] = []
    for m in (*_LABELLED_COUNT.finditer(text), *_DIGIT_COUNT.finditer(text), *_COUNTER_COUNT.finditer(text)):
        value = _digits_value(m)
        if not (value.is_integer() or math.isinf(value)):
            continue  # "Python 3.11 examples": a version number, not a count
        digit.append((m.start(), -value if m.group("sign") else value, m.group(0).strip()))
    worded: list[tuple[int, float, str]] = []
    for m in _WORD_NUMBER.finditer(text):
        word_value = _words_to_int(m.group("words"))
        # "one" and "a" are everywhere ("with one answer"); a one-row dataset is asked for with a digit.
        if word_value is not None and word_value >= 2:
            worded.append((m.start(), float(word_value), m.group("words").strip()))
    candidates = digit or worded
    if not candidates:
        return None, None
    _, value, said = min(candidates)
    if value < 1:
        raise RequestError(f"row count must be at least 1 (the request says {said!r}): ask for a positive number")
    if value > MAX_ROWS:
        said = said if len(said) <= 40 else said[:37] + "..."
        return MAX_ROWS, f"rows: the request asks for {said!r}; capped at the maximum of {MAX_ROWS} per job"
    return int(value), None
