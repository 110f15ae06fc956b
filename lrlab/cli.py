"""The ``lrlab`` command line. Each command parses its arguments and calls the library."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lrlab.cli_support import PluginOpt, handle_errors
from lrlab.errors import UsageError

app = typer.Typer(
    name="lrlab",
    help="A learning-rate and overfitting lab for PyTorch: sweep learning rates, epochs and "
         "augmentations, and see which runs learn, overfit, underfit or diverge.",
    no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts say [default: ...] and [tool.lrlab] literally
    context_settings={"help_option_names": ["-h", "--help"]})



def _console() -> Console:
    """Rich console; as wide as the terminal, or 160 columns when piped to a file."""
    import shutil

    width = shutil.get_terminal_size((160, 24)).columns if sys.stdout.isatty() else 160
    return Console(highlight=False, soft_wrap=False, width=max(width, 100))


def _axis(help_text: str) -> object:
    return typer.Option(help=help_text, show_default=False)


@app.command()
@handle_errors
def sweep(
    sweep_file: Annotated[Path | None, typer.Argument(
        help="A TOML sweep file (see sweeps/). Without one, the flags and "
             "[tool.lrlab] defaults define the grid.", show_default=False)] = None,
    lr: Annotated[str | None, _axis("Learning rates, e.g. 1e-3,1e-2 or auto[:N] "
                                       "(range test first).")] = None,
    epochs: Annotated[str | None, _axis("Epoch counts, e.g. 10,30.")] = None,
    augment: Annotated[str | None, _axis("Augmentations, e.g. none,flip+crop.")] = None,
    model: Annotated[str | None, _axis("Models, e.g. mlp(width=64),cnn.")] = None,
    optimizer: Annotated[str | None, _axis("Optimizers, e.g. sgd(momentum=0.9),adam.")] = None,
    loss: Annotated[str | None, _axis("Losses, e.g. cross_entropy,mse.")] = None,
    schedule: Annotated[str | None, _axis("LR schedules, e.g. constant,onecycle.")] = None,
    stopper: Annotated[str | None, _axis("Early stopping, e.g. none,patience(patience=3).")] = None,
    batch_size: Annotated[str | None, _axis("Batch sizes, e.g. 32,128.")] = None,
    dataset: Annotated[str | None, _axis("Datasets, e.g. digits,mnist.")] = None,
    seeds: Annotated[str | None, _axis("Seeds per configuration (0..N-1).")] = None,
    name: Annotated[str | None, _axis("Sweep name: results go to OUT/NAME/.")] = None,
    out: Annotated[str | None, _axis("Folder of all results [default: reports].")] = None,
    executor: Annotated[str | None, _axis("local, vectorized, auto, or a plugin's.")] = None,
    device: Annotated[str | None, _axis("auto, cpu or cuda [default: auto].")] = None,
    split: Annotated[str | None, _axis("train,val,test fractions [default: 0.6,0.2,0.2].")] = None,
    data_root: Annotated[str | None, _axis("Folder of torchvision datasets [default: data].")] = None,
    download: Annotated[bool, typer.Option("--download", help="Let torchvision download missing datasets.")] = False,
    threshold: Annotated[list[str] | None, typer.Option(
        help="Verdict threshold KEY=VALUE, e.g. overfit_gl=10 (repeatable).",
        show_default=False)] = None,
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
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the models.")] = False,
    amp: Annotated[bool, typer.Option("--amp", help="Mixed precision (bfloat16) on CUDA.")] = False,
    threads: Annotated[str | None, _axis("CPU threads per run [default: 0 = one for small "
                                            "models, else torch's default].")] = None,
    eval_batch_size: Annotated[str | None, _axis("Samples per forward pass of the clean "
                                                    "evaluations [default: 4096].")] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only the last line.")] = False,
) -> None:
    """Run a grid of trainings and judge each run: ok, overfit, underfit, unstable, diverged,
    error."""
    from lrlab.config import build_config
    from lrlab.sweep import execute, prepare
    from lrlab.terminal import TerminalReporter, print_results

    overrides = {"lr": lr, "epochs": epochs, "augment": augment, "model": model,
                 "optimizer": optimizer, "loss": loss, "schedule": schedule,
                 "stopper": stopper, "batch_size": batch_size, "dataset": dataset,
                 "seeds": seeds, "name": name, "out": out, "executor": executor,
                 "device": device, "split": split, "data_root": data_root,
                 "download": download or None, "compile": compile or None,
                 "amp": amp or None, "threads": threads, "eval_batch_size": eval_batch_size}
    if threshold:
        overrides["thresholds"] = _thresholds(threshold)
    cwd = Path.cwd()
    config = build_config(sweep_file, overrides, cwd=cwd,
                          command_line=" ".join(["lrlab", *sys.argv[1:]]))
    local = [sweep_file.parent] if sweep_file is not None else [cwd]
    console = _console()
    reporter = TerminalReporter(console, quiet=quiet)
    prepared = prepare(config, extra_plugins=plugin or [], plugins=[reporter],
                       keyword=keyword, local_dirs=local, load_data=not collect_only)
    if collect_only:
        for run in prepared.runs:
            console.print(run.run_id, markup=False)
        n = len(prepared.runs)
        console.print(f"{n} run{'s' if n != 1 else ''} collected")
        return
    if junit_xml is not None and junit_xml.is_dir():
        raise UsageError(f"--junit-xml {junit_xml} is a folder")
    if junit_xml is not None and not junit_xml.resolve().parent.is_dir():
        raise UsageError(f"--junit-xml: folder {junit_xml.resolve().parent} does not exist")
    try:
        result = execute(prepared, fresh=fresh, exitfirst=exitfirst)
    finally:
        reporter.close()
    if not quiet:
        print_results(console, result.runs, configs=result.configs)
        for note in result.notes:
            console.print(f"note: {note}", markup=False)
        if result.skipped:
            console.print(f"resumed: {len(result.skipped)} finished run(s) skipped "
                          f"(--fresh starts over)")
        console.print(f"results: {result.folder}/ (runs.parquet, history.parquet, "
                      f"manifest.json) report: {result.folder / 'index.html'}")
    if junit_xml is not None:
        from lrlab.junit import write_junit

        write_junit(result, junit_xml)
    style = "bold red" if result.failed else "bold green"
    console.print(f"[{style}]{result.summary_line()}[/]")
    if strict and result.failed:
        raise typer.Exit(1)


def _thresholds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--threshold {item!r} is not KEY=NUMBER") from None
        if not eq or not key.strip():
            raise UsageError(f"--threshold {item!r} is not KEY=NUMBER")
    return out


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
    """(Re)build a stored sweep's HTML report, index.html, from its tables."""
    from lrlab.plugins import load_plugins
    from lrlab.report import write_report
    from lrlab.results import load_results

    _, _, manifest = load_results(folder)  # one plain error when there are no results
    # the plugins the sweep loaded by name or from a local file, so their sections and
    # components (schedules to replay) are there again
    loaded = manifest.get("plugins") or []
    modules = [p["name"] for p in loaded if p.get("source") == "-p"]
    local = [Path(p["where"]).parent for p in loaded
             if p.get("source") == "local file" and Path(p.get("where", "")).is_file()]
    path = write_report(folder, plugins=load_plugins([*modules, *(plugin or [])],
                                                     local_dirs=local))
    typer.echo(f"report: {path}")


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


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

__all__ = ["app", "main"]
