"""curate: documents + instruction -> synthesis tasks, one per source chunk. No LLM.

Owns: deterministic segmentation of document text — paragraphs, sentences,
and the chunks built from them — with character offsets into the document,
so that `doc.text[chunk.start:chunk.end] == chunk.text` always holds and any
node produces byte-identical output (curate is verified by quorum).
`synthesize` reuses `sentence_spans` for its evidence candidates.

Chunking: paragraphs (split at blank lines) are packed greedily into chunks of
at most `chunk_chars` characters; a paragraph that is too long is split at
sentence ends, a sentence that is too long at spaces, a word that is too long
anywhere. Chunks shorter than `MIN_CHUNK_CHARS` carry too little to ground a
row and are dropped. When `max_tasks` cuts the list, documents take turns
(round-robin), so one long page cannot crowd out the others.

Answer sentences (PAQ's first step, "pick answer-bearing passages"): each
chunk also names up to `ANSWERS_PER_CHUNK` of its sentences that can stand
as the answer of a question on their own: a complete declarative sentence of
moderate length, no code debris, that opens with the thing it talks about
(a subject phrase followed by a verb) rather than with a pronoun or a
connective that points at another sentence, and whose verb phrase a question
can carry (`asking_verb`: the question about it is "wh + auxiliary + subject +
the sentence's own verb"). Definitions ("X is a ...") come
first: the question they answer ("What is X?") is the one a reader asks most.
The rules are English; a chunk in another language yields no answers and its
rows are written the generic way.

An LLM is not needed: choosing chunks by structure is reproducible across
nodes and free, while an LLM pass would cost a generation per document and
make curate a generative kind that needs re-scoring.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from itertools import zip_longest

from wordfreq import zipf_frequency

from node.executors.base import ExecutionError, ExecutionResult
from protocol.digests import content_sha256
from protocol.tasks import (
    CurateOutput,
    CuratePayload,
    DecodingParams,
    Document,
    Frozen,
    SourceChunk,
    SynthesisSpec,
    TaskKind,
)

MIN_CHUNK_CHARS = 80
ANSWERS_PER_CHUNK = 4
"""Rows per chunk are capped by this too: a chunk's answers are spread over the job, not spent at once."""
ANSWER_MIN_WORDS = 6
ANSWER_MAX_WORDS = 45
ANSWER_MAX_CHARS = 300
"""The evidence bound (synthesize.EVIDENCE_MAX_CHARS): an answer is always one whole evidence candidate."""

Span = tuple[int, int]

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
# A sentence ends after . ! ? (plus closing quotes/brackets) followed by whitespace, or at a line break.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])(?<![eE]\.g\.)(?<![iI]\.e\.)(?<!\bcf\.)(?<!\bvs\.)(?!(?<=\betc\.)[ \t]+[a-z])[\"'”’)\]]*(\s+)|(\n+)"
)
"""The separator is the whitespace (group 1 or 2): closing quotes and brackets stay with their sentence. "e.g.",
"i.e.", "cf." and "vs." end no sentence: cut there, "... a dual license, i.e." was delivered as an answer. Nor does
"etc." before a lowercase word ('the meaning of the "warning" etc. labels')."""
_SPACE = re.compile(r"\s+")


def _strip(text: str, start: int, end: int) -> Span | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if end > start else None


