"""One place that turns expected failures into one clear sentence (tracebacks only with --debug)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

err = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")


class Settings:
    debug = False
    verbose = 0


def setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if verbose < 2:
        for noisy in ("libp2p", "multiaddr", "async_service", "httpx", "httpcore", "trafilatura"):
            logging.getLogger(noisy).setLevel(logging.ERROR)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def innermost(exc: Exception) -> Exception:
    """The error a trio nursery wrapped (ExceptionGroups of one), so the message names what went wrong
    ("no configured model can run here: …") instead of "Exceptions from Trio nursery (1 sub-exception)"."""
    while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: known errors become one sentence; anything else a sentence that points at --debug."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as caught:
            if Settings.debug:
                raise
            exc = innermost(caught)
            name = type(exc).__name__
            known = any(w in name for w in ("Error", "Refused", "NotFound", "Invalid", "Failed"))
            message = str(exc) or name
            fail(message if known else f"{name}: {message} (run with --debug for the traceback)")
            raise  # unreachable: fail() raises

    return wrapper


async def until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    """Run `main` until it returns or SIGINT/SIGTERM arrives; a signal ends it cleanly (exit status 0)."""
    import signal

    import trio

    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    err.print(f"{signal.Signals(signum).name}: shutting down")
                    nursery.cancel_scope.cancel()
                    return

        async def run() -> None:
            await main()
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        nursery.start_soon(run)
