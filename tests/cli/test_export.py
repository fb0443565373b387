"""`dataswarm export`: a delivered dataset directory as TRL chat / prompt-completion JSONL.

The dataset is compiled by the real compiler from real signed results, with its
own exports/ files; the command's output must equal them byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from coordinator.compile import ExportFormat
from tests.coordinator.test_compile_fixtures import compile_into, read_jsonl


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "press-qa"
    compile_into(out, 4, formats=(ExportFormat.CHAT, ExportFormat.PROMPT_COMPLETION))
    return out


def cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_both_formats_equal_the_compilers_own_exports(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    chat = cli("export", str(dataset), "--format", "chat")
    assert chat.exit_code == 0, chat.output
    assert "4 rows as chat written to" in chat.output
    written = tmp_path / "press-qa.chat.jsonl"
    assert written.read_bytes() == (dataset / "exports" / "chat.jsonl").read_bytes()
    first = read_jsonl(written)[0]
    row = read_jsonl(dataset / "data.jsonl")[0]
    assert first == {"messages": [{"role": "user", "content": row["question"]},
                                  {"role": "assistant", "content": row["answer"]}]}  # fmt: skip

    target = tmp_path / "sub" / "pc.jsonl"
    pc = cli("export", str(dataset), "--format", "prompt-completion", "--out", str(target))
    assert pc.exit_code == 0, pc.output
    assert target.read_bytes() == (dataset / "exports" / "prompt_completion.jsonl").read_bytes()


def test_columns_can_be_chosen(dataset: Path, tmp_path: Path) -> None:
    rows = read_jsonl(dataset / "data.jsonl")
    out = tmp_path / "swapped.jsonl"
    both = cli("export", str(dataset), "--format", "prompt_completion", "--out", str(out),
               "--prompt-field", "answer", "--completion-field", "source_url")  # fmt: skip
    assert both.exit_code == 0, both.output
    assert read_jsonl(out) == [{"prompt": r["answer"], "completion": r["source_url"]} for r in rows]

    one = cli("export", str(dataset), "--format", "chat", "--out", str(out), "--completion-field", "source_url")
    assert one.exit_code == 0, one.output
    assert [m["messages"][0]["content"] for m in read_jsonl(out)] == [r["question"] for r in rows]  # type: ignore[index]
    assert [m["messages"][1]["content"] for m in read_jsonl(out)] == [r["source_url"] for r in rows]  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--format", "chat", "--prompt-field", "nope"],
         "--prompt-field 'nope' is not a field of this dataset: use one of ['question', 'answer', 'source_url']"),
        (["--format", "chat", "--completion-field", "question"],
         "'question' would be both the prompt and the completion"),
        (["--format", "alpaca"], "--format 'alpaca' is not known: use chat or prompt-completion"),
    ],
)  # fmt: skip
def test_bad_choices_are_one_sentence(dataset: Path, tmp_path: Path, extra: list[str], needle: str) -> None:
    out = tmp_path / "x.jsonl"
    result = cli("export", str(dataset), "--out", str(out), *extra)
    assert result.exit_code == 1
    assert needle in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_not_a_dataset_a_damaged_row_and_writing_inside_are_refused(dataset: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = cli("export", str(empty), "--format", "chat")
    assert missing.exit_code == 1 and "has no manifest.json: pass a dataset directory" in missing.output

    inside = cli("export", str(dataset), "--format", "chat", "--out", str(dataset / "exports" / "mine.jsonl"))
    assert inside.exit_code == 1 and "inside the dataset directory" in inside.output
    assert not (dataset / "exports" / "mine.jsonl").exists()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_bytes((dataset / "manifest.json").read_bytes())
    rows = read_jsonl(dataset / "data.jsonl")
    del rows[1]["answer"]
    (damaged / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = cli("export", str(damaged), "--format", "chat", "--out", str(tmp_path / "d.jsonl"))
    assert result.exit_code == 1 and "data.jsonl row 1: answer: missing" in result.output
