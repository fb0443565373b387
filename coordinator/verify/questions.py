"""Answer-first question/answer rows: whether a question is one well-formed question that its answer sentence answers.

Owns: `check_question` (the form: wh-word or auxiliary first, "?" last and only there, no
debris) and `check_answer_first`: the answer is the task's sentence, verbatim; every content
word the question uses is in its answer sentence (a question about what the sentence says,
not merely a word of the chunk); it leaves most of the sentence unsaid (a question that
restates the answer asks nothing); and it is not vague ("What does X do?", or what a named
product "supports" or "includes": many sentences answer those, not this one). The round trip
by a third node runs after these (scheduler.py).
Must not: touch the store or the network, or change a row.
"""

from __future__ import annotations

import re

from coordinator.verify.reasons import Failure, Reason
from coordinator.verify.text import WORD, content_words, normalize_ws, stem

_OPENER_TEXT = (
    "what which who whom whose when where why how is are was were do does did can could may might must "
    "will would should shall has have had"
)
QUESTION_OPENERS = frozenset(_OPENER_TEXT.split())
_ACTION_WORDS = frozenset({"doing", "done"})
MIN_QUESTION_WORDS = 3
MAX_GIVEN_SHARE = 0.6
"""A question may name at most this share of the content words its answer sentence has beyond them
both (the subject, which a question keeps): "What does X compute when compiled with -O3?" for "X
computes incorrect results when compiled with -O3" gives the answer away."""
_DEBRIS = re.compile(r"[{}\[\]\"<>|\\`]|\n|\?.|[.!;]\s+[A-Z]|'\s*[,:;]|[,:;]\s*'")
"""Braces, brackets, double quotes, pipes, backslashes, backticks, newlines; a "?" that is not last; a
second sentence; a single quote against a comma or colon (JSON debris such as `','case':'`)."""


def _root(word: str) -> str:
    """`_stem` after a plural or tense ending: "use" and "uses", "return" and "returned" meet."""
    for ending in ("ing", "ed", "es", "s"):
        if len(word) > len(ending) + 2 and word.endswith(ending) and not word.isdigit():
            word = word[: -len(ending)]
            break
    return stem(word)


_NEGATION = re.compile(r"\b(?:not|never|cannot|no)\b|n't\b", re.IGNORECASE)


def _negated(text: str) -> bool:
    return _NEGATION.search(text) is not None


MAX_ASKING_WORDS = 1
"""Content words a question built on its sentence's subject may add: the verb it asks with ("What does X
return?"). More of them state part of the answer ("What can a structure contain other structures?")."""


def _subject_in(question: str, sentence: str) -> set[str]:
    """Content words of the longest opening of `sentence` that `question` repeats word for word: the
    subject the question is built on."""
    s_words = WORD.findall(normalize_ws(sentence).casefold())
    q_text = " " + " ".join(WORD.findall(normalize_ws(question).casefold())) + " "
    n = 0
    while n < len(s_words) and f" {' '.join(s_words[: n + 1])} " in q_text:
        n += 1
    if n == 0 and s_words and s_words[0] in ("the", "a", "an"):
        return _subject_in(question, " ".join(s_words[1:]))
    return set(content_words(" ".join(s_words[:n])))


def _asking_tail(question: str, sentence: str) -> list[str] | None:
    """The words a question adds after its opener, auxiliary and the sentence's subject ("be extended to"
    in "What can distutils be extended to?"), or None when it does not repeat the subject."""
    split = _at_subject(question, sentence)
    return None if split is None else split[0]


def _at_subject(question: str, sentence: str) -> tuple[list[str], list[str]] | None:
    """(the question's words after the subject it repeats, the sentence's words after that subject), or None
    when the question does not repeat the sentence's opening."""
    q = WORD.findall(normalize_ws(question).casefold())
    s_words = WORD.findall(normalize_ws(sentence).casefold())
    if s_words and s_words[0] in ("the", "a", "an"):
        s_words = s_words[1:]
    for start in range(1, min(4, len(q))):
        n = 0
        while start + n < len(q) and n < len(s_words) and q[start + n] == s_words[n]:
            n += 1
        if n:
            return q[start + n :], s_words[n:]
    return None


