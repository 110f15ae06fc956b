"""The ``lrlab`` command line. Each command parses its arguments and calls the library."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lrlab.cli_support import PluginOpt, handle_errors, with_setting_options
from lrlab.errors import UsageError
from lrlab.settings import SWEEP

app = typer.Typer(
    name="lrlab",
    help="A learning-rate and overfitting lab for PyTorch: sweep learning rates, epochs and "
         "augmentations, and see which runs learn, overfit, underfit or diverge.",
    no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say [default: ...] and [tool.lrlab] literally
    context_settings={"help_option_names": ["-h", "--help"]})



class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the sweep is, so it stops as on Ctrl-C (exit code 143)."""

    code = 143


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM stops it as Ctrl-C does (what finished is kept)."""
    def handler(signum: int, frame: Any) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _console() -> Console:
    """Rich console; as wide as the terminal, or 160 columns when piped to a file."""
    import shutil

    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=False, width=max(width, 100))


@app.command()
@handle_errors
@with_setting_options(SWEEP.values())
def sweep(
    sweep_file: Annotated[Path | None, typer.Argument(
        help="A TOML sweep file (see sweeps/). Without one, the flags and "
             "[tool.lrlab] defaults define the grid.", show_default=False)] = None,
    plugin: PluginOpt = None,
    keyword: Annotated[str | None, typer.Option(
        "-k", help="Select runs whose id matches, e.g. 'lr0.1 and not noise'.",
        show_default=False)] = None,
    collect_only: Annotated[bool, typer.Option("--collect-only", help="List the runs; train nothing (components are checked by name; their parameter values when the runs are built).")] = False,
    exitfirst: Annotated[bool, typer.Option("-x", "--exitfirst", help="Stop after the first run that errors.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when a run is overfit, unstable, diverged or error.")] = False,
    junit_xml: Annotated[Path | None, typer.Option(
        "--junit-xml", help="Write each run as a JUnit test case.", show_default=False)] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Ignore stored results: start over.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only the last line.")] = False,
    **settings: Any,
) -> None:
    """Run a grid of trainings and judge each run: ok, overfit, underfit, unstable, diverged,
    error. Every setting below may also be given in the sweep file or [tool.lrlab]."""
    from lrlab.storage import StorageError
    from lrlab.sweep import SweepInterrupted, run_sweep
    from lrlab.terminal import TerminalReporter, print_results

    console = _console()
    reporter = TerminalReporter(console, quiet=quiet)
    command = shlex.join(["lrlab", *sys.argv[1:]])
    try:
        with terminate_as_interrupt():
            result = run_sweep(sweep_file, plugins=[reporter], extra_plugins=plugin or [],
                               keyword=keyword, fresh=fresh, exitfirst=exitfirst,
                               collect_only=collect_only, junit_xml=junit_xml,
                               command_line=command, **settings)
    except SweepInterrupted as stop:
        reporter.close()
        stored = len(stop.result.runs)
        where = stop.result.folder
        typer.secho(f"interrupted: {stored} finished run(s) stored in {where}/, "
                    f"{stop.in_flight} not finished (runs in flight resume from their last "
                    f"checkpoint); resume with: {command}", err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(stop.code) from None
    except KeyboardInterrupt:  # before the sweep started, or while it was being finished
        reporter.close()
        typer.secho(f"interrupted before anything more was stored; resume with: {command}",
                    err=True, fg=typer.colors.YELLOW)
        raise typer.Exit(130) from None
    except StorageError as exc:
        reporter.close()
        typer.secho(f"error: {exc}; the runs stored before are intact (resume with: "
                    f"{command})", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    finally:
        reporter.close()
    if collect_only:
        for run_id in result.collected:
            console.print(run_id, markup=False)
        n = len(result.collected)
        console.print(f"{n} run{'s' if n != 1 else ''} collected")
        return
    if not quiet:
        print_results(console, result.runs, configs=result.configs)
        for note in result.notes:
            console.print(f"note: {note}", markup=False)
        if result.skipped:
            console.print(f"resumed: {len(result.skipped)} finished run(s) skipped "
                          f"(--fresh starts over)")
        console.print(f"results: {result.folder}/ (runs.parquet, history.parquet, "
                      f"manifest.json) report: {result.folder / 'index.html'}")
        if result.weights:
            console.print(f"weights: {result.folder / 'weights'}/ ({len(result.weights)} "
                          f"run(s), --save {result.config.save}); load with "
                          f"lrlab.load_model('{result.folder}')", markup=False)
    style = "bold red" if result.failed else "bold green"
    console.print(f"[{style}]{result.summary_line()}[/]")
    if strict and result.failed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def show(folder: Annotated[Path, typer.Argument(help="A sweep's results folder.")],
         sort: Annotated[str | None, typer.Option(
             help="Sort by this column (e.g. val_acc).", show_default=False)] = None) -> None:
    """Print a stored sweep's results table."""
    from lrlab.results import load_results
    from lrlab.terminal import print_results
    from lrlab.verdicts import summary_line

    runs, _, manifest = load_results(folder)
    if sort is not None:
        if sort not in runs.columns:
            from lrlab.registry import closest

            near = closest(sort, list(runs.columns))
            raise UsageError(f"no column '{sort}'" + (f"; did you mean '{near}'?" if near else ""))
        runs = runs.sort_values(sort, ascending=not sort.endswith("acc"))
    console = _console()
    if sort is not None and sort.startswith("test_"):
        console.print(f"note: sorted by {sort}: a configuration picked by its test score "
                      f"makes that score optimistic (the test split then chose it); "
                      f"choose on val_acc and read the test number of that one only",
                      markup=False)
    print_results(console, runs, title=manifest.get("name", str(folder)))
    # the runs' own training time (the manifest's wall time is the last call's: after a
    # resume it leaves out the runs trained before)
    trained = float(runs["wall_s"].sum()) if "wall_s" in runs and not runs.empty else None
    console.print(summary_line(list(runs["verdict"]) if not runs.empty else [], trained))


