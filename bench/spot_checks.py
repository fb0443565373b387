"""Spot-check rate against catch rate: how fast a trusted node that turns bad is caught, and what checks cost.

Trusted nodes run at r = 1 and a share `spot_check_p` of their results is re-scored anyway (a validate
task on two other nodes). This measures, per spot-check rate, how many tasks a node that earned trust
and then turns bad completes before it is caught (its first rejected result, which also costs it its
trust: r goes back to 2), before it is blacklisted, and how many of its fabricated results are accepted
meanwhile; and the honest steady-state cost per accepted row of that rate (P2's share of spot checks).

The coordinator is the REAL one: `Scheduler` (claims, adaptive replication, decide, effects), a SQLite
`Store` in a temp dir, reputation (coordinator/verify/reputation.py) and re-scoring's `decide` with its
default thresholds (coordinator/verify/rescoring.py), driven synchronously with signed envelopes as in
bench/coordinator.py's P3 part. The nodes are DOUBLES (no LLM, no network; canned, correctly signed results):
- N honest node doubles, already trusted (score 0.95, 50 accepted: a steady-state network); they run
  replicas and validate tasks. An honest validator double reports the measurement prefill re-scoring
  gives (the medians of RescoreThresholds' table, SmolLM2-135M): the producer's own output -1.21 nats,
  top-10 rate 0.89; another prompt's output -2.68, 0.76. The verdict comes from the scheduler's real
  decide() on those ValidateOutputs, not from the double.
- one turned node double: a newcomer with no reputation. It answers honestly until the scheduler grants it
  a task at r = 1 (read from the store's replicas: the scheduler's own decision), then fabricates every output
  (another prompt's output, claiming the mean logprob it measured under its own prompt, -1.2). It does not
  validate. A re-score of a fabricated output misses it (validators measure it as an honest output) with
  the measured false-negative rate of re-scoring for "another task's output" (coordinator/verify/
  error_rates.py, from bench/verifier_rates.py: 13 of 514 = 2.5%), drawn once per validate task: honest
  validators compute the same prefill, so both validators of a task miss it or neither does.

Per rate, each run (a fresh store, its own seed) counts tasks of the turned node after it turns: to the
first rejected result (caught; trust lost), to blacklisting, and the fabricated results accepted. The
analytic column is the geometric law with p_detect = p (1 - FN): median ln 0.5 / ln(1 - p_detect), p95
ln 0.05 / ln(1 - p_detect). The honest cost is a separate run of the honest doubles alone (all trusted),
computed from the store's results as bench/coordinator.py's verified_cost does (generated-token
equivalents, prefill weighing 1/2.3), with canned token counts stated in the output.

A second, shorter part runs an oscillating cheat at the default rate: the same turned double, but it
fabricates only when granted r = 1 and behaves whenever it is replicated (see the reputation note in the output).

Run: .venv/bin/python bench/spot_checks.py [--runs 200] [--honest 8] [--rates 0.02,0.05,0.1,0.2,0.3] [--seed 1]
(about 15 minutes on 2 busy cores at the defaults; --runs 50, as run_all.py runs it, a quarter of that).
Type-check with `mypy --explicit-package-bases bench/spot_checks.py`: without it mypy takes bench/ as a root,
where bench/coordinator.py shadows the coordinator package (as for every bench script that imports it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coordinator.scheduler import Scheduler, SchedulerConfig
from coordinator.store import Store, TaskState
from coordinator.verify.error_rates import BUNDLED_SMOLLM2, MEASURED
from coordinator.verify.reputation import DEFAULT_CONFIG, NodeReputation, ReputationConfig, is_trusted
from protocol import encoding
from protocol.envelope import open_envelope, seal
from protocol.identity import Identity
from protocol.messages import Claim, GenerationStats, Grant, NodeStatus, Result, Verdict
from protocol.state import ReplicaState
from protocol.tasks import (
    GeneratedRow,
    SourceChunk,
    SynthesizeOutput,
    SynthesizePayload,
    TaskKind,
    ValidateOutput,
    ValidatePayload,
)

MODEL = BUNDLED_SMOLLM2
JOB = "bench"
T0 = 1_700_000_000_000
STEP_MS = 200
PREFILL_WEIGHT = 1 / 2.3  # as bench/coordinator.py: prefill runs 2.3x the generation rate (docs/notes/llama.md)
PROMPT_TOKENS = 420
"""Canned synthesize prompt (instruction + chunk) tokens."""
COMPLETION_TOKENS = 80
"""Canned synthesize completion tokens (one question-answer row)."""
HONEST_CLAIM = -1.6
"""An honest producer's claimed mean logprob: below its re-score (median gap 0.39 nats, rescoring.py)."""
CHEAT_CLAIM = -1.2
"""What the cheat measured for the output under the prompt it was made for."""
OWN = (-1.21, 0.89)
FOREIGN = (-2.68, 0.76)
MAX_AFTER = 5000
"""Give up on a run after this many tasks of the turned node after turning (never reached at p >= 0.02)."""
WORDS = (
    "python", "module", "function", "returns", "value", "object", "class", "method", "string", "list", "dictionary",
    "argument", "keyword", "default", "exception", "raised", "import", "package", "file", "path", "thread", "process",
    "socket", "buffer", "stream", "encode", "decode", "format", "number", "integer", "table", "index", "query",
    "cursor", "commit", "schema", "column", "record",
)  # fmt: skip