_PARTICIPLE_TEXT = (
    "set built made known given written done run put kept held found sent shown seen taken left read bound "
    "thrown chosen meant paid said told understood begun broken hidden spoken drawn grown"
)
_IRREGULAR_PARTICIPLES = frozenset(_PARTICIPLE_TEXT.split())
_NOT_PARTICIPLES = frozenset({"open", "even", "often", "seven", "eleven", "need", "seed", "feed"})


def _passive_after_subject(question: str, sentence: str) -> bool:
    """Whether the sentence goes on from the subject the question repeats with a passive ("X is used to ...",
    "X are set by ..."): it says what is done with X, not what X is."""
    copulas = ("is", "are", "was", "were")
    asked = WORD.findall(question.casefold())
    if len(asked) < 2 or asked[1] not in copulas:
        return False  # "Who developed X?" puts its subject last: no "What is X?"
    split = _at_subject(question, sentence)
    if split is None or len(split[1]) < 2 or split[1][0] not in copulas:
        return False
    rest = split[1][1:]
    word = rest[1] if rest[0].endswith("ly") and len(rest) > 1 else rest[0]  # "is mostly used"
    if word in _NOT_PARTICIPLES:
        return False
    return word in _IRREGULAR_PARTICIPLES or (len(word) >= 4 and word.endswith(("ed", "en")))


_PREPOSITION_TEXT = "of for to into by with from in on at as about onto upon"
_PREPOSITIONS = frozenset(_PREPOSITION_TEXT.split())
_GAP_WORDS = frozenset({"what", "which"})
_PASSIVE = re.compile(r"\b(?:is|are|was|were|be|been)\s+(?:\w+ly\s+|only\s+|not\s+)?\w+(?:ed|en)\b", re.I)


_ORIGIN_ONLY = re.compile(r"^.+\s(?:is|are)\s+an?\s+[A-Z][\w.+-]*(?:\s+[a-z]+)?\s+(?:extension|addition)s?\.$")
""""The VAR command is a PostgreSQL extension." (a compatibility note) says where X comes from, not what it
is: 4 of 59 rows accepted on a held-out manual asked "What is X?" of one (docs/notes/quality.md#document-parts)."""
_NORM_TEXT = "standard standards specification specifications spec rfc"
_NORMS = frozenset(_NORM_TEXT.split())
"""Heads of a subject that is a standard: "the SQL standard" specifies, requires and allows a great many things."""
_PRESCRIBING_TEXT = "specify require allow permit support mandate define say state forbid prohibit disallow need"
_PRESCRIBING = frozenset(_PRESCRIBING_TEXT.split())
_SUPERLATIVE_TEXT = (
    "most least best worst fastest slowest largest smallest biggest highest lowest easiest simplest earliest "
    "latest newest oldest greatest shortest longest safest cheapest strongest weakest closest nearest"
)
_RANKED = re.compile(
    rf"^.+?\s(?:is|are)\s+(?:the|one of the)\s+(?:{'|'.join(_SUPERLATIVE_TEXT.split())})"
    r"(?:\s+[a-z-]+ly)?(?:\s+[a-z-]+)??(?:\s+(?:one|ones|to|of|among|available|possible|because|since|and)\b|\s*[.,;])"
)
""""The TSC clock source is the most accurate one available" and "The SQL functions are the easiest to use" rank X
among others and name no kind it is; "the oldest surviving sea-washed lighthouse in the world" does."""
_INTRANSITIVE = frozenset(["behave", "happen", "occur", "exist", "vary", "differ", "work", "matter", "arise", "appear"])
""""What does X behave?" asks for an object the verb never takes ("How does X behave?" would)."""


_TAKING_INFINITIVE_TEXT = (
    "used able configured designed intended meant allowed supposed expected required needed made built going "
    "likely unable free"
)
_TAKING_INFINITIVES = frozenset(_TAKING_INFINITIVE_TEXT.split())
"""Words whose "to" opens an infinitive ("X can be configured to block mail"): "What can X be configured to?"
stops before the verb that is the answer."""