@app.command()
@handle_errors
def report(folder: Annotated[Path, typer.Argument(help="A sweep's results folder.")],
           plugin: PluginOpt = None) -> None:
    """(Re)build a stored sweep's HTML report, index.html, from its tables, with the
    plugins the sweep loaded (and -p ones)."""
    from lrlab.report import write_report

    typer.echo(f"report: {write_report(folder, extra_plugins=plugin or ())}")


@app.command("list")
@handle_errors
def list_components(kind: Annotated[str | None, typer.Argument(
        help="dataset, model, loss, optimizer, schedule, augmentation, stopper or executor.",
        show_default=False)] = None, plugin: PluginOpt = None) -> None:
    """List the components of each kind, their parameters and what they do."""
    from rich.table import Table

    from lrlab.plugins import load_plugins
    from lrlab.registry import KINDS, PLURAL, unknown_name_message

    kinds = list(KINDS)
    if kind is not None:
        singular = {PLURAL[k]: k for k in KINDS}.get(kind, kind)
        if singular not in KINDS:
            raise UsageError(unknown_name_message("kind", kind, list(KINDS)))
        kinds = [singular]
    registry = load_plugins(plugin or [], local_dirs=[Path.cwd()]).registry
    console = _console()
    for k in kinds:
        table = Table(title=f"{PLURAL[k]}", title_justify="left", show_lines=False)
        table.add_column("component", style="bold cyan", no_wrap=True)
        table.add_column("what it does")
        table.add_column("plugin", style="dim", no_wrap=True)
        for comp in registry.components(k):
            table.add_row(comp.signature, comp.doc, comp.plugin)
        console.print(table)


@app.command()
@handle_errors
def plugins(plugin: PluginOpt = None) -> None:
    """Show each loaded plugin: version, where it came from, what it registered or hooks."""
    from rich.table import Table

    from lrlab.plugins import load_plugins

    host = load_plugins(plugin or [], local_dirs=[Path.cwd()])
    table = Table(title="plugins", title_justify="left", show_lines=True)
    for col in ("plugin", "version", "source", "registers / hooks"):
        table.add_column(col, no_wrap=col != "registers / hooks")
    for info in host.info.values():
        what = info.what
        source = info.source + (f"\n{info.where}" if info.where and info.source != "built-in" else "")
        table.add_row(info.name, info.version or "-", source, what)
    _console().print(table)


def _register_lr_find() -> None:
    try:
        from lrlab.lrfind import lr_find_command
    except ImportError:  # pragma: no cover - only while the LR finder is being built
        return
    app.command("lr-find")(lr_find_command)


_register_lr_find()


def _register_compare() -> None:
    from lrlab.compare_command import compare_command

    app.command("compare")(compare_command)


_register_compare()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["app", "main"]