def false_negative_rate() -> tuple[float, str]:
    for rate in MEASURED[BUNDLED_SMOLLM2].rates:
        if rate.what.startswith("another task's output accepted"):
            return rate.k / rate.n, rate.line()
    raise LookupError("error_rates.py has no false-negative rate for another task's output")


STATUS_HONEST = NodeStatus(
    version="bench", models=[], task_kinds=[TaskKind.SYNTHESIZE, TaskKind.VALIDATE], free_slots=4, total_slots=4
)
STATUS_TURNED = NodeStatus(version="bench", models=[], task_kinds=[TaskKind.SYNTHESIZE], free_slots=4, total_slots=4)


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def row_text(rng: random.Random) -> tuple[str, SynthesizeOutput]:
    """A distinct question-answer row (so dedup keeps every one): its raw JSON text and its output."""
    data = {"question": f"Which {sentence(rng, 9)}?", "answer": f"The {sentence(rng, 14)}."}
    output = SynthesizeOutput(rows=[GeneratedRow(data=data, evidence=data["answer"])])
    return json.dumps(data), output


@dataclass
class Run:
    earned_after: int = 0
    """Tasks the turned node ran honestly before the scheduler granted it one at r = 1."""
    caught: int | None = None
    untrusted: int | None = None
    blacklisted: int | None = None
    fabricated_accepted: int = 0
    fabricated_rows: int = 0
    stuck: int = 0


