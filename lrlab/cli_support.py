"""What every CLI command shares: bad input becomes one line on stderr and exit code 2."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from lrlab.errors import PluginError, UsageError

# the -p option of every command that loads plugins
PluginOpt = Annotated[list[str] | None, typer.Option(
    "-p", "--plugin", help="Load a plugin module, or block one with no:NAME (repeatable).")]


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` to stderr and return the Exit (code 2) to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(2)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UsageError/PluginError into one plain line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (UsageError, PluginError) as exc:
            raise fail(str(exc)) from None

    return wrapper
