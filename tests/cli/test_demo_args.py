"""`dataswarm demo` refuses a bad --corpus before it starts anything."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app


def test_a_missing_corpus_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--corpus", str(tmp_path / "nope"), "--request", "10 pairs"])
    assert result.exit_code != 0 and "is not a folder" in result.output


def test_a_corpus_needs_a_request(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--corpus", str(tmp_path)], env={"COLUMNS": "200"})
    assert result.exit_code != 0 and "--corpus needs --request" in result.output


def test_a_request_on_the_users_own_folder_is_grounded_in_it() -> None:
    from cli.demo import grounded_request
    from coordinator.request import parse_request

    loose = grounded_request("question-answer pairs about tidal energy and honeybees")
    assert parse_request(loose).spec.grounded and loose.endswith("grounded in the documents")
    said = "question-answer pairs about tides, grounded in the docs"
    assert grounded_request(said) == said  # already grounded: left as the requester wrote it