@dataclass
class Network:
    """One coordinator (real Scheduler + Store) and its node doubles, driven step by step."""

    tmp: Path
    p: float
    n_honest: int
    seed: int
    fn_rate: float
    honest_only: bool = False
    now: int = T0
    fabricated: set[str] = field(default_factory=set)
    missed: dict[str, bool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # the doubles' choices and the misses
        self.coordinator = Identity.from_seed(b"\xc0" * 32)
        self.honest = [Identity.from_seed(bytes([1 + i]) * 32) for i in range(self.n_honest)]
        self.turned = Identity.from_seed(b"\xee" * 32)
        self.by_peer = {n.peer_id: n for n in [*self.honest, self.turned]}
        self.store = Store(self.tmp / "coordinator.db")
        self.store.create_job(JOB, {"grounded": False}, allowed_models=[MODEL], now_ms=self.now)
        for n in self.honest:  # established, trusted nodes, as in a steady-state network
            self.store.save_reputation(NodeReputation(n.peer_id, score=0.95, accepted=50, updated_ms=self.now))
        config = SchedulerConfig(reputation=ReputationConfig(spot_check_p=self.p))
        self.sched = Scheduler(self.store, self.coordinator, config, rng=random.Random(self.seed + 1))
        self.seen = -(10**9)
        self.refresh()
        self.n_tasks = 0

    def refresh(self) -> None:
        if self.now - self.seen < 10_000:
            return
        for n in self.honest:
            self.sched.note_status(n.peer_id, STATUS_HONEST, self.now)
        if not self.honest_only:
            self.sched.note_status(self.turned.peer_id, STATUS_TURNED, self.now)
        self.seen = self.now

    def tick(self) -> None:
        self.now += STEP_MS
        self.refresh()

    def claim(self, task_id: str, node: Identity) -> Grant | None:
        offered = [s for s in self.store.replicas(task_id) if s.state is ReplicaState.OFFERED]
        if not offered:
            return None
        claim = Claim(task_id=task_id, attempt=offered[0].attempt, model_sha256=MODEL, free_slots=1, tok_s=50.0)
        answer = self.sched.on_claim(claim, node.peer_id, self.now)
        return answer if isinstance(answer, Grant) else None

    def send(self, node: Identity, result: Result) -> None:
        self.tick()
        env = seal(node, result, now_ms=self.now)
        opened = open_envelope(env, now_ms=self.now, replay_cache=None, transport_peer_id=node.peer_id)
        self.sched.on_result(opened, self.now)

    def synth_result(self, g: Grant, raw: str, output: SynthesizeOutput, claim: float) -> Result:
        return Result(
            task_id=g.task_id, job_id=g.job_id, lease_id=g.lease_id, attempt=g.attempt, output=output,
            model_sha256=g.model_sha256, decoding=g.decoding, prompt=f"<|im_start|>user\n{g.task_id}<|im_end|>",
            raw_text=raw,
            stats=GenerationStats(prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS,
                                  mean_logprob=claim, finish_reason="stop"),
        )  # fmt: skip

    def validate(self, g: Grant, node: Identity) -> None:
        payload = g.payload
        assert isinstance(payload, ValidatePayload)
        if g.task_id not in self.missed:  # one draw per validate task: honest prefill is deterministic
            self.missed[g.task_id] = self.rng.random() < self.fn_rate
        foreign = payload.candidate in self.fabricated and not self.missed[g.task_id]
        mean, topk = FOREIGN if foreign else OWN
        out = ValidateOutput(n_tokens=COMPLETION_TOKENS, mean_logprob=mean, topk_rate=topk,
                             token_logprobs=[mean] * COMPLETION_TOKENS)  # fmt: skip
        stats = GenerationStats(prompt_tokens=PROMPT_TOKENS + COMPLETION_TOKENS, completion_tokens=0)
        result = Result(task_id=g.task_id, job_id=g.job_id, lease_id=g.lease_id, attempt=g.attempt, output=out,
                        model_sha256=g.model_sha256, decoding=g.decoding, stats=stats)  # fmt: skip
        self.send(node, result)

    def involved(self, task_id: str) -> set[str]:
        nodes = {r.node for r in self.store.results_for(task_id)}
        return nodes | {s.node for s in self.store.replicas(task_id) if s.node}

    def settle(self, task_id: str, honest_text: tuple[str, SynthesizeOutput]) -> bool:
        """Run validations and re-offered replicas until the task closes; False if it got stuck."""
        for _ in range(50):
            if self.store.task(task_id).state is not TaskState.OPEN:
                return True
            progressed = False
            audits = self.store.validations(task_id)
            for r in self.store.results_for(task_id):
                vid = audits.get(r.result_id)
                if vid is None:
                    continue
                vtask = self.store.task(vid)
                while vtask.state is TaskState.OPEN:
                    busy = self.involved(vid) | self.involved(task_id)
                    free = [n for n in self.honest if n.peer_id not in busy]
                    g = self.claim(vid, self.rng.choice(free)) if free else None
                    if g is None:
                        break
                    self.validate(g, self.by_peer[g.node_peer_id])
                    progressed = True
                    vtask = self.store.task(vid)
            if self.store.task(task_id).state is TaskState.OPEN:
                busy = self.involved(task_id)
                free = [n for n in self.honest if n.peer_id not in busy]
                g = self.claim(task_id, self.rng.choice(free)) if free else None
                if g is not None:  # a re-offered or added replica: an honest node runs it
                    self.send(self.by_peer[g.node_peer_id], self.synth_result(g, *honest_text, HONEST_CLAIM))
                    progressed = True
            if not progressed:
                return self.store.task(task_id).state is not TaskState.OPEN
        return False

    def task(self, first: Identity) -> tuple[int, Result | None]:
        """One synthesize task claimed first by `first`: (its replicas, `first`'s result)."""
        self.n_tasks += 1
        task_id = f"t{self.n_tasks:05d}"
        payload = SynthesizePayload(
            instruction="Write a question and answer grounded in the chunk.",
            chunk=SourceChunk(url=f"http://127.0.0.1/doc{self.n_tasks}", content_sha256="0" * 64, start=0, end=1,
                              text="x"),
            row_schema={"type": "object"},
            n_rows=1,
        )  # fmt: skip
        self.tick()
        self.sched.submit(task_id, JOB, "synthesize", payload, est_tokens=COMPLETION_TOKENS, now_ms=self.now)
        g = self.claim(task_id, first)
        if g is None:
            return 0, None
        replicas = len(self.store.replicas(task_id))
        if first is self.turned and replicas == 1:
            self.turned_bad = True  # trusted with a lone run: from this task on it fabricates
        cheating = self.turned_bad and (replicas == 1 or not self.oscillate)
        honest_text = row_text(self.rng)
        grants = [(first, g)]
        if replicas >= 2:
            partner = self.rng.choice([n for n in self.honest if n.peer_id != first.peer_id])
            g2 = self.claim(task_id, partner)
            if g2 is not None:
                grants.append((partner, g2))
        mine: Result | None = None
        for node, grant in grants:
            if node is self.turned and cheating:
                raw, out = row_text(self.rng)
                self.fabricated.add(raw)
                result = self.synth_result(grant, raw, out, CHEAT_CLAIM)
            else:
                result = self.synth_result(grant, *honest_text, HONEST_CLAIM)
            if node is first:
                mine = result
            self.send(node, result)
        if not self.settle(task_id, honest_text):
            self.stuck += 1
        return replicas, mine

    turned_bad: bool = False
    oscillate: bool = False
    """Fabricate only when granted a lone run (r = 1); behave whenever replicated (r = 2)."""
    stuck: int = 0

    def verdict_of(self, result: Result | None) -> Verdict | None:
        if result is None:
            return None
        for r in self.store.results_for(result.task_id):
            if r.node == self.turned.peer_id:
                v = self.store.verdict(r.result_id)
                return v.verdict if v is not None else None
        return None

    def turned_rows(self) -> int:
        """Dataset rows whose result came from the turned node."""
        conn = sqlite3.connect(f"file:{self.tmp / 'coordinator.db'}?mode=ro", uri=True)
        try:
            (n,) = conn.execute(
                "SELECT COUNT(*) FROM rows w JOIN results r ON r.result_id = w.result_id WHERE r.node = ?",
                (self.turned.peer_id,),
            ).fetchone()
        finally:
            conn.close()
        return int(n)

    honest_rows_of_turned: int = 0

    def close(self) -> None:
        self.store.close()


def one_run(p: float, n_honest: int, seed: int, fn_rate: float) -> Run:
    run = Run()
    with tempfile.TemporaryDirectory() as tmp:
        net = Network(Path(tmp), p, n_honest, seed, fn_rate)
        k = 0  # tasks since it turned bad
        while k < MAX_AFTER:
            rows_before = net.turned_rows() if not net.turned_bad else 0
            replicas, mine = net.task(net.turned)
            if replicas == 0:  # refused: blacklisted
                break
            if not net.turned_bad:  # earning trust: honest work at r = 2, a trusted partner replicating it
                run.earned_after += 1
                if run.earned_after > 500:
                    raise RuntimeError("the turned node never reached r = 1")
                continue
            if k == 0:
                net.honest_rows_of_turned = rows_before
            k += 1
            verdict = net.verdict_of(mine)
            if verdict is Verdict.ACCEPTED:
                run.fabricated_accepted += 1
            if verdict is Verdict.REJECTED and run.caught is None:
                run.caught = k
            rep = net.store.reputation(net.turned.peer_id)
            if run.untrusted is None and not is_trusted(rep, now_ms=net.now, config=net.sched.config.reputation):
                run.untrusted = k
            if rep is not None and rep.blacklisted:
                run.blacklisted = k
                break
        run.fabricated_rows = net.turned_rows() - net.honest_rows_of_turned
        run.stuck = net.stuck
        net.close()
    return run


@dataclass
class Oscillation:
    tasks: int = 0
    lone: int = 0
    """Tasks granted at r = 1 (it fabricated each)."""
    accepted: int = 0
    """Of those, accepted."""
    caught: int = 0
    blacklisted: int | None = None


def oscillating_run(p: float, n_honest: int, seed: int, fn_rate: float, horizon: int) -> Oscillation:
    """A turned node that cheats only at r = 1 and behaves at r = 2: `horizon` tasks after it first turns."""
    out = Oscillation()
    with tempfile.TemporaryDirectory() as tmp:
        net = Network(Path(tmp), p, n_honest, seed, fn_rate)
        net.oscillate = True
        while out.tasks < horizon:
            replicas, mine = net.task(net.turned)
            if replicas == 0:
                break
            if not net.turned_bad:
                continue
            out.tasks += 1
            if replicas == 1:
                out.lone += 1
                verdict = net.verdict_of(mine)
                out.accepted += verdict is Verdict.ACCEPTED
                out.caught += verdict is Verdict.REJECTED
            rep = net.store.reputation(net.turned.peer_id)
            if rep is not None and rep.blacklisted:
                out.blacklisted = out.tasks
                break
        net.close()
    return out


def honest_cost(p: float, n_honest: int, tasks: int, seed: int) -> tuple[float, float, int]:
    """(validation per accepted row in generations, verified cost per row, rows) for honest trusted nodes alone."""
    with tempfile.TemporaryDirectory() as tmp:
        net = Network(Path(tmp), p, n_honest, seed, 0.0, honest_only=True)
        for _ in range(tasks):
            net.task(net.rng.choice(net.honest))
        net.close()
        conn = sqlite3.connect(f"file:{Path(tmp) / 'coordinator.db'}?mode=ro", uri=True)
        row_results = {r[0] for r in conn.execute("SELECT result_id FROM rows")}
        generation: dict[str, float] = {}
        replicas: dict[str, float] = {}
        validation: dict[str, float] = {}
        for rid, task_id, stage, env in conn.execute(
            "SELECT r.result_id, r.task_id, t.stage, r.envelope FROM results r"
            " JOIN tasks t ON t.task_id = r.task_id WHERE t.stage IN ('synthesize', 'validate')"
        ):
            fields = encoding.decode(env, limit=len(env))
            result = open_envelope(env, now_ms=fields["issued_at"], replay_cache=None).message
            assert isinstance(result, Result)
            cost = result.stats.completion_tokens + PREFILL_WEIGHT * result.stats.prompt_tokens
            if stage == "validate":
                parent = task_id.split(".v")[0]
                validation[parent] = validation.get(parent, 0.0) + cost
            elif rid in row_results:
                generation[task_id] = generation.get(task_id, 0.0) + cost
            else:
                replicas[task_id] = replicas.get(task_id, 0.0) + cost
        conn.close()
    unit = sum(generation.values())
    rep = sum(c for t, c in replicas.items() if t in generation) / unit
    val = sum(c for t, c in validation.items() if t in generation) / unit
    return val, 1.0 + rep + val, len(row_results)


def check_cost() -> float:
    """One spot check's compute in generations: two validators' prefill of prompt + candidate."""
    generation = COMPLETION_TOKENS + PREFILL_WEIGHT * PROMPT_TOKENS
    return 2 * PREFILL_WEIGHT * (PROMPT_TOKENS + COMPLETION_TOKENS) / generation


def pct(values: list[int], q: float) -> float:
    """The q-quantile (nearest rank) of `values`."""
    s = sorted(values)
    return float(s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs (seeds) per rate")
    parser.add_argument("--honest", type=int, default=8, help="honest node doubles")
    parser.add_argument("--rates", default="0.02,0.05,0.1,0.2,0.3", help="spot_check_p values, comma-separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cost-tasks", type=int, default=300, help="tasks of the honest steady-state cost run")
    parser.add_argument("--oscillate-runs", type=int, default=10, help="runs of the oscillating cheat (0: skip)")
    parser.add_argument("--oscillate-tasks", type=int, default=200, help="its tasks after turning, per run")
    args = parser.parse_args()
    logging.getLogger("coordinator").setLevel(logging.ERROR)  # each blacklisting logs a warning
    rates = [float(x) for x in args.rates.split(",")]
    fn, fn_line = false_negative_rate()
    cfg = DEFAULT_CONFIG
    print(
        f"Spot checks vs catch rate: the REAL Scheduler/Store/reputation/re-scoring, {args.honest} honest node "
        f"DOUBLES (trusted) + 1 turned node DOUBLE; canned signed results, no LLM, no network; {args.runs} runs/rate"
    )
    print(f"   a check misses a fabricated output with p = {fn:.4f} (error_rates.py: {fn_line})")
    print(
        f"   reputation defaults: prior {cfg.prior}, gain {cfg.gain}, penalty {cfg.penalty}, trust at score >= "
        f"{cfg.trust_at} with >= {cfg.trust_min_accepted} accepted, blacklist below {cfg.blacklist_below}"
    )
    print(
        f"   canned tokens: synthesize {PROMPT_TOKENS} prompt + {COMPLETION_TOKENS} completion; validate "
        f"{PROMPT_TOKENS + COMPLETION_TOKENS} prefill, 2 validators per check"
    )
    print()
    header = (
        f"{'p':>5} | {'catch med':>9} {'p95':>5} {'(geom med':>9} {'p95)':>5} | {'blacklist med':>13} {'p95':>5} | "
        f"{'fab. accepted mean':>18} {'p95':>5} {'rows':>5} | {'valid./row':>10} {'cost/row':>8}"
    )
    print(header)
    print("-" * len(header))
    summary: dict[float, tuple[float, float]] = {}
    earned: list[int] = []
    stuck = 0
    unfinished = 0
    start = time.perf_counter()
    for p in rates:
        runs = [one_run(p, args.honest, args.seed * 100_003 + i, fn) for i in range(args.runs)]
        earned += [r.earned_after for r in runs]
        stuck += sum(r.stuck for r in runs)
        unfinished += sum(1 for r in runs if r.caught is None or r.blacklisted is None)
        caught = [r.caught if r.caught is not None else MAX_AFTER for r in runs]
        black = [r.blacklisted if r.blacklisted is not None else MAX_AFTER for r in runs]
        fab = [r.fabricated_accepted for r in runs]
        rows = statistics.mean(r.fabricated_rows for r in runs)
        mismatch = sum(1 for r in runs if r.untrusted != r.caught)
        pd = p * (1 - fn)
        geo_med, geo_95 = math.log(0.5) / math.log(1 - pd), math.log(0.05) / math.log(1 - pd)
        val, cost, _ = honest_cost(p, args.honest, args.cost_tasks, args.seed)
        summary[p] = (pct(caught, 0.95), pct(black, 0.95))
        print(
            f"{p:>5.2f} | {statistics.median(caught):>9.0f} {pct(caught, 0.95):>5.0f} {geo_med:>9.1f} {geo_95:>5.1f} | "
            f"{statistics.median(black):>13.0f} {pct(black, 0.95):>5.0f} | {statistics.mean(fab):>18.1f} "
            f"{pct(fab, 0.95):>5.0f} {rows:>5.1f} | {val:>10.3f} {cost:>8.3f}"
            + (f"  ({mismatch} runs lost trust at another task than the catch)" if mismatch else "")
        )
    print()
    print(
        "   catch: tasks the turned node completed after turning, up to its first rejected result (it lost trust, "
        "r = 2, at that same task in every run unless noted); geom: the analytic law, p_detect = p (1 - miss)"
    )
    print(
        "   blacklist: tasks up to blacklisting; fab. accepted: its fabricated results accepted meanwhile (rows: "
        "of those, delivered as dataset rows, mean)"
    )
    print(
        f"   valid./row, cost/row: honest trusted doubles alone, {args.cost_tasks} tasks per rate: validation "
        "compute per accepted row, and all replicas + validations per row, in generations (P2; 1.00 = unverified); "
        f"expected validation p x {check_cost():.2f} (one check: 2 validators' prefill)"
    )
    print(
        f"   earning trust: the newcomer ran {statistics.median(earned):.0f} honest tasks (min {min(earned)}, max "
        f"{max(earned)}) at r = 2 before the scheduler granted it one at r = 1"
    )
    if stuck or unfinished:
        print(f"   {stuck} tasks got stuck; {unfinished} runs ended before a catch or blacklist ({MAX_AFTER} tasks)")
    print(f"   {args.runs * len(rates)} runs in {time.perf_counter() - start:.0f} s")
    default = DEFAULT_CONFIG.spot_check_p
    if args.oscillate_runs:
        p = default if default in rates else rates[0]
        osc = [
            oscillating_run(p, args.honest, args.seed * 7_919 + i, fn, args.oscillate_tasks)
            for i in range(args.oscillate_runs)
        ]
        tasks, lone = sum(o.tasks for o in osc), sum(o.lone for o in osc)
        banned = [o.blacklisted for o in osc if o.blacklisted is not None]
        print()
        print(
            f"Oscillating cheat at p = {p}: the same turned DOUBLE, but it fabricates only when granted r = 1 and "
            f"behaves when replicated; {args.oscillate_runs} runs of {args.oscillate_tasks} tasks after turning"
        )
        print(
            f"   {lone} of {tasks} tasks granted at r = 1 ({lone / tasks:.0%}), all fabricated; "
            f"{sum(o.accepted for o in osc)} of them accepted ({sum(o.accepted for o in osc) / tasks:.0%} of its "
            f"tasks), {sum(o.caught for o in osc)} caught; blacklisted in {len(banned)} of {len(osc)} runs"
            + (f" (after {statistics.median(banned):.0f} tasks, median)" if banned else "")
        )
    if default in summary:
        c95, b95 = summary[default]
        print(
            f"spot_check_p = {default} (default): a trusted node that turns bad is caught (and loses trust) within "
            f"{c95:.0f} tasks, and blacklisted within {b95:.0f}, in 95% of runs"
        )


if __name__ == "__main__":
    main()
