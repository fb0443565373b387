"""The request reader: a request sentence becomes a DatasetSpec.

Public API:
- `parse_request(text, rows=None)`: the rule-based reading; a `ParsedRequest`
  (spec, notes for people, keys the text stated) or a `RequestError`;
- `merge_llm_spec(draft, rule)`: a `spec` task's draft merged over that reading
  (merge.py says the policy); `LLM_SPEC_NOTE`, the line previews show for such a job;
- `MAX_REQUEST_CHARS`: the longest request read.

Modules: parse.py runs the readers in counts.py (row counts), fields.py (the
columns), facets.py (grounding, topic, language, license, inline examples) over
text.py's normalised text; reading.py holds what they yield; merge.py is the LLM path.
How many tasks a spec plans is coordinator.pipeline.sizing.
Must not: do I/O, read a clock, or import `node/`.
"""

from coordinator.request.merge import LLM_SPEC_NOTE, merge_llm_spec
from coordinator.request.parse import MAX_REQUEST_CHARS, parse_request
from coordinator.request.reading import ParsedRequest, RequestError

__all__ = [
    "LLM_SPEC_NOTE",
    "MAX_REQUEST_CHARS",
    "ParsedRequest",
    "RequestError",
    "merge_llm_spec",
    "parse_request",
]
