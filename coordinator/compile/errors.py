"""The one error type the compiler raises.

Owns: `CompileError`, raised when the inputs cannot become a dataset that would
pass `verify_directory` (an envelope that does not verify, a row that misses the
spec, an evidence quote absent from its source). The message names the row and
the task, so the pipeline can drop or re-run exactly that one.
"""

from __future__ import annotations


class CompileError(ValueError):
    """The accepted rows cannot be compiled as given; the message says which row and why."""