def _no_gap(question: str, tail: list[str]) -> str:
    """Why a "What ..." question has no place for its answer, or "". "What" stands for a missing
    complement: after "is"/"can be" + a participle or adjective ("What is the wal file deleted?", "What may
    new error codes be added?") nothing is missing unless a preposition ends the question ("... converted
    into?")."""
    words = question.split()
    if len(tail) >= 2 and tail[-1] == "to" and tail[-2] in _TAKING_INFINITIVES:
        # "What is X used to?": the "to" of an infinitive, whose verb the answer holds ("used to specify ...").
        return f"stops before the verb its 'to' needs: {question[:80]!r}"
    if len(words) < 2 or words[0].lower() not in _GAP_WORDS or (tail and tail[-1] in _PREPOSITIONS):
        return ""
    if not tail:
        return f"no verb to ask with: {question[:80]!r}" if words[1].lower() in ("does", "do", "did") else ""
    aux = words[1].lower()
    if aux in ("does", "do", "did") and not tail:
        return f"no verb to ask with: {question[:80]!r}"
    if aux in ("does", "do", "did") and tail[0].endswith("s") and tail[0] not in ("does", "is", "has"):
        return f"the verb after {aux!r} is inflected twice: {question[:80]!r}"
    copular = aux in ("is", "are", "was", "were") or (tail[0] == "be" and len(tail) > 1)
    if copular:
        return f"no place for its answer: {question[:80]!r} ends without a preposition after {aux!r}"
    return ""


_HAVING_TEXT = "support include contain provide offer have define cover"
_HAVING_VERBS = frozenset(_HAVING_TEXT.split())
"""Verbs of holding: "What does X support?" asks for a list (docs/notes/quality.md#verbs-of-holding)."""
_CODE = re.compile(r"\w[_.(]|[_.]\w|[a-zA-Z]\d|\b[a-z]+[A-Z]")
"""An identifier (sqlite3_open(), os.path, _charset, xFilter): a subject narrow enough to be described whole.
Capitalised mixed case is a name, not code ("MySQL", "JavaScript"): such a product holds many things too."""
_CONDITION = re.compile(r"\b(?:if|unless|upon|when|whenever|on (?:success|failure|error))\b", re.IGNORECASE)
"""A clause that limits what the sentence says to one case."""


_NO_OBJECT_TEXT = "in on at since until during after before when because from into through within"
_NO_OBJECT = frozenset(_NO_OBJECT_TEXT.split())
"""Words that cannot begin what "What" stands for: the sentence says when or where, not what."""
_OBJECT_PRONOUNS = frozenset(["it", "them", "him", "her", "us"])


def _no_object(question: str, tail: list[str], sentence: str) -> str:
    """Why "What <aux> X <verb>?" has no place for its answer, or "": its answer sentence goes on from the
    verb with a preposition ("What will the warning disappear?" for "The warning will disappear in 2.5"), or
    the verb takes none ("What does X behave?")."""
    words = question.split()
    if not tail or words[0].lower() not in _GAP_WORDS or tail[-1] in _PREPOSITIONS:
        return ""
    if len(tail) == 1 and tail[0] in _INTRANSITIVE:
        return f"{tail[0]!r} takes no object for 'What' to ask for: {question[:80]!r}"
    rest = _words_after(tail, sentence)
    after = rest[0] if rest else ""
    if after in _NO_OBJECT:
        return f"no object for 'What' to ask for: its answer goes on with {after!r}: {question[:80]!r}"
    if after in _OBJECT_PRONOUNS:
        # "What does the RewriteBase directive tell?" for "... tells it what prefix to prepend": "it" is
        # named in another sentence, so the answer starts with a word that points off the row.
        return f"its answer's object is {after!r}, named elsewhere on the page: {question[:80]!r}"
    return ""


_TIME_OPENERS = frozenset(["through", "after", "before", "during", "until", "since", "via"])
_DATE = re.compile(
    r"^(?:1[5-9]\d\d|20\d\d|january|february|march|april|may|june|july|august|september|october|november|december)$"
)


