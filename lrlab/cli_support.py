"""What every CLI command shares: bad input becomes one line on stderr and exit code 2,
and the options of declared settings (:mod:`lrlab.settings`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any

import typer

from lrlab.errors import PluginError, UsageError
from lrlab.settings import Setting

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


def option_of(setting: Setting) -> inspect.Parameter:
    """The Typer option of a declared setting; ``None`` (its value when not given) leaves
    the setting to the sweep file, ``[tool.lrlab]`` or its default."""
    if setting.switch:
        negative = "--no-" + setting.option_name.removeprefix("--")
        kind: Any = bool | None
        info = typer.Option(f"{setting.option_name}/{negative}", help=setting.help_text(),
                            show_default=False)
    else:
        kind = list[str] | None if setting.repeat else str | None
        info = typer.Option(setting.option_name, help=setting.help_text(),
                            show_default=False, metavar=setting.metavar)
    return inspect.Parameter(setting.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind, info])


def with_setting_options(settings: Iterable[Setting]) -> Callable[[Callable], Callable]:
    """Give a command one option per setting, after its own parameters; the command
    receives them as keyword arguments (``None`` for each one not given)."""
    options = [option_of(s) for s in settings if s.option]

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind != p.VAR_KEYWORD]
        taken = {p.name for p in own}
        fn.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*own, *(o for o in options if o.name not in taken)])
        return fn

    return decorate
