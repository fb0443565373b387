"""The wait for nodes: from the live nodes and the kinds they serve, whether a stage's tasks wait, and for how many."""

from __future__ import annotations

import pytest

from coordinator import job_states
from coordinator.pipeline.waiting import NodeWait, node_wait, nodes_needed
from protocol.tasks import DETERMINISTIC_KINDS, GENERATIVE_KINDS, TaskKind

LLM = {TaskKind.SPEC, TaskKind.QUESTION_GEN, TaskKind.SYNTHESIZE, TaskKind.VALIDATE}
FETCH = {TaskKind.SEARCH, TaskKind.RETRIEVE, TaskKind.CURATE}


@pytest.mark.parametrize("kind", sorted(GENERATIVE_KINDS | DETERMINISTIC_KINDS))
def test_replicated_kinds_need_two_distinct_nodes_unless_one_is_trusted(kind: TaskKind) -> None:
    assert nodes_needed(kind) == 2
    assert nodes_needed(kind, trusted=True) == 1
    assert nodes_needed(kind, replicas=3) == 3  # follows the scheduler's untrusted_replicas


def test_no_live_node_waits_for_two() -> None:
    wait = node_wait(TaskKind.QUESTION_GEN, {})
    assert wait == NodeWait("question_gen", live=0, needed=2) and wait.waiting
    assert wait.describe() == "waiting for nodes: 0 live, needs 2 for verification of question_gen tasks"


def test_one_untrusted_node_still_waits_and_a_second_ends_the_wait() -> None:
    one = node_wait(TaskKind.SYNTHESIZE, {"a": LLM})
    assert (one.live, one.needed, one.waiting) == (1, 2, True)
    two = node_wait(TaskKind.SYNTHESIZE, {"a": LLM, "b": LLM})
    assert (two.live, two.needed, two.waiting) == (2, 2, False)


def test_only_nodes_that_serve_the_stage_kind_count() -> None:
    serving = {"llm-1": LLM, "llm-2": LLM, "fetch": FETCH}
    search = node_wait(TaskKind.SEARCH, serving)
    assert (search.live, search.waiting) == (1, True)
    assert not node_wait(TaskKind.QUESTION_GEN, serving).waiting
    assert node_wait(TaskKind.RETRIEVE, {"a": set(), "b": set()}).live == 0  # live but serving nothing


def test_a_trusted_node_alone_suffices_but_only_if_it_serves_the_kind() -> None:
    alone = node_wait(TaskKind.QUESTION_GEN, {"t": LLM}, trusted={"t"})
    assert (alone.live, alone.needed, alone.waiting) == (1, 1, False)
    elsewhere = node_wait(TaskKind.SEARCH, {"t": LLM, "f": FETCH}, trusted={"t"})
    assert (elsewhere.live, elsewhere.needed, elsewhere.waiting) == (1, 2, True)
    offline = node_wait(TaskKind.QUESTION_GEN, {}, trusted={"t"})  # trusted, but not live
    assert offline.waiting and offline.needed == 2


def test_a_wait_round_trips_through_the_spec_document() -> None:
    wait = NodeWait("search", live=1, needed=2)
    assert NodeWait.from_doc(wait.as_doc()) == wait
    assert NodeWait.from_doc(None) is None and NodeWait.from_doc({"stage": "search", "live": "1"}) is None
    assert NodeWait("spec", live=0, needed=1).describe() == "waiting for nodes: 0 live, needs 1 to run spec tasks"


def test_the_state_sets_agree() -> None:
    waiting = job_states.WAITING_FOR_NODES
    assert waiting in job_states.ALL and waiting in job_states.RESUMED and waiting in job_states.CANCELLABLE
    assert waiting not in job_states.FINAL and waiting not in job_states.OFFERED
    assert job_states.DELIVERED < job_states.FINAL and set(job_states.ALL) == job_states.FINAL | set(job_states.RESUMED)
