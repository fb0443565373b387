"""The label round trip on the bundled model: how many label-first rows it passes, and how many of those
are right by hand labels (docs/notes/quality.md#label-round-trip).

For the first answer sentence of the first `--per-corpus` chunks of each held-out corpus of bench/quality.py
(valgrind, libxslt, Node.js; Debian packages), the bundled SmolLM2-135M writes a label exactly as a node does
(`write_label`, temperature 0.3, seeded), and a validator reads it back exactly as `ValidateExecutor` does
(`label_trip`, judged by the scheduler's `roundtrip_failure`). The choices are deliberately generic
(what kind of statement a sentence makes), so nothing here is tuned to one corpus. Hand labels, where a
choice fits the sentence (else null), are in bench/quality/label-trip-labels.jsonl, keyed by the text.
Usage:
    .venv/bin/python bench/label_trip.py [--per-corpus 14] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality

from coordinator.verify.rescoring import roundtrip_failure
from node.executors.synthesize import write_label
from node.executors.validate import label_trip
from protocol.tasks import DecodingParams, LabelTarget, SourceChunk, SynthesizePayload, ValidateOutput

CHOICES = ("definition", "instruction", "limitation")
DESCRIPTION = "the kind of statement the text makes"
LABELS = Path(__file__).resolve().parent / "quality" / "label-trip-labels.jsonl"


def payload(chunk: Any, sentence: str) -> SynthesizePayload:
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "kind": {"type": "string", "enum": list(CHOICES)}},
        "required": ["text", "kind"],
    }
    label = LabelTarget(
        sentence=sentence, text_field="text", label_field="kind", choices=CHOICES, description=DESCRIPTION
    )
    src = SourceChunk(
        url="file://" + chunk.path,
        content_sha256=chunk.content_sha256,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
    )
    return SynthesizePayload(instruction="Label each sentence by kind.", chunk=src, row_schema=schema, label=label)


async def run(args: argparse.Namespace) -> None:
    engine, sha = quality.make_engine(args.threads)
    truth = {r["text"]: r["label"] for r in map(json.loads, LABELS.read_text().splitlines())} if LABELS.exists() else {}
    n = passed = right = passed_right = labelled = 0
    for corpus in quality.ALL_CHUNKS:
        taken = 0
        for chunk, _, sentences in quality.work_items(corpus):
            if taken >= args.per_corpus:
                break
            if not sentences:
                continue
            taken += 1
            task = payload(chunk, sentences[0])
            written = (await write_label(engine, task, DecodingParams(seed=1, temperature=0.3), sha)).raw_text.strip()
            trip = await label_trip(engine, sha, task, " " + written)
            out = ValidateOutput(n_tokens=1, mean_logprob=0.0, topk_rate=1.0, token_logprobs=[], roundtrip=trip)
            ok = roundtrip_failure([out]) is None
            known = sentences[0] in truth
            n += 1
            passed += ok
            labelled += known
            right += known and truth[sentences[0]] == written
            passed_right += ok and known and truth[sentences[0]] == written
            print(f"{'PASS' if ok else 'drop'} {written:12} {sentences[0][:90]}", flush=True)
    print(
        f"\n{n} sentences: the round trip passed {passed}; by hand labels ({labelled} labelled), the writer was right"
    )
    print(f"{right} times, and {passed_right} of the {passed} passed labels were right")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-corpus", type=int, default=14)
    p.add_argument("--threads", type=int, default=1)
    trio.run(run, p.parse_args())


if __name__ == "__main__":
    main()
