"""Adversarial nodes for the verification tests: real node runtimes that cheat, one behaviour each.

Run as a process: `python -m tests.e2e.cheaters --bootstrap ADDR --trust PEER_ID --workdir DIR B1 B2 ...`.
Each behaviour gets its own identity and its own libp2p host (so each is a distinct peer to the
coordinator); they share one loaded copy of the bundled model, which some behaviours need in
order to look plausible. Behaviours:

- garbage:      schema-valid rows of random words, with a flattering claimed log-probability;
- other_prompt: a real generation, but for a different instruction, reporting that other prompt;
- copy:         submits work done for another task (a decoy it generated once) for every task;
- wrong_model:  declares a model digest it did not use and returns a fixed string;
- replay:       re-sends the exact bytes of an old Result envelope instead of doing new work;
- forge:        signs its results with a key that is not its own;
- silent:       claims tasks and never answers.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import trio

from network import TASK_PROTOCOL, HostConfig, SwarmHost, now_ms, run_reconnect_watchdog
from node.executors import ExecutorDeps, build_executor
from node.llm.engine import Engine, EngineSettings, open_engine
from node.runtime import NodeRuntime
from protocol.envelope import seal
from protocol.identity import Identity, public_key_from_peer_id
from protocol.messages import GenerationStats, Grant, MessageKind, Result
from protocol.tasks import GeneratedRow, SynthesizeOutput, SynthesizePayload, TaskKind

BEHAVIOURS = ("garbage", "other_prompt", "copy", "wrong_model", "replay", "forge", "silent")
WORDS = [
    "alpha",
    "banana",
    "river",
    "quantum",
    "lamp",
    "seven",
    "orbit",
    "velvet",
    "cactus",
    "piano",
    "meadow",
    "copper",
]


class Cheater(NodeRuntime):
    """A node runtime with one step replaced; everything else (claims, slots, status) is the real one."""


class Garbage(Cheater):
    async def _execute(self, grant: Grant) -> Result | None:
        rng = random.Random(grant.lease_id)
        data = {"question": " ".join(rng.choices(WORDS, k=8)) + "?", "answer": " ".join(rng.choices(WORDS, k=12))}
        return _fake(grant, data, json.dumps({"rows": [data]}), mean_logprob=-0.4)


class OtherPrompt(Cheater):
    async def _execute(self, grant: Grant) -> Result | None:
        payload = grant.payload
        if isinstance(payload, SynthesizePayload):
            other = payload.model_copy(update={"instruction": "Write a question and answer about cooking pasta."})
            if payload.target is not None and payload.chunk is not None:
                # An answer-first prompt holds only the target sentence: ask about another one.
                sentence = "Pasta is cooked in a large pot of boiling salted water."
                target = payload.target.model_copy(update={"sentence": sentence})
                chunk = payload.chunk.model_copy(update={"text": sentence})
                other = other.model_copy(update={"target": target, "chunk": chunk})
            grant = grant.model_copy(update={"payload": other})
        result = await super()._execute(grant)
        return result  # its `prompt` is the other prompt: what a cheater would report


class Copy(Cheater):
    first: Result | None = None

    async def _execute(self, grant: Grant) -> Result | None:
        if self.first is None:
            # The work it copies was done for another task (here: a decoy it ran once).
            decoy = grant.payload.model_copy(update={"instruction": "Write about the history of the printing press."})
            self.first = await super()._execute(grant.model_copy(update={"payload": decoy}))
            if self.first is None:
                return None
        return self.first.model_copy(
            update={"task_id": grant.task_id, "job_id": grant.job_id, "lease_id": grant.lease_id,
                    "attempt": grant.attempt, "decoding": grant.decoding}
        )  # fmt: skip


class WrongModel(Cheater):
    async def _execute(self, grant: Grant) -> Result | None:
        data = {"question": "What is this?", "answer": "I am a fixed string, not a model."}
        result = _fake(grant, data, json.dumps({"rows": [data]}), mean_logprob=-0.3)
        return result.model_copy(update={"model_sha256": "ee" * 32})


class Replay(Cheater):
    old: bytes | None = None

    async def _submit(self, coordinator: str, grant: Grant, result: Result) -> None:
        if self.old is None:
            self.old = seal(self.host.identity, result, now_ms=now_ms())
        await self.host.request(coordinator, TASK_PROTOCOL, self.old, expect={MessageKind.RECEIPT}, timeout=30)

    async def _execute(self, grant: Grant) -> Result | None:
        return await Garbage._execute(self, grant)  # type: ignore[arg-type]


class Forge(Cheater):
    async def _submit(self, coordinator: str, grant: Grant, result: Result) -> None:
        forged = seal(Identity.generate(), result, now_ms=now_ms())
        await self.host.request(coordinator, TASK_PROTOCOL, forged, expect={MessageKind.RECEIPT}, timeout=30)

    async def _execute(self, grant: Grant) -> Result | None:
        return await Garbage._execute(self, grant)  # type: ignore[arg-type]


class Silent(Cheater):
    async def _execute(self, grant: Grant) -> Result | None:
        return None  # never answers; the slot is free again, so it keeps claiming (and lapsing)


CLASSES: dict[str, type[Cheater]] = {
    "garbage": Garbage,
    "other_prompt": OtherPrompt,
    "copy": Copy,
    "wrong_model": WrongModel,
    "replay": Replay,
    "forge": Forge,
    "silent": Silent,
}


def _fake(grant: Grant, data: dict[str, str], raw: str, *, mean_logprob: float) -> Result:
    return Result(
        task_id=grant.task_id,
        job_id=grant.job_id,
        lease_id=grant.lease_id,
        attempt=grant.attempt,
        output=SynthesizeOutput(rows=[GeneratedRow(data=data, evidence="")]),
        model_sha256=grant.model_sha256,
        decoding=grant.decoding,
        prompt="<|im_start|>user\nwhatever<|im_end|>",
        raw_text=raw,
        stats=GenerationStats(prompt_tokens=50, completion_tokens=40, mean_logprob=mean_logprob, finish_reason="stop"),
    )


async def run(args: argparse.Namespace) -> None:
    trusted = {public_key_from_peer_id(args.trust)}
    kinds = [TaskKind.SYNTHESIZE]  # every task they take, they cheat on
    async with open_engine(EngineSettings(n_threads=1, benchmark=True)) as engine, trio.open_nursery() as nursery:
        for name in args.behaviours:
            nursery.start_soon(one, name, engine, kinds, trusted, args)
        print("READY", flush=True)


async def one(name: str, engine: Engine, kinds: list[TaskKind], trusted: set[bytes], args: argparse.Namespace) -> None:
    identity = Identity.from_seed(name.encode().ljust(32, b"\0")[:32])
    executors = {k: build_executor(k, ExecutorDeps(engine=engine)) for k in kinds}
    host_cfg = HostConfig(identity=identity, listen=["/ip4/127.0.0.1/tcp/0"], mdns=False, bootstrap=[args.bootstrap])
    async with SwarmHost(host_cfg) as host, trio.open_nursery() as nursery:
        runtime = CLASSES[name](
            host,
            executors,
            engine.model_infos(),
            trusted_coordinators=trusted,
            slots={"llm": 3, "io": 0},  # an adversary claims all it can
            status_interval_s=2.0,
        )
        nursery.start_soon(run_reconnect_watchdog, host, [args.bootstrap])
        await nursery.start(runtime.run)
        (Path(args.workdir) / f"{name}.peer").write_text(identity.peer_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--trust", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("behaviours", nargs="+", choices=BEHAVIOURS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    trio.run(run, args)


if __name__ == "__main__":
    main()
