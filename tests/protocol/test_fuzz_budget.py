"""bench/fuzz.py at a CI budget (every peer entry point, then the HTTP API), and what its long runs found.

The short run is the same harness as `make fuzz` with a budget of 1/100: every entry point that
takes bytes from a peer gets a few hundred structure-aware and random inputs and none may crash, and the
mutations must still reach past each decoder (a mutator that only makes garbage would pass vacuously).
The regressions below are the crashes the long runs found, reduced to the input that shows each.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from coordinator.verify.checks import check_result
from coordinator.verify.reasons import Reason
from protocol import encoding
from protocol.envelope import decode_body, encode_message
from protocol.errors import SchemaViolation
from protocol.messages import Claim, MessageKind, TaskOffer
from protocol.tasks import TaskKind

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


@pytest.fixture(scope="module")
def fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dataswarm_bench_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _crashes(report: object) -> str:
    return "\n".join(f"{s.entry}: {s.error} at {s.where} ({s.file})" for e in report.entries for s in e.samples)  # type: ignore[attr-defined]


def test_no_peer_entry_point_crashes_on_a_short_run(fuzz: ModuleType, tmp_path: Path) -> None:
    report = fuzz.run(0.01, seed=17, api_cases=0, crash_dir=tmp_path, log=lambda _: None)
    by_name = {e.name: e for e in report.entries}
    assert set(by_name) == set(fuzz.BASE_INPUTS)
    assert {f"body.{k.value}" for k in MessageKind} <= set(by_name)
    assert report.inputs >= 10_000
    assert report.crashes == 0, _crashes(report)
    # Depth: structure-aware mutations get past the decoder into what lies behind it.
    for name in ("envelope.resigned", "body.grant", "body.result", "grant.payload", "result.check", "framing.stream"):
        assert by_name[name].accepted > 0, f"no {name} input got past the decoder"


def test_a_planted_crash_is_counted_and_kept(fuzz: ModuleType, tmp_path: Path) -> None:
    """The harness itself: an exception that is not a clean rejection is a crash, with its input on disk."""
    rec = fuzz.Recorder(tmp_path)

    def target(raw: bytes, _: object) -> bool:
        if raw[:1] == b"\x00":
            raise KeyError("planted")
        raise SchemaViolation("clean")

    fuzz.drive(rec, "planted", 200, lambda rng: (bytes([rng.randrange(4)]), None), target, (SchemaViolation,), 0)
    stats = rec.stats["planted"]
    assert stats.inputs == 200 and 0 < stats.crashes < 200
    assert stats.samples[0].error.startswith("KeyError") and Path(stats.samples[0].file).read_bytes()[:1] == b"\x00"


def test_the_api_passes_schemathesis_at_a_ci_budget(fuzz: ModuleType) -> None:
    report = fuzz.run(0.0, api_cases=40, only=["api"], log=lambda _: None)
    api = report.api
    assert api is not None and api.cases >= 40
    assert api.failures == 0, "\n".join(api.samples)
    assert api.server_errors == 0


# --- regressions: crashes the long runs found -------------------------------------------------------------


@pytest.mark.parametrize("text", ["inf", "-inf", "nan", "1e999"])
def test_a_float_field_refuses_a_string_that_reads_as_no_finite_number(text: str) -> None:
    """Lax validation read "1e999" as inf: the message decoded, then could not be encoded for its digest."""
    body = Claim(task_id="t-1", attempt=0, free_slots=1, tok_s=1.0).model_dump(mode="python")
    body["tok_s"] = text
    with pytest.raises(SchemaViolation):
        decode_body(MessageKind.CLAIM, encoding.encode(body))


def test_an_int_field_refuses_digits_past_64_bits() -> None:
    """Forty digits in a string became a 133-bit int: decoded, and then no digest, no receipt."""
    offer = TaskOffer(task_id="t-1", job_id="j-1", task_kind=TaskKind.SEARCH, payload_sha256="ab" * 32,
                      model_sha256=[], offer_expires_ms=1)  # fmt: skip
    body = offer.model_dump(mode="python")
    body["offer_expires_ms"] = "9" * 40
    with pytest.raises(SchemaViolation, match="no canonical form"):
        decode_body(MessageKind.TASK_OFFER, encoding.encode(body))
    body["offer_expires_ms"] = "12"  # a string that fits still reads as its number, as before
    decoded = decode_body(MessageKind.TASK_OFFER, encoding.encode(body))
    assert isinstance(decoded, TaskOffer) and decoded.offer_expires_ms == 12


def test_results_with_unencodable_numbers_are_refused_at_decoding(fuzz: ModuleType) -> None:
    """The two shapes result.check found: a logprob of "1e999", a chunk offset of forty digits."""
    results = {g.payload.kind: r for g, r in fuzz.check_pairs()}
    validate = encoding.decode(encode_message(results["validate"]), limit=1 << 20)
    validate["output"]["token_logprobs"][1] = "1e999"
    curate = encoding.decode(encode_message(results["curate"]), limit=1 << 20)
    curate["output"]["tasks"][0]["chunk"]["start"] = "40" * 20
    for value in (validate, curate):
        with pytest.raises(SchemaViolation):
            decode_body(MessageKind.RESULT, encoding.encode(value))


def test_raw_text_nested_past_the_recursion_limit_is_a_schema_failure(fuzz: ModuleType) -> None:
    grant, result = fuzz.check_pairs()[0]
    assert grant.decoding is not None and grant.decoding.json_schema is not None
    hostile = result.model_copy(update={"raw_text": "[" * 5000})
    failures = check_result(hostile, signer_peer_id=fuzz.NODE.peer_id, grant=grant, allowed_models=[], now_ms=fuzz.NOW)
    assert [f.reason for f in failures] == [Reason.SCHEMA_INVALID]
    assert "raw_text is not JSON" in failures[0].detail


def test_logprobs_whose_sum_overflows_are_a_schema_failure(fuzz: ModuleType) -> None:
    grant, result = next((g, r) for g, r in fuzz.check_pairs() if g.payload.kind == "validate")
    output = result.output.model_copy(update={"n_tokens": 2, "mean_logprob": -1.0, "token_logprobs": [-1e308, -1e308]})
    hostile = result.model_copy(update={"output": output})
    failures = check_result(hostile, signer_peer_id=fuzz.NODE.peer_id, grant=grant, allowed_models=[], now_ms=fuzz.NOW)
    assert Reason.SCHEMA_INVALID in [f.reason for f in failures]
    assert any("overflow" in f.detail for f in failures)
