"""Re-opening signed Result envelopes offline, long after they expired.

Owns: `open_result_offline`, which runs every check of
`protocol.envelope.open_envelope` (shape, version, kind, sizes, lifetime,
signature, body schema) with the clock set to the envelope's own issue time:
the question offline is "was this validly signed", not "is it fresh". Replay
caching is off (the same envelope may back several rows).
Must not: accept anything `open_envelope` would refuse for a reason other than time.
"""

from __future__ import annotations

from protocol import encoding
from protocol.envelope import Opened, max_envelope_size, open_envelope
from protocol.errors import MalformedMessage, ProtocolError
from protocol.messages import MessageKind, Result

_RESULT = frozenset({MessageKind.RESULT})


class EnvelopeInvalid(ValueError):
    """An envelope that does not verify; the message gives the protocol's reason."""


def open_result_offline(raw: bytes) -> tuple[Opened, Result]:
    """Verify a signed Result envelope regardless of its age; EnvelopeInvalid otherwise."""
    try:
        outer = encoding.decode(raw, limit=max_envelope_size(_RESULT), what="envelope")
        issued = outer.get("issued_at") if isinstance(outer, dict) else None
        if not isinstance(issued, int) or isinstance(issued, bool):
            raise MalformedMessage("envelope has no integer issued_at")
        opened = open_envelope(raw, now_ms=issued, replay_cache=None, expect=_RESULT)
    except ProtocolError as exc:
        raise EnvelopeInvalid(f"{type(exc).__name__}: {exc}") from None
    assert isinstance(opened.message, Result)  # expect={RESULT} guarantees it
    return opened, opened.message
