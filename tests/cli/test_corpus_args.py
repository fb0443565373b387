"""`dataswarm demo --corpus` accepts a folder of any supported format and refuses one with none, before starting."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cli.demo import corpus_problem
from cli.main import app


def test_a_folder_without_documents_is_refused_naming_the_formats(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.md").write_text("# Hidden\n")
    result = CliRunner().invoke(
        app, ["demo", "--corpus", str(tmp_path), "--request", "10 pairs about kites"], env={"COLUMNS": "300"}
    )
    assert result.exit_code != 0
    assert "holds no HTML, Markdown (.md), plain text (.txt) or PDF files" in " ".join(result.output.split())


def test_markdown_text_or_pdf_alone_is_a_corpus(tmp_path: Path) -> None:
    for name in ("notes.md", "notes.txt", "paper.pdf", "page.htm"):
        folder = tmp_path / name.replace(".", "-")
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / name).write_bytes(b"x")
        assert corpus_problem(folder) is None, name
    assert "is not a folder" in (corpus_problem(tmp_path / "missing") or "")