def _no_prepositional_object(question: str, tail: list[str], sentence: str) -> str:
    """Why "What ... <preposition>?" has no thing for its answer, or "": in the answer sentence the preposition
    is followed by another one or by nothing ("The final interface was arrived at through ...": "at" is part of
    the verb, so "What was the final interface arrived at?" asks nothing), or by a date ("... written in 1991":
    the question wants "When")."""
    words = question.split()
    if not tail or words[0].lower() not in _GAP_WORDS or tail[-1] not in _PREPOSITIONS:
        return ""
    rest = _words_after(tail, sentence)
    if rest is None:
        return ""
    after = rest[0] if rest else ""
    quantity = after == "at" and rest[1:2] in (["least"], ["most"])  # "composed of at least two"
    if not quantity and (not after or after in _PREPOSITIONS or after in _TIME_OPENERS):
        return f"its {tail[-1]!r} has no object in its answer for 'What' to ask for: {question[:80]!r}"
    if _DATE.match(after):
        return f"'What' asks for a thing; its answer gives a date ({after!r}): {question[:80]!r}"
    return ""


def _subject_head(question: str, sentence: str) -> str:
    """The last word of the sentence's subject that the question repeats ("standard" in "What does the SQL
    standard specify?"), or ""."""
    split = _at_subject(question, sentence)
    if split is None:
        return ""
    s_words = WORD.findall(normalize_ws(sentence).casefold())
    if s_words and s_words[0] in ("the", "a", "an"):
        s_words = s_words[1:]
    subject = s_words[: len(s_words) - len(split[1])]
    return subject[-1] if subject else ""


def _words_after(words: list[str], sentence: str) -> list[str] | None:
    """The sentence's words (case-folded) after where `words` first end in it; None when they are not in it."""
    end = _words_end(words, sentence)
    return None if end is None else WORD.findall(normalize_ws(sentence).casefold())[end:]


def _words_end(words: list[str], sentence: str) -> int | None:
    """Where `words` (by root) first end in `sentence`, as a word index; None when they are not in it."""
    have = [_root(w) for w in WORD.findall(normalize_ws(sentence).casefold())]
    want = [_root(w) for w in words]
    return next((i + len(want) for i in range(len(have) - len(want) + 1) if have[i : i + len(want)] == want), None)


_DANGLING_TEXT = "the a an that this these those its their whose which whether if and or but"
_DANGLING = frozenset(_DANGLING_TEXT.split())
"""Words a question cannot end on: what they introduce is missing ("What does X ensure that?", "What can
the interfaces be used to read or?"). "than" and prepositions may end one ("more flexible than?")."""


def check_question(question: str, *, max_chars: int = 400) -> Failure | None:
    """One well-formed question, by form alone (language-neutral except the opener list)."""
    q = question.strip()
    words = q.split()
    if not q.endswith("?") or q.count("?") != 1:
        return Failure(Reason.QUESTION_MALFORMED, f"not one question ending in '?': {q[:80]!r}")
    if len(words) < MIN_QUESTION_WORDS or len(q) > max_chars:
        return Failure(Reason.QUESTION_MALFORMED, f"{len(words)} words, {len(q)} chars: {q[:80]!r}")
    if words[0].lower() not in QUESTION_OPENERS or not words[0][0].isupper():
        return Failure(Reason.QUESTION_MALFORMED, f"does not open like a question: {q[:80]!r}")
    if _DEBRIS.search(q):
        return Failure(Reason.QUESTION_MALFORMED, f"debris or more than one sentence: {q[:80]!r}")
    if words[-1].rstrip("?").lower() in _DANGLING:
        return Failure(Reason.QUESTION_MALFORMED, f"breaks off after {words[-1].rstrip('?')!r}: {q[:80]!r}")
    return None


