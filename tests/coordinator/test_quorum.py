"""Quorum over deterministic outputs: drifting pages still agree, different pages do not, majority wins."""

from __future__ import annotations

import pytest

from coordinator.verify.quorum import (
    QuorumPolicy,
    QuorumStatus,
    normalize_url,
    quorum,
    similarity,
    text_similarity,
)
from tests.coordinator.factories import ASYNCIO, PATHLIB, drifted, page, retrieve_output, search_output


def test_a_drifting_page_still_agrees() -> None:
    s = similarity(retrieve_output(ASYNCIO), retrieve_output(drifted(ASYNCIO)))
    assert QuorumPolicy().retrieve_agree <= s < 1.0
    assert s > 0.8


def test_a_different_page_disagrees() -> None:
    assert similarity(retrieve_output(ASYNCIO), retrieve_output(PATHLIB)) < 0.1
    assert text_similarity(page(300, variant=1), page(300, variant=2)) < 0.1


def test_identical_content_digests_short_circuit_and_status_or_redirect_differences_disagree() -> None:
    assert similarity(retrieve_output(ASYNCIO), retrieve_output(ASYNCIO)) == 1.0
    assert similarity(retrieve_output(ASYNCIO), retrieve_output(ASYNCIO, status=404)) == 0.0
    moved = retrieve_output(ASYNCIO).model_copy(update={"final_url": "http://127.0.0.1/elsewhere"})
    assert similarity(retrieve_output(ASYNCIO), moved) == 0.0


def test_two_against_one_majority_is_canonical_and_the_odd_one_is_minority() -> None:
    outcome = quorum(
        [
            ("r1", retrieve_output(ASYNCIO)),
            ("r2", retrieve_output(PATHLIB)),  # a cheater or a broken fetch
            ("r3", retrieve_output(drifted(ASYNCIO))),
        ]
    )
    assert outcome.status is QuorumStatus.AGREED
    assert outcome.canonical in {"r1", "r3"}
    assert set(outcome.majority) == {"r1", "r3"}
    assert outcome.minority == ("r2",)


def test_two_replicas_that_disagree_have_no_quorum() -> None:
    outcome = quorum([("a", retrieve_output(ASYNCIO)), ("b", retrieve_output(PATHLIB))])
    assert outcome.status is QuorumStatus.NO_QUORUM and outcome.canonical is None


def test_two_that_agree_make_a_quorum_and_one_alone_needs_min_agree_1() -> None:
    pair = quorum([("a", retrieve_output(ASYNCIO)), ("b", retrieve_output(drifted(ASYNCIO)))])
    assert pair.status is QuorumStatus.AGREED and pair.minority == ()
    single = [("a", retrieve_output(ASYNCIO))]
    assert quorum(single).status is QuorumStatus.NO_QUORUM
    trusted = quorum(single, policy=QuorumPolicy(min_agree=1))
    assert trusted.status is QuorumStatus.AGREED and trusted.canonical == "a"


def test_a_tie_is_not_a_majority() -> None:
    outcome = quorum(
        [
            ("a", retrieve_output(ASYNCIO)),
            ("b", retrieve_output(drifted(ASYNCIO))),
            ("c", retrieve_output(PATHLIB)),
            ("d", retrieve_output(PATHLIB + " Extra.")),
        ]
    )
    assert outcome.status is QuorumStatus.NO_QUORUM


def test_search_agreement_is_url_set_overlap() -> None:
    base = ["https://docs.python.org/3/library/asyncio.html", "http://127.0.0.1/a", "http://127.0.0.1/b"]
    reranked = ["HTTP://127.0.0.1:80/b/", "http://127.0.0.1/a#intro", "https://docs.python.org/3/library/asyncio.html"]
    churned = [*base[:2], "http://127.0.0.1/c"]
    unrelated = ["http://127.0.0.1/x", "http://127.0.0.1/y", "http://127.0.0.1/z"]
    assert similarity(search_output(base), search_output(reranked)) == 1.0
    assert similarity(search_output(base), search_output(churned)) == pytest.approx(0.5)
    assert similarity(search_output(base), search_output(unrelated)) == 0.0
    outcome = quorum([("s1", search_output(base)), ("s2", search_output(churned)), ("s3", search_output(unrelated))])
    assert outcome.status is QuorumStatus.AGREED and outcome.minority == ("s3",)


def test_url_normalization() -> None:
    assert normalize_url("HTTPS://Example.COM:443/a/#frag") == "https://example.com/a"
    assert normalize_url("http://example.com:8080/a?q=1") == "http://example.com:8080/a?q=1"


def test_mixed_kinds_are_refused() -> None:
    with pytest.raises(ValueError):
        quorum([("a", retrieve_output(ASYNCIO)), ("b", search_output(["http://a"]))])
