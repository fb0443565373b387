"""The verifier's own error rates, as measured, for the dataset card: what a "verified" row is worth.

Owns: `MEASURED` (per model digest: how often prefill re-scoring charged honest work and let each kind
of cheat through, and how often the round trip let a question for another sentence pass), and the
card's lines about them. The figures come from bench/verifier_rates.py (bench/RESULTS.md has the
run); a model that was never measured is said to be unmeasured, not given another model's rates.

Must not: compute or estimate anything; every figure names its sample.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BUNDLED_SMOLLM2 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@dataclass(frozen=True)
class Rate:
    what: str
    k: int
    n: int
    low: float
    high: float
    """95% Wilson interval, as fractions."""
    note: str = ""

    def line(self) -> str:
        note = f"; {self.note}" if self.note else ""
        return f"{self.what}: {self.k} of {self.n} ({self.k / self.n:.2%}, 95% CI {self.low:.2%}-{self.high:.2%}){note}"


@dataclass(frozen=True)
class Measurement:
    source: str
    rates: tuple[Rate, ...]
    builds: str = ""
    """Which llama.cpp builds were compared, and whether an honest node on another one was charged."""


MEASURED: dict[str, tuple[Measurement, ...]] = {
    BUNDLED_SMOLLM2: (Measurement(
        source="bench/verifier_rates.py, 2026-12-07, code d2bd12c, 2106 answer-first synthesize tasks from the Python "
        "and SQLite docs (every chunk of a page), validator top-k 40",
        rates=(
            Rate("honest output charged by re-scoring (false positive)", 7, 2106, 0.0016, 0.0068,
                 "each a garbled question ('themagic', 'zeroblabeled') whose sampled tokens the validator's own "
                 "tokenization of the text does not reproduce, or that scored under the floor"),
            Rate("honest output of another llama.cpp build (AVX only, no AVX2/FMA) charged by this build's "
                 "validator", 11, 2025, 0.0030, 0.0097, "all garbled questions (words run together: 'acolumn', "
                 "'unsignedintegervalue'), as on one build; in 4 of the 11 tasks this build's own question was "
                 "charged too"),
            Rate("honest output charged by a validator on that other build", 7, 2028, 0.0017, 0.0071,
                 "all garbled questions, each charged by this build's validator too"),
            Rate("honest output on other settings (1 thread, batch 8) charged", 0, 106, 0.0, 0.0350),
            Rate("another task's output accepted by re-scoring (false negative)", 41, 2106, 0.0144, 0.0263,
                 "2 of 2106 also passed the row gates"),
            Rate("shuffled output accepted by re-scoring", 3, 2106, 0.0005, 0.0042, "none passed the row gates"),
            Rate("truncated output accepted by re-scoring", 259, 2106, 0.1096, 0.1377,
                 "a prefix of an honest output scores like one; none passed the row gates"),
            Rate("the same model requantized (Q4_0) declared as the bundled Q4_1, accepted", 2081, 2096, 0.9882,
                 0.9957, "re-scoring cannot tell quantizations of one model apart: model identity is not verified"),
            Rate("another model's output (Gemma-3-270M) declared as this one, accepted", 101, 106, 0.8943, 0.9797,
                 "the question grammar forces most of the question, so two small models write alike"),
            Rate("round trip: a question written for another sentence of the chunk passed", 1, 252, 0.0007, 0.0221,
                 "the honest question passed 249 of 252 (98.8%)"),
        ),
        builds="llama-cpp-python 0.3.36 built AVX2+FMA (the Makefile's wheel) and AVX only agree: an honest node "
        "on the other build is charged about as often as on its own (0.54% against 0.33%, intervals overlapping), "
        "and only for garbled questions; the two builds wrote the same question in 1727 of 2028 tasks",
    ), Measurement(
        source="bench/verifier_rates.py, 2026-12-06, 514 answer-first synthesize tasks from the Python and SQLite "
        "docs, validator top-k 40",
        rates=(
            Rate("honest output charged by re-scoring (false positive)", 2, 514, 0.0011, 0.0141,
                 "both were malformed questions that sampled unlikely tokens"),
            Rate("honest output on other settings (1 thread, batch 8) charged", 1, 103, 0.0017, 0.0530,
                 "102 of 103 wrote the same question byte for byte"),
            Rate("another task's output accepted (false negative)", 13, 514, 0.0148, 0.0428,
                 "all 13 came from a sibling task on the same chunk and subject"),
            Rate("shuffled output accepted", 0, 514, 0.0, 0.0074),
            Rate("truncated output accepted by re-scoring", 56, 514, 0.0849, 0.1388,
                 "a prefix of an honest output scores like one; the question gates refused all 56"),
            Rate("another model's output (Gemma-3-270M) declared as this one, accepted", 45, 52, 0.7473, 0.9332,
                 "a grammar forces most of a 10-token question, so re-scoring cannot tell two small models apart; "
                 "the rows still pass the same gates and round trip"),
            Rate("round trip: a question written for another sentence of the chunk passed", 1, 42, 0.0042, 0.1232),
        ),
    ),),
}  # fmt: skip
"""Per model digest, its samples, newest first: the card gives the newest in full and the others a line each."""


def card_lines(models: Iterable[str]) -> list[str]:
    """The card's lines on the verifier's measured error rates for the models that wrote its rows."""
    lines: list[str] = []
    for digest in sorted(set(models)):
        measured = MEASURED.get(digest, ())
        if not measured:
            lines.append(
                f"- verifier error rates for model `{digest[:12]}…`: not measured (the thresholds were measured on "
                "the bundled SmolLM2-135M; bench/verifier_rates.py measures a model)"
            )
            continue
        newest, *earlier = measured
        lines.append(f"- verifier error rates for model `{digest[:12]}…` ({newest.source}):")
        lines += [f"  - {rate.line()}" for rate in newest.rates]
        if newest.builds:
            lines.append(f"  - llama.cpp builds: {newest.builds}")
        for sample in earlier:
            head = sample.rates[0]
            lines.append(f"- earlier verifier error rates ({sample.source}): {head.line()}")
    return lines
