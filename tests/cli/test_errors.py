"""The CLI's one-sentence errors name the failure a trio nursery wrapped, not the group around it."""

from __future__ import annotations

import pytest
import typer

from cli.errors import friendly, innermost


class NoUsableModel(Exception):
    pass


def test_a_nursery_group_of_one_is_unwrapped_to_its_error() -> None:
    inner = NoUsableModel("no configured model can run here: 0.2 tok/s is below the 5 tok/s minimum")
    nested = ExceptionGroup("Exceptions from Trio nursery", [ExceptionGroup("inner nursery", [inner])])
    assert innermost(nested) is inner
    two = ExceptionGroup("two", [ValueError("a"), KeyError("b")])
    assert innermost(two) is two  # several failures: the group is the honest answer


def test_a_command_that_fails_inside_a_nursery_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    @friendly
    def command() -> None:
        raise ExceptionGroup("Exceptions from Trio nursery", [NoUsableModel("0.2 tok/s is below the minimum")])

    with pytest.raises(typer.Exit):
        command()
    out = capsys.readouterr().err
    assert "NoUsableModel: 0.2 tok/s is below the minimum" in out and "Trio nursery" not in out
