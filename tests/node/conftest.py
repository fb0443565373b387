"""Shared fixtures for the LLM engine and LLM executor tests.

One real `LlamaBackend` on the bundled SmolLM2-135M model is loaded once per
session (0.2 s, ~200 MiB) and shared; each test gets a fresh `Engine` around
it, because trio objects (the slot limiter) belong to one `trio.run` and
pytest-trio gives every test its own.

The backend runs with one thread. This box is shared with other test runs:
with two OpenMP threads on two busy cores, generation swung between 7 and
110 tok/s (threads spin-wait on each other), while one thread stayed at about
60 tok/s. Determinism across 1 and 2 threads is tested separately.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.llm.backend import LlamaBackend
from node.llm.engine import Engine, LoadedModel
from node.llm.hardware import ModelPlan
from node.llm.models import DigestCache, ResolvedModel, embedded_model_path, resolve_model
from protocol.tasks import SourceChunk

TEST_N_CTX = 4096
TEST_THREADS = 1

# Ten real paragraphs from the Python 3.11 tutorial (Debian's python3.11-doc), copied here so the
# tests do not depend on that package.
PYDOC_PARAGRAPHS: tuple[str, ...] = (
    # tutorial/controlflow.html
    (
        "A match statement takes an expression and compares its value to successive patterns given as "
        "one or more case blocks. This is superficially similar to a switch statement in C, Java or "
        "JavaScript (and many other languages), but it’s more similar to pattern matching in languages "
        "like Rust or Haskell. Only the first pattern that matches gets executed and it can also extract "
        "components (sequence elements or object attributes) from the value into variables."
    ),
    # tutorial/datastructures.html
    (
        "Remove the item at the given position in the list, and return it. If no index is specified, "
        "a.pop() removes and returns the last item in the list. (The square brackets around the i in the "
        "method signature denote that the parameter is optional, not that you should type square "
        "brackets at that position. You will see this notation frequently in the Python Library "
        "Reference.)"
    ),
    # tutorial/errors.html
    (
        "The parser repeats the offending line and displays a little ‘arrow’ pointing at the earliest "
        "point in the line where the error was detected. The error is caused by (or at least detected "
        "at) the token preceding the arrow: in the example, the error is detected at the function "
        "print(), since a colon (':') is missing before it. File name and line number are printed so you "
        "know where to look in case the input came from a script."
    ),
    # tutorial/classes.html
    (
        "Compared with other programming languages, Python’s class mechanism adds classes with a minimum "
        "of new syntax and semantics. It is a mixture of the class mechanisms found in C++ and Modula-3. "
        "Python classes provide all the standard features of Object Oriented Programming: the class "
        "inheritance mechanism allows multiple base classes, a derived class can override any methods of "
        "its base class or classes, and a method can call the method of a base class with the same name. "
        "Objects can contain arbitrary amounts and kinds of data. As is true for modules, classes "
        "partake of the dynamic nature of Python: they are created at runtime, and can be modified "
        "further after creation."
    ),
    # tutorial/modules.html
    (
        "If you quit from the Python interpreter and enter it again, the definitions you have made "
        "(functions and variables) are lost. Therefore, if you want to write a somewhat longer program, "
        "you are better off using a text editor to prepare the input for the interpreter and running it "
        "with that file as input instead. This is known as creating a script. As your program gets "
        "longer, you may want to split it into several files for easier maintenance. You may also want "
        "to use a handy function that you’ve written in several programs without copying its definition "
        "into each program."
    ),
    # tutorial/inputoutput.html
    (
        "The str() function is meant to return representations of values which are fairly "
        "human-readable, while repr() is meant to generate representations which can be read by the "
        "interpreter (or will force a SyntaxError if there is no equivalent syntax). For objects which "
        "don’t have a particular representation for human consumption, str() will return the same value "
        "as repr(). Many values, such as numbers or structures like lists and dictionaries, have the "
        "same representation using either function. Strings, in particular, have two distinct "
        "representations."
    ),
    # tutorial/venv.html
    (
        "Different applications can then use different virtual environments. To resolve the earlier "
        "example of conflicting requirements, application A can have its own virtual environment with "
        "version 1.0 installed while application B has another virtual environment with version 2.0. If "
        "application B requires a library be upgraded to version 3.0, this will not affect application "
        "A’s environment."
    ),
    # tutorial/floatingpoint.html
    (
        "Floating-point numbers are represented in computer hardware as base 2 (binary) fractions. For "
        "example, the decimal fraction 0.125 has value 1/10 + 2/100 + 5/1000, and in the same way the "
        "binary fraction 0.001 has value 0/2 + 0/4 + 1/8. These two fractions have identical values, the "
        "only real difference being that the first is written in base 10 fractional notation, and the "
        "second in base 2."
    ),
    # tutorial/stdlib.html
    (
        "The doctest module provides a tool for scanning a module and validating tests embedded in a "
        "program’s docstrings. Test construction is as simple as cutting-and-pasting a typical call "
        "along with its results into the docstring. This improves the documentation by providing the "
        "user with an example and it allows the doctest module to make sure the code remains true to the "
        "documentation:"
    ),
    # tutorial/interpreter.html
    (
        "The interpreter’s line-editing features include interactive editing, history substitution and "
        "code completion on systems that support the GNU Readline library. Perhaps the quickest check to "
        "see whether command line editing is supported is typing Control-P to the first Python prompt "
        "you get. If it beeps, you have command line editing; see Appendix Interactive Input Editing and "
        "History Substitution for an introduction to the keys. If nothing appears to happen, or if ^P is "
        "echoed, command line editing isn’t available; you’ll only be able to use backspace to remove "
        "characters from the current line."
    ),
)


def make_chunk(text: str, url: str = "https://docs.python.org/3/tutorial/x.html") -> SourceChunk:
    """A chunk that is a whole document (offsets 0..len)."""
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return SourceChunk(url=url, content_sha256=digest, start=0, end=len(text), text=text)


@pytest.fixture(scope="session")
def model_path() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="session")
def resolved_model(tmp_path_factory: pytest.TempPathFactory) -> ResolvedModel:
    return resolve_model("smollm2-135m", digests=DigestCache(tmp_path_factory.mktemp("digests")))


@pytest.fixture(scope="session")
def backend(resolved_model: ResolvedModel) -> Iterator[LlamaBackend]:
    b = LlamaBackend(resolved_model.path, n_ctx=TEST_N_CTX, n_threads=TEST_THREADS)
    yield b
    b.close()


@pytest.fixture(scope="session")
def test_plan(resolved_model: ResolvedModel) -> ModelPlan:
    return ModelPlan(
        model=resolved_model,
        n_ctx=TEST_N_CTX,
        n_threads=TEST_THREADS,
        n_gpu_layers=0,
        slots=1,
        n_batch=512,
        est_bytes=0,
    )


@pytest.fixture
def engine(test_plan: ModelPlan, backend: LlamaBackend) -> Engine:
    """A one-slot engine over the shared backend (tok_s is not measured here)."""
    return Engine([LoadedModel(plan=test_plan, backends=[backend], tok_s=50.0)])
