"""Facets: what a request says about its dataset besides rows and fields.

Owns: reading grounding ("grounded in the docs", "no sources"), the topic (after
"about", "on", ...; else the request's first phrase), the language (named, else
the script, else function words), the license id, and inline JSON examples
(`read_seed_examples`); `language_code` reads a drafted language the same way.
Each reader says whether the text stated its value, so that the parser can
mark it explicit or note the guess.
Must not: build the spec or note guesses (parse.py does), do I/O, or import `node/`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from coordinator.spec import DEFAULT_LANGUAGE, DEFAULT_LICENSE, MAX_SEED_EXAMPLES, MAX_TOPIC_CHARS

_UNGROUNDED = re.compile(
    r"\b(?:ungrounded|not grounded|no sources?|no citations?|without (?:any )?(?:sources?|citations?|grounding|"
    r"references?)|from (?:your|the model'?s|its) own knowledge|no retrieval)\b",
    re.IGNORECASE,
)
_GROUNDED = re.compile(
    r"\b(?:grounded|sourced|sources?|cit(?:e|es|ed|ing|ations?)|evidence|references?|"
    r"from (?:the )?(?:official )?(?:docs|documentation|web|internet|literature|papers?|articles?|wikipedia)|"
    r"based on (?:the )?(?:docs|documentation|sources?|articles?|pages?)|according to|source[_ ]urls?|"
    r"retrieved|fact[- ]checked)\b",
    re.IGNORECASE,
)
_TOPIC_MARKERS = (
    re.compile(r"\btopic\s*(?:[:=]|is)?\s+", re.IGNORECASE),
    re.compile(r"\babout\s+", re.IGNORECASE),
    re.compile(
        r"\b(?:regarding|concerning|covering|related to|on the (?:topic|subject) of|focus(?:ed|ing)? on)\s+", re.I
    ),
    re.compile(r"(?<!based )(?<!grounded )(?<!depending )(?<!built )(?<!trained )\bon\s+", re.IGNORECASE),
    re.compile(r"\b(?:sur|über|sobre|sul|sulla)\s+", re.IGNORECASE),
)
_TOPIC_END = re.compile(
    r"\s*(?:[,;:!?\n(\[]|\.(?:\s|$)|\s(?:grounded|sourced|citing|with (?:sources?|citations?|fields?|columns?|"
    r"keys|evidence|answers?)|in json|as json|json|jsonl|csv|fields?:|columns?:|from the|based on|using|written in|"
    r"for (?:training|fine-?tuning|evaluation)|licen[cs]ed|in (?:english|french|german|spanish|italian|"
    r"portuguese|dutch|japanese|chinese|korean|russian|arabic))\b)",
    re.IGNORECASE,
)
_LEADING_VERBS = re.compile(
    r"^(?:please\s+)?(?:(?:generate|create|make|produce|write|build|give me|i need|i want|we need|compile|collect)"
    r"\s+)?(?:me\s+)?",
    re.IGNORECASE,
)

_LANGUAGES = {
    "english": "en", "french": "fr", "german": "de", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "mandarin": "zh", "japanese": "ja", "korean": "ko",
    "arabic": "ar", "hindi": "hi", "polish": "pl", "swedish": "sv", "turkish": "tr", "greek": "el",
    "hebrew": "he", "ukrainian": "uk", "czech": "cs", "danish": "da", "finnish": "fi", "norwegian": "no",
    "vietnamese": "vi", "thai": "th", "indonesian": "id", "romanian": "ro", "hungarian": "hu",
    "français": "fr", "deutsch": "de", "español": "es", "italiano": "it", "português": "pt",
}  # fmt: skip
_LANGUAGE_SAID = re.compile(
    r"\b(?:in|written in|language\s*[:=]?|en|auf|em)\s+(?P<lang>" + "|".join(_LANGUAGES) + r")\b", re.IGNORECASE
)
_SCRIPTS = {
    "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "CJK": "zh", "CYRILLIC": "ru", "ARABIC": "ar",
    "GREEK": "el", "HEBREW": "he", "DEVANAGARI": "hi", "THAI": "th",
}  # fmt: skip
# A handful of function words per Latin-script language: enough to notice a request written in it.
_STOPWORDS = {
    "en": ["the", "of", "and", "about", "with", "for", "from", "in", "to", "a", "an"],
    "fr": ["les", "des", "sur", "avec", "pour", "une", "un", "et", "du", "la", "le", "en", "de"],
    "de": ["der", "die", "das", "und", "über", "mit", "für", "ein", "eine", "von", "zu", "den"],
    "es": ["los", "las", "sobre", "con", "para", "una", "un", "y", "del", "el", "en", "de"],
    "it": ["gli", "sulla", "sul", "con", "per", "una", "un", "e", "del", "il", "di", "della"],
    "pt": ["os", "as", "sobre", "com", "para", "uma", "um", "e", "do", "da", "em", "de"],
    "nl": ["de", "het", "een", "en", "over", "met", "voor", "van", "in", "op"],
}

_LICENSES = {
    "cc-by-4.0": "cc-by-4.0", "cc-by": "cc-by-4.0", "cc-by-sa-4.0": "cc-by-sa-4.0", "cc-by-sa": "cc-by-sa-4.0",
    "cc-by-nc-4.0": "cc-by-nc-4.0", "cc-by-nc": "cc-by-nc-4.0", "cc0": "cc0-1.0", "cc0-1.0": "cc0-1.0",
    "public-domain": "cc0-1.0", "mit": "mit", "apache-2.0": "apache-2.0", "apache": "apache-2.0",
    "odc-by": "odc-by", "odbl": "odbl", "cdla-permissive-2.0": "cdla-permissive-2.0", "other": "other",
}  # fmt: skip
_LICENSE_SAID = re.compile(
    r"\blicen[cs]e[sd]?\s*(?:under|as|is|:|=)?\s*(?:the\s+)?(?P<lic>[a-z0-9][a-z0-9 .\-]{1,30})", re.IGNORECASE
)


def read_grounding(text: str) -> bool | None:
    if _UNGROUNDED.search(text):
        return False
    if _GROUNDED.search(text):
        return True
    return None


def read_topic(text: str) -> tuple[str | None, bool]:
    """(topic, explicit). Explicit when a marker word ("about", "on", ...) introduced it."""
    for marker in _TOPIC_MARKERS:
        for m in marker.finditer(text):
            rest = text[m.end() :]
            end = _TOPIC_END.search(rest)
            topic = tidy_topic(rest[: end.start()] if end else rest)
            if topic:
                return topic, True
    first = re.split(r"[,;:!?\n]|\.(?:\s|$)", text, maxsplit=1)[0]
    first = _LEADING_VERBS.sub("", first.strip())
    first = re.sub(r"^[\d,._'\s]+(?:k|thousand|million)?\s+", "", first, flags=re.IGNORECASE)
    first = re.sub(r"^(?:a|an|the)\s+(?:dataset|set|list|collection|corpus|table)\s+of\s+", "", first, flags=re.I)
    end = _TOPIC_END.search(first)
    return tidy_topic(first[: end.start()] if end else first), False


def tidy_topic(text: str) -> str | None:
    text = " ".join(text.split()).strip(" \"'`«»“”‘’-")
    if not any(ch.isalpha() for ch in text):
        return None
    if len(text) > MAX_TOPIC_CHARS:
        cut = text[:MAX_TOPIC_CHARS].rsplit(" ", 1)[0]
        text = cut if cut else text[:MAX_TOPIC_CHARS]
    return text


def read_language(text: str) -> tuple[str, bool]:
    """(ISO code, explicit). A named language wins; then the script; then function words."""
    m = _LANGUAGE_SAID.search(text)
    if m:
        return _LANGUAGES[m.group("lang").lower()], True
    counts: dict[str, int] = {}
    letters = 0
    kana = False
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        name = unicodedata.name(ch, "")
        for prefix, code in _SCRIPTS.items():
            if name.startswith(prefix):
                counts[code] = counts.get(code, 0) + 1
                kana = kana or code == "ja"
                break
    if letters:
        code, n = max(counts.items(), key=lambda kv: kv[1], default=("", 0))
        if n * 2 > letters:
            return ("ja" if kana else code), False
    words = re.findall(r"[^\W\d_]+", text.lower())
    votes = {code: sum(w in set(stops) for w in words) for code, stops in _STOPWORDS.items()}
    best = max(votes, key=lambda c: votes[c])
    if best != "en" and votes[best] >= 2 and votes[best] > votes["en"]:
        return best, False
    return DEFAULT_LANGUAGE, False


def read_license(text: str) -> tuple[str | None, str | None]:
    m = _LICENSE_SAID.search(text)
    if not m:
        return None, None
    said = m.group("lic").strip().lower()
    words = re.sub(r"[\s_]+", "-", said).strip("-.")
    for length in range(len(words), 1, -1):
        key = words[:length].rstrip("-.")
        if key in _LICENSES:
            return _LICENSES[key], None
    return None, f"license: {said!r} is not a license id I know; using {DEFAULT_LICENSE}"


def read_seed_examples(text: str) -> list[dict[str, Any]]:
    """Inline JSON objects in the request ({"question": ..., "answer": ...}) become seed examples."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = text.find("{")
    while i != -1 and len(out) < MAX_SEED_EXAMPLES:
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i = text.find("{", i + 1)
            continue
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.append(value)
        i = text.find("{", end)
    return out


def language_code(value: Any) -> Any:
    """A language name or code as a lower-case code ("French" -> "fr"); a value that is not text, as it is."""
    if isinstance(value, str) and value.strip().lower() in _LANGUAGES:
        return _LANGUAGES[value.strip().lower()]
    return value.strip().lower() if isinstance(value, str) else value