def check_answer_first(question: str, answer: str, sentence: str, *, max_chars: int = 400) -> Failure | None:
    """The gates of an answer-first row: its answer, its question's form, and the question against its answer."""
    if normalize_ws(answer) != normalize_ws(sentence):
        return Failure(Reason.ANSWER_MISMATCH, f"answer {answer[:60]!r} is not the task's sentence")
    failure = check_question(question, max_chars=max_chars)
    if failure is not None:
        return failure
    answer_stems = {_root(w) for w in content_words(sentence)}
    # "doing" and "done" are function words elsewhere, but "What is X doing?" asks for an action the
    # sentence must name.
    asked = [w for w in content_words(question) if w not in QUESTION_OPENERS]
    asked += [w for w in WORD.findall(question.casefold()) if w in _ACTION_WORDS]
    off = [w for w in asked if _root(w) not in answer_stems]
    if off or not asked:
        return Failure(
            Reason.QUESTION_OFF_ANSWER, f"asks about {off[:5] or 'nothing'} that its answer does not mention"
        )
    if _negated(question) != _negated(sentence):
        return Failure(Reason.QUESTION_OFF_ANSWER, "the question and its answer differ in negation")
    tail = _asking_tail(question, sentence)
    if tail == [] and not _CODE.search(question) and _passive_after_subject(question, sentence):
        # "What is the Tcl script language?" for "The Tcl script language is used to help translate ...": a
        # definition is asked, a use is answered. An identifier's use is its definition ("What is the
        # tokenize.open() function?" for "... is used to open files"), so code subjects pass.
        return Failure(Reason.QUESTION_OFF_ANSWER, "asks what its subject is; its answer says what is done with it")
    if tail == [] and _ORIGIN_ONLY.match(normalize_ws(sentence)):
        return Failure(
            Reason.QUESTION_OFF_ANSWER, "asks what its subject is; its answer says only whose extension it is"
        )
    if tail == [] and _RANKED.match(normalize_ws(sentence)):
        return Failure(Reason.QUESTION_OFF_ANSWER, "asks what its subject is; its answer only ranks it among others")
    if tail is not None and (gapless := _no_gap(question, tail)):
        return Failure(Reason.QUESTION_MALFORMED, gapless)
    if tail is not None and (intransitive := _no_object(question, tail, sentence)):
        return Failure(Reason.QUESTION_MALFORMED, intransitive)
    if tail is not None and (objectless := _no_prepositional_object(question, tail, sentence)):
        return Failure(Reason.QUESTION_MALFORMED, objectless)
    if tail == ["do"] and _PASSIVE.search(sentence):
        return Failure(Reason.QUESTION_OFF_ANSWER, "asks what its subject does; the answer says what is done to it")
    if tail is not None and len(tail) == 1 and tail[0] in _HAVING_VERBS and not _CODE.search(question):
        # "What does CPython support?": a named product holds many things; only a narrower subject (an
        # identifier) or a longer question picks out the one this sentence names.
        return Failure(Reason.QUESTION_VAGUE, f"asks what a broad subject {tail[0]}s, of which its answer names one")
    said = [w for w in tail or [] if w not in ("not", "never")]
    if len(said) == 1 and said[0] in _PRESCRIBING and _subject_head(question, sentence) in _NORMS:
        # "What does the SQL standard specify / not support?": a standard says many things; this sentence one.
        return Failure(Reason.QUESTION_VAGUE, "asks what a standard says, of which its answer names one thing")
    if tail == ["return"] and len(_CONDITION.findall(sentence)) == 1 and not _CONDITION.search(question):
        # "What does X return?" for "X returns SQLITE_OK upon successful entry": the return of one case is
        # half an answer; a sentence that names two cases ("OK on success and ERROR if not") answers it.
        return Failure(Reason.QUESTION_VAGUE, "asks what its subject returns; its answer gives one case only")
    if tail == ["do"] and not {"do", "does", "did"} & set(WORD.findall(sentence.casefold())):
        # Mostly vague or off target (docs/notes/quality.md#vague-what-does-x-do-questions).
        return Failure(Reason.QUESTION_VAGUE, "asks what its subject does in general, not with its answer's verb")
    if tail is not None and tail not in ([], ["do"]) and _words_end(tail, sentence) is None:
        detail = f"asks with {' '.join(tail)!r}, which its answer does not say: it answers another question"
        return Failure(Reason.QUESTION_OFF_ANSWER, detail)
    beyond = [w for w in asked if w not in _subject_in(question, sentence) and w not in _ACTION_WORDS]
    if len(beyond) > MAX_ASKING_WORDS:
        return Failure(Reason.QUESTION_GIVES_ANSWER, f"states {beyond} besides its subject: part of the answer")
    asked_stems = {_root(w) for w in asked}
    rest = [w for w in dict.fromkeys(content_words(sentence)) if _root(w) not in asked_stems]
    given = len(answer_stems) - len({_root(w) for w in rest})
    if rest and given / len(answer_stems) > MAX_GIVEN_SHARE and len(rest) < 3:
        return Failure(Reason.QUESTION_GIVES_ANSWER, f"leaves only {rest} of its answer unsaid")
    if not rest:
        return Failure(Reason.QUESTION_GIVES_ANSWER, "restates its whole answer")
    return None