def _split(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[Span]:
    """Spans of text[start:end] between matches of `pattern`, stripped, separators dropped."""
    spans: list[Span] = []
    pos = start
    for m in pattern.finditer(text, start, end):
        cut = m.start(m.lastindex) if m.lastindex else m.start()
        if (s := _strip(text, pos, cut)) is not None:
            spans.append(s)
        pos = m.end()
    if (s := _strip(text, pos, end)) is not None:
        spans.append(s)
    return spans


def paragraph_spans(text: str) -> list[Span]:
    return _split(text, 0, len(text), _PARAGRAPH_BREAK)


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[Span]:
    """Sentences of text[start:end] (default: all), as stripped spans."""
    return _split(text, start, len(text) if end is None else end, _SENTENCE_END)


def bounded_pieces(text: str, span: Span, max_chars: int) -> list[Span]:
    """Split `span` into pieces of at most max_chars: sentences, then words, then hard cuts."""
    if span[1] - span[0] <= max_chars:
        return [span]
    out: list[Span] = []
    sentences = sentence_spans(text, *span)
    if len(sentences) > 1:
        for s in sentences:
            out.extend(bounded_pieces(text, s, max_chars))
        return out
    words = _split(text, span[0], span[1], _SPACE)
    if len(words) > 1:
        return _pack(text, [w for word in words for w in bounded_pieces(text, word, max_chars)], max_chars)
    return [(i, min(i + max_chars, span[1])) for i in range(span[0], span[1], max_chars)]


def _pack(text: str, units: list[Span], max_chars: int) -> list[Span]:
    """Greedily merge consecutive units while the merged span stays within max_chars."""
    chunks: list[Span] = []
    for start, end in units:
        if chunks and end - chunks[-1][0] <= max_chars:
            chunks[-1] = (chunks[-1][0], end)
        else:
            chunks.append((start, end))
    return chunks


def chunk_spans(text: str, max_chars: int, min_chars: int = MIN_CHUNK_CHARS) -> list[Span]:
    """Chunks of `text` as (start, end) offsets, each at most max_chars and at least min_chars long."""
    units = [piece for para in paragraph_spans(text) for piece in bounded_pieces(text, para, max_chars)]
    return [(s, e) for s, e in _pack(text, units, max_chars) if e - s >= min_chars]


# Words that make a sentence lean on another one ("It returns ...", "However, ..."), or that open
# something that is not a statement about a subject.
_DEPENDENT_OPENER_TEXT = (
    "this that these those it its they them their there here he she his her we our you your i however "
    "but and or so then also thus hence therefore otherwise instead still yet such for if when while "
    "because although though unless since as see note example e.g i.e both each either neither all "
    "some any many most other another one none no not to on in at by with from under over after "
    "before during within without through upon via per please regardless just additional additionally "
    "further furthermore moreover similarly likewise future different various several certain numerous"
)
_DEPENDENT_OPENERS = frozenset(_DEPENDENT_OPENER_TEXT.split())
_AUXILIARY_TEXT = "is are was were can cannot may might must will would should shall could does do did has have had"
_AUXILIARIES = frozenset(_AUXILIARY_TEXT.split())
_FUNCTION_WORD_TEXT = (
    "the a an to of in on at by with from for and or as into onto than prior below above which who whose"
)
_FUNCTION_WORDS = frozenset(_FUNCTION_WORD_TEXT.split())
_PHRASE_WORD = re.compile(r"^[\w.()\[\]'`:-]+$")
_DEFINITION = re.compile(r"\s(?:is|are)\s+(?:a|an|one|the(?!\s+(?:same|only)\b))\b")
""""X is the only accepted value for Y" says what X is used for, not what it is: "What is X?" is not its question."""
_DEBRIS = re.compile(r"[{};=<>|$\\→]|https?:|\.\.\.|\s[-*•]\s|\s[.,;](?=\s|$)")
"""Markup and code, and a space before punctuation: what is left where extraction dropped an inline element
("set in the System Administration Manager (SAM) under → .")."""
_WORD_CHARS = re.compile(r"\w")
_MAX_SUBJECT_WORDS = 7
_IMPERATIVE_NEXT = frozenset(["the", "a", "an", "to", "this", "these", "that", "your", "all", "any", "each"])


def _inflected(word: str) -> bool:
    """A third-person verb form (returns, provides). No lexicon, so a plural noun looks the same; endings
    verbs rarely have (class, status, analysis) do not count."""
    w = word.lower()
    if not word.islower():  # a capital mid-sentence starts a name ("The United States ..."), not a verb
        return False
    return len(w) > 3 and w.isalpha() and w.endswith("s") and not w.endswith(("ss", "us", "is"))


_SHORT_SUBJECT_WORDS = 4
"""A subject found by an inflected verb alone (no auxiliary) must be this short and hold no plural-looking
word: "The functions mirror definitions" would otherwise read as subject "The functions mirror"."""


def sentence_subject(sentence: str) -> str:
    """The phrase a sentence opens with and talks about ("The lookaside allocator" in "The lookaside
    allocator is ..."), or "" when it does not open with one: an opener that leans on another
    sentence, an adverb ("Generally"), a gerund, a label ("Note:"), or a verb (an instruction or a
    fragment: "Returns a list of ...", "Refer to the ...").

    The verb is the first auxiliary (is, can, must, does, ...) after a plausible subject; failing that,
    an inflected verb after a short one. Past tenses ("-ed") are not taken for verbs: in documentation
    they are mostly participles ("The modules described in this chapter provide ...")."""
    words = sentence.split()
    first = words[0].lower() if words else ""
    if len(words) < 3 or first.strip(",").split("'")[0] in _DEPENDENT_OPENERS or first.endswith(("ly", "ing")):
        return ""
    if words[1].lower() in _IMPERATIVE_NEXT and "_" not in first and "(" not in first:
        return ""  # "Refer to ...", "Use the ...": an instruction, or a verb-first fragment
    limit = min(_MAX_SUBJECT_WORDS, len(words) - 1)
    for i in range(1, limit + 1):
        if words[i].lower() in _AUXILIARIES:
            return "" if _verb_first(words[:i]) else _subject(_without_adverbs(words[:i]))
    for i in range(1, min(_SHORT_SUBJECT_WORDS, limit) + 1):
        if _inflected(words[i]) and not any(_inflected(w) for w in words[:i]):
            if any(w.islower() and w.endswith("ed") for w in words[1:i]):
                return ""  # "SQL-92 defined three feature sets": the verb came first, "sets" is its object
            if _plural_before_verb(words[i + 1 :]):
                return ""  # "Public Internet MX hosts without certificates ... must": "hosts" is a noun
            return "" if _verb_first(words[:i]) else _subject(_without_adverbs(words[:i]))
    return ""


_PREPOSITION_TEXT = "of for to into by with from in on at as about onto upon"
_PREPOSITIONS = frozenset(_PREPOSITION_TEXT.split())
_CLAUSE_BREAK_TEXT = (
    "that which who whom whose when whenever where while if unless because and or but so as than how whether since "
    "until what why"
)
_CLAUSE_BREAKS = frozenset(_CLAUSE_BREAK_TEXT.split())
"""Words that open another clause: an auxiliary after one belongs to that clause, not to the sentence's subject."""
_NOUN_PREPOSITIONS = frozenset(["without", "with", "of", "in", "from", "for", "on", "at", "under", "behind"])


def _plural_before_verb(after: list[str]) -> bool:
    """Whether the words after an inflected-looking word show it is a plural noun, not the verb: a bracket right
    after it ("Eliminate redundant RBL lookups (people often ...)"), "and" or "or" before a word that is no verb, or a
    preposition and then an auxiliary in the same clause ("Public Internet MX hosts without certificates signed by
    a CA must still generate ..."). A verb with its object ("specifies the number of times X can be exceeded") does
    not count."""
    if after and after[0].startswith("("):
        return True
    if len(after) > 1 and after[0] in ("and", "or") and not _inflected(after[1]):
        return True  # "environment variables and -X options is ...": nouns; "allocates and initializes": verbs
    if not after or after[0].lower() not in _NOUN_PREPOSITIONS:
        return False
    for word in after:
        w = word.lower()
        if w in _CLAUSE_BREAKS or word.endswith((",", ";", ":")) or word.startswith("("):
            return False
        if w in _AUXILIARIES:
            return True
    return False


def _verb_first(head: list[str]) -> bool:
    """Whether a would-be subject is a fragment that opens with its verb ("Raises ValueError on non-Unix-ish
    systems", its subject named in the sentence before): a verb-like first word, a name as its object, then a
    preposition. A plural noun first ("Booleans in Python", "Integers read from a Buffer") has no name next."""
    if len(head) < 3 or not _inflected(head[0].lower()) or not (head[1][0].isupper() or _NAME.search(head[1])):
        return False
    return any(w.lower() in _PREPOSITIONS for w in head[2:])


_ADVERB_TEXT = "not never now only always often still already usually generally normally sometimes"
_ADVERBS = frozenset(_ADVERB_TEXT.split())


_IMPERATIVE_TEXT = (
    "use see call note pass make run add remove consider try avoid specify write create install enable disable "
    "refer compare define ensure do display append print perform"
)
_IMPERATIVES = frozenset(_IMPERATIVE_TEXT.split())
"""Verbs that open an instruction ("Use shutil.move() to support moves ..."): it has no subject to ask about."""
_DOCUMENT_PART = re.compile(
    r"^(?:the\s+)?(?:table|figure|part|section|chapter|appendix|example|listing|step|note)\s+[\w.-]+$", re.I
)
"""A part of the document by its label ("Table B.3", "Part II", "Section 8.1.4"): what it shows is known only
beside that document (docs/notes/quality.md#document-parts)."""
_VERSIONED = re.compile(r"\bv?\d+(?:\.(?:\d+|[xX]))+[a-z]?\d*$")
"""A subject that ends in a version number ("Python 3.3", "SQLite version 3.7.16.2"): a release adds, fixes and
uses many things, so "What does Python 3.3 add?" has no one answer."""


def _adverb(word: str) -> bool:
    return word in _ADVERBS or (word.isalpha() and word.islower() and len(word) > 5 and word.endswith("ly"))


def _without_adverbs(head: list[str]) -> list[str]:
    """ "The SQLite core never looks at ...": "never" belongs to the verb, not to the subject."""
    while len(head) > 1 and _adverb(head[-1]):
        head = head[:-1]
    return head


_CLAUSE_TEXT = "if that which who whom whose when whether where unless because while how what"
_CLAUSE_WORDS = frozenset(_CLAUSE_TEXT.split())
"""A subject holding one of these is a clause, not a name ("Airbus confirms that SQLite", "Returns 1 if o"):
the labelled set had each asked verbatim as "What is Returns 1 if o?"."""


def _subject(head: list[str]) -> str:
    last = head[-1].lower()
    if not all(_PHRASE_WORD.match(w) and not w.endswith(":") for w in head):
        return ""
    if any(w[0].isupper() and w.lower() in _IMPERATIVES for w in head[1:]):
        return ""  # "mutual_auth Use only mechanisms ...": a term run into its description (a list without breaks)
    if any(w.lower() in _CLAUSE_WORDS for w in head[1:]):
        return ""
    if last in _FUNCTION_WORDS or last in _DEPENDENT_OPENERS:
        return ""
    subject = " ".join(head)
    return subject if len(subject) >= 3 and _WORD_CHARS.search(subject) else ""


def is_definition(sentence: str) -> bool:
    """ "X is a ...": the sentence says what its subject is."""
    subject = sentence_subject(sentence)
    return bool(subject) and _DEFINITION.match(sentence, len(subject)) is not None


_POINTING = re.compile(
    r"\b(?:this|these|those|following|former|latter|above|below|such|here|previous|also|likewise|similarly|again"
    r"|resulting|remaining|the\s+equivalent(?!\s+(?:of|to)\b))\b",
    re.I,
)
"""Words that point at another part of the page: a sentence holding one answers nothing read alone
(docs/notes/quality.md#sentences-that-point-elsewhere)."""
_NAME = re.compile(r"\w[_.(]|[_.]\w|[a-zA-Z]\d|[a-z][A-Z]|[A-Z]{2,}")
"""Code-like (sqlite3_open(), os.path, _charset), CamelCase or an acronym. A number or a single letter alone
("template (1)", "version 2", "the parameter N") and a hyphenated adjective ("the left-most column", "the
command-line shell") name an item of the page, not a thing a reader knows without it."""


@cache
def coined(word: str) -> bool:
    """A word no general English word list holds (wordfreq's, pinned, so every node agrees): a product or
    command name ("Rsyslogd", "omhiredis", "Pyodide"), where a common noun ("Configuration") is not one.
    A sentence-initial capital says nothing, so without this a one-word name at the start named nothing
    (docs/notes/quality.md#coined-names). An inflected coinage ("iterables", "enqueued", "docstring") is
    jargon for a kind of thing, not the name of one."""
    folded = word.casefold()
    return (
        word.isalpha()
        and len(word) > 2
        and not folded.endswith(("s", "ed", "ing"))
        and zipf_frequency(folded, "en") == 0.0
    )


def names_something(subject: str) -> bool:
    """Whether a subject names a particular thing: a code identifier, an acronym, a hyphenated or
    CamelCase term, a capitalised word past the first, or a coined word. "The first argument", "the
    return value" and "the handler" name nothing outside their page: in the labelled set, questions built
    on them were the largest group of unacceptable rows that passed every other check."""
    words = [w.strip("()[],'`") for w in subject.split()]
    words = [w for w in words if len(w) > 1 and not w.isdigit()]
    return (
        any(_NAME.search(w) for w in words) or any(w[:1].isupper() for w in words[1:]) or any(map(coined, words))
    )


_ORDINAL_OCCURRENCE = re.compile(
    r"^the\s+(?:first|second|third|fourth|fifth|last|next|\d+(?:st|nd|rd|th))\s+(\S+)", re.IGNORECASE
)
_CODE_WORD = re.compile(r"\w[_.(]|[_.]\w|[a-zA-Z]\d|\b[a-z]+[A-Z]")
_GENERIC_HEAD_TEXT = (
    "code script form argument arguments parameter parameters value values file files directory context "
    "output input result results string field fields option options variable variables api interface data "
    "version implementation run session call invocation"
)
_GENERIC_HEADS = frozenset(_GENERIC_HEAD_TEXT.split())
"""Nouns that name a role on a page, not a thing: "the SQL script", "the Perl code", "the RENAME form", "the API"
are the page's own, and a language or kind before them does not say which one."""


_EXAMPLE = frozenset(["example", "examples"])
_RELATIVE = frozenset(["separate", "corresponding", "similar", "respective", "matching", "analogous"])


def page_instance(subject: str, sentence: str) -> bool:
    """Whether a subject names something only its page identifies, though `names_something` passes it: an
    occurrence of a named thing ("the second setImmediate()", "the first RewriteCond": the page's example), an
    example ("An example in the library itself"), a role noun whose modifiers hold no identifier ("the SQL
    script", "the API"), or a set the page lists ("the XSLT parameters", "the SQLite developers"), unless the
    sentence defines it. On the held-out corpora these were the largest group of accepted rows a reader could
    not place (docs/notes/quality.md#page-instances)."""
    words = subject.split()
    if len(words) >= 2 and words[0].lower() in ("the", "a", "an", "one", "another") and words[1].lower() in _EXAMPLE:
        return True  # "An example in the Python library itself is ...": an example of what the page is about
    if len(words) >= 3 and words[0].lower() in ("the", "a", "an") and words[1].lower() in _RELATIVE:
        return True  # "A separate csv.writer class": separate from what the sentence before named
    if len(words) < 2 or words[0].lower() != "the":
        return False
    occurrence = _ORDINAL_OCCURRENCE.match(subject)
    if occurrence and names_something("the " + occurrence.group(1)):
        return True  # "the first RewriteCond": a named thing is one; the first of it is in the page's example
    if any(_CODE_WORD.search(w) for w in words[1:-1]):
        return False
    head = words[-1].strip("()[],")
    if head.lower() in _GENERIC_HEADS:
        return True
    plural = head.islower() and head.endswith("s") and not head.endswith(("ss", "us", "is"))
    return plural and not _CODE_WORD.search(head) and not is_definition(sentence)


_COPULA_TEXT = "is are was were"
_COPULAS = frozenset(_COPULA_TEXT.split())
_DO_TEXT = "does do did"
_DO = frozenset(_DO_TEXT.split())
_MODAL_TEXT = "can cannot may might must will would should shall could"
_MODALS = frozenset(_MODAL_TEXT.split())
_ASKING_WORD = re.compile(r"^[a-z][a-z-]*$")
_MAX_FORCED_WORDS = 4


def _base_forms(verb: str) -> tuple[str, ...]:
    """The forms "does X ..." may take for an inflected verb (returns -> return, applies -> apply); where
    the ending is ambiguous (caches, matches) both, and the writer picks."""
    if verb.endswith("ies") and len(verb) > 4:
        return (verb[:-3] + "y",)
    if verb.endswith("sses"):
        return (verb[:-2],)
    if verb.endswith(("ches", "shes", "xes", "zes", "oes")):
        return (verb[:-2], verb[:-1])
    return (verb[:-1],)


def asking_verb(sentence: str) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    """How a question about `sentence` must ask: the auxiliary after the subject and the words it must
    carry after the subject (each a tuple of allowed forms), taken from the sentence's own verb phrase:
    "X returns a pointer" -> ("does", (("return",),)), "X must not close Y" -> ("must", (("not",),
    ("close",))), "X is normally stored in Y" -> ("is", (("normally",), ("stored",))), and a definition
    "X is a Y" -> ("is", ()) for "What is X?". None when the sentence has no verb phrase a question can
    carry. Carrying the verb keeps the question as specific as its sentence; with a free verb the writer
    falls back to a vague "What does X do?" (docs/notes/quality.md#vague-what-does-x-do-questions)."""
    subject = sentence_subject(sentence)
    if not subject:
        return None
    rest = sentence.rstrip(".").split()[len(subject.split()) :]
    head = subject.split()[-1]
    if not rest:
        return None
    verb = rest[0].lower()
    if verb == "cannot":
        verb, rest = "can", ["can", "not", *rest[1:]]
    if verb in _PERFECT:
        return None
    plural_head = _inflected(head) and "(" not in head
    if verb in _COPULAS or verb in _MODALS or verb in _DO:
        if verb in ("is", "was", "does") and plural_head:
            return None  # "The UINT collating sequences is ...": the source's own agreement slip
        if verb in _COPULAS and is_definition(sentence):
            return (verb, ())
        aux, tail = verb, [w.lower() for w in rest[1:]]
        if verb in _DO and not (tail and _adverb(tail[0])):
            return None  # "X does multiple sorts": "does" is the main verb, there is none to ask with
        forced: list[str] = []
        for word in tail[:_MAX_FORCED_WORDS]:
            forced.append(word)
            if not (_adverb(word) or word in ("be", "been")):
                break
        if forced and (_adverb(forced[-1]) or forced[-1] in ("be", "been")):
            return None  # the verb lies past the words a question may be made to carry
        forms: tuple[tuple[str, ...], ...] = tuple((w,) for w in forced)
    else:
        adverbs = [w.lower() for w in rest[:2] if _adverb(w.lower())]
        main = rest[len(adverbs)] if len(rest) > len(adverbs) else ""
        if not main.islower():
            return None
        plural = " and " in f" {subject} "
        if plural and _inflected(main):
            return None  # "The X() and Y() routines attempt ...": after "and", "routines" is a noun, not the verb
        aux = "do" if plural or not _inflected(main) else "does"
        base = _base_forms(main) if aux == "does" else (main,)
        forms = (*((w,) for w in adverbs), base)
    if not forms or not all(_ASKING_WORD.match(f) for alts in forms for f in alts):
        return None
    if forms[-1][0] in _FUNCTION_WORDS or forms[-1][0] in _DEPENDENT_OPENERS - _ADVERBS:
        return None  # "X is the same value as ...": no verb to ask with
    return (aux, forms)


MAX_SUBJECT_MENTIONS = 2
"""A subject named in more sentences of the chunk than this is what the chunk is about ("SQLite" on a SQLite
page): a question about it alone ("What does SQLite support?") has many answers there, not one."""
MAX_PAGE_MENTIONS = 11
"""The same across the whole page: a subject named in more of its sentences than this is what the page is about,
and only a definition ("What is DRD?") has one answer; "What does Node.js use?" has many
(docs/notes/quality.md#page-subjects)."""
_PERFECT = frozenset({"has", "have", "had"})
""""X has been added in 1.4", "X has the same meaning as ...": no question built on X and its verb asks for
what these sentences say."""


_EXAMPLE_NAME = re.compile(
    r"\bexample\.(?:com|org|net|edu)\b|\.(?:example|invalid)\b|\b(?:foo|bar|baz|qux|quux|foobar)\b", re.I
)
"""Names reserved for examples (RFC 2606: example.com, .example, .invalid) and placeholder names (foo, bar): a
sentence naming one describes the page's example ("Mail for all other addresses in example.com is rejected with
..."), true of that example alone."""
_PASSIVE_PARTICIPLE = re.compile(
    r"^(?:is|are|was|were)\s+(?:(?!usually|normally|generally|typically|always)\w+ly\s+)?"
    r"(?:\w{2,}(?:ed|en)|set|made|built|given|kept|held|found|sent|shown|run|done|put|read|thrown|chosen)\b"
)


def _indefinite_event(subject: str, sentence: str) -> bool:
    """Whether the sentence says what is done to some one instance: an indefinite subject and a passive ("A unique
    block ID is assigned to the block", "A wrapper API was added for ...", "A zero-length Buffer is created if
    ..."). "What is a unique block ID assigned to?" then asks about the page's instance. In the labelled rows all 9
    of these were unacceptable; a modal ("An SQL statement can be preceded by ..."), an active verb ("A
    FrameSummary object represents ...") or an adverb of habit ("An SQLite database is normally stored in ...")
    states something general and passes."""
    first = subject.split()[0]
    rest = sentence[len(subject) :].lstrip()
    return first in ("A", "An") and _PASSIVE_PARTICIPLE.match(rest) is not None


_OFF_PAGE_OBJECT = re.compile(r"\b(?:of|for|to|in|on|with|about|from)\s+(?:it|them)\.$")
"""In a definition, "Andreas Arnez is the current maintainer and developer of it.": what "it" is, only the page
says. Elsewhere "it" is mostly the sentence's own subject ("X stays under a license, i.e. both apply to it")."""
_PERSON_ROLE = re.compile(
    r"\s(?:is|was)\s+(?:a|an|the|one\s+of\s+the)\s+(?:[\w-]+\s+){0,3}?(?:maintainer|author|creator|founder|developer"
    r"|contributor|inventor|designer|programmer|engineer|leader|president|chair|member|professor|researcher)s?\b"
)


def _a_person(subject: str, sentence: str) -> bool:
    """Whether a definition defines a person ("Andreas Arnez is the current maintainer ..."): the question it
    makes is "What is Andreas Arnez?", and a person is a who, not a what."""
    words = subject.split()
    names = len(words) >= 2 and all(w.isalpha() and w[0].isupper() and w[1:].islower() for w in words)
    return (
        names and words[0].lower() not in ("the", "a", "an") and _PERSON_ROLE.match(sentence, len(subject)) is not None
    )


def _unbalanced(sentence: str) -> bool:
    """A bracket opened or closed outside the sentence: the split cut inside a parenthesis ("(where X.Y
    stands for the version of Python)."), so what is left is a fragment, not a sentence."""
    return any(sentence.count(o) != sentence.count(c) for o, c in ("()", "[]", "{}"))


_WH_OPENERS = frozenset(["how", "what", "when", "where", "which", "who", "whom", "whose", "why", "whether"])
_TOPIC_WORD = re.compile(r"[\w.+#-]+")
_INDENTED_BREAK = re.compile(r"\n[ \t]+")
"""A line break into an indented line: wrapped prose in extracted text, where a heading starts flush left
(docs/notes/quality.md#document-parts)."""


def page_sentences(page: str) -> list[str]:
    """A page's sentences, case-folded: what `answer_sentences` counts a subject's mentions in."""
    return [page[s:e].casefold() for s, e in sentence_spans(page)]


def answer_sentences(
    text: str, limit: int = ANSWERS_PER_CHUNK, *, page: Sequence[str] = (), topic: str = ""
) -> list[str]:
    """The sentences of `text` that can answer a question on their own, definitions first. `page`: the
    sentences of the whole document the chunk is from (`page_sentences`), when known. `topic`: the job's
    topic; a subject it names is what every page is about, and like a page's own subject it answers only
    a definition (docs/notes/quality.md#page-subjects)."""
    topic_words = " " + " ".join(_TOPIC_WORD.findall(topic.casefold())) + " "
    picked: list[tuple[int, int, str]] = []
    spans = sentence_spans(text)
    sentences = [text[s:e] for s, e in spans]
    folded = [s.casefold() for s in sentences]
    for order, sentence in enumerate(sentences):
        before = sentences[order - 1].split()[-1] if order else "."
        wrapped = order and _INDENTED_BREAK.search(text, spans[order - 1][1], spans[order][0]) is not None
        if wrapped and before[-1] not in ".!?:" and sentence.split()[0] not in ("The", "A", "An"):
            continue  # an indented line that goes on from the one before ("database-level\n   GRANT permissions")
        if before.endswith(("...", "…")) or before.lower() in _FUNCTION_WORDS | _DEPENDENT_OPENERS:
            continue  # the split cut a sentence at "..." or a line break ("a superset of\nWHERE clause terms ...")
        if before.isalpha() and before.islower() and sentence.split()[0].lower() not in ("the", "a", "an"):
            # Wrapped prose: the line before ends mid-sentence ("... most often internal\nNode.js handle objects
            # ..."). After a list item without a full stop a sentence still opens with its article.
            continue
        n_words = len(sentence.split())
        if not (ANSWER_MIN_WORDS <= n_words <= ANSWER_MAX_WORDS) or len(sentence) > ANSWER_MAX_CHARS:
            continue
        first = sentence.split()[0]
        if not (first[0].isupper() or "_" in first) or not sentence.endswith(".") or first.lower() in _IMPERATIVES:
            continue
        if first.lower() in _WH_OPENERS:
            continue  # "How long Elasticsearch will wait for ...": a parameter's description, not a statement
        if _DEBRIS.search(sentence) or "\n" in sentence or _POINTING.search(sentence) or _unbalanced(sentence):
            continue
        if _EXAMPLE_NAME.search(sentence):
            continue
        subject = sentence_subject(sentence)
        if not subject or not names_something(subject) or _VERSIONED.search(subject) or _DOCUMENT_PART.match(subject):
            continue
        if page_instance(subject, sentence) or _a_person(subject, sentence) or _indefinite_event(subject, sentence):
            continue
        if sentence.split()[len(subject.split())].lower() in _PERFECT or asking_verb(sentence) is None:
            continue
        core = subject.casefold().removeprefix("the ").removeprefix("a ").removeprefix("an ")
        if sum(core in f for f in folded) > MAX_SUBJECT_MENTIONS:
            continue
        definition = is_definition(sentence)
        if definition and _OFF_PAGE_OBJECT.search(sentence):
            continue  # "X is the maintainer of it": X is what "it" is not, so "it" is named elsewhere
        if not definition and (sum(core in f for f in page) > MAX_PAGE_MENTIONS or f" {core} " in topic_words):
            continue
        picked.append((0 if definition else 1, order, sentence))
    return list(dict.fromkeys(s for _, _, s in sorted(picked)))[:limit]


class CurateExecutor:
    kind = TaskKind.CURATE

    async def execute(
        self, payload: Frozen, decoding: DecodingParams | None, model_sha256: str | None
    ) -> ExecutionResult:
        if not isinstance(payload, CuratePayload):
            raise ExecutionError(f"curate executor got a {type(payload).__name__}")
        return ExecutionResult(output=curate(payload))


def curate(payload: CuratePayload) -> CurateOutput:
    per_doc = [_document_tasks(doc, payload) for doc in payload.documents]
    tasks: list[SynthesisSpec] = []
    for round_ in zip_longest(*per_doc):
        tasks.extend(t for t in round_ if t is not None)
    return CurateOutput(tasks=tasks[: payload.max_tasks])


def _document_tasks(doc: Document, payload: CuratePayload) -> list[SynthesisSpec]:
    digest = content_sha256(doc.text)
    if digest != doc.content_sha256:
        # Offsets are only meaningful against the exact text the digest names.
        raise ExecutionError(f"document {doc.url} does not match its content_sha256 (got {digest})")
    page = page_sentences(doc.text)
    return [
        SynthesisSpec(
            instruction=payload.instruction,
            chunk=SourceChunk(url=doc.url, content_sha256=doc.content_sha256, start=s, end=e, text=doc.text[s:e]),
            answers=answer_sentences(doc.text[s:e], page=page, topic=payload.topic),
        )
        for s, e in chunk_spans(doc.text, payload.chunk_chars)
    ]
