"""What ``lrlab sweep`` shows while it runs and after: a plugin on the lifecycle hooks,
the way pytest's terminal reporter is one."""

from __future__ import annotations

import math

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from lrlab import hookimpl
from lrlab.results import best_configuration

COLOURS = {"ok": "green", "overfit": "dark_orange", "underfit": "blue",
           "diverged": "red", "error": "magenta"}


class TerminalReporter:
    """A live progress bar over the runs (advancing per epoch), one line per error."""

    __name__ = "terminal"

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None
        self.epochs: dict[str, int] = {}
        self.total_epochs: dict[str, int] = {}

    @hookimpl
    def lrlab_sweep_start(self, config, runs) -> None:
        self.epochs = {r.run_id: 0 for r in runs}
        if self.quiet or not runs:
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[current]}", style="dim"), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=True)
        self.total_epochs = {r.run_id: r.epochs for r in runs}
        self.task = self.progress.add_task(config.name, total=len(runs), current="")
        self.progress.start()

    @hookimpl
    def lrlab_run_start(self, run) -> None:
        if self.progress is not None:
            self.progress.update(self.task, current=run.run_id)

    @hookimpl
    def lrlab_epoch_end(self, run, epoch, metrics) -> None:
        if self.progress is None:
            return
        total = self.total_epochs.get(run.run_id, 1)
        step = (epoch - self.epochs.get(run.run_id, 0)) / total
        self.epochs[run.run_id] = epoch
        self.progress.update(self.task, advance=step * 0.999,
                             current=f"{run.run_id} epoch {epoch}/{total}")

    @hookimpl
    def lrlab_run_end(self, run, result) -> None:
        if self.progress is None:
            return
        done = self.epochs.get(run.run_id, 0) / self.total_epochs.get(run.run_id, 1) * 0.999
        self.progress.update(self.task, advance=1 - done)
        if result.summary.get("verdict") == "error" or result.error:
            last = (result.error or "").strip().splitlines()[-1:] or [""]
            self.progress.console.print(f"[magenta]ERROR[/] {run.run_id}: {last[0]}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def _num(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def print_results(console: Console, runs: pd.DataFrame, title: str | None = None) -> None:
    """The runs as a table: verdict, epochs, best epoch, accuracies, gap, GL, flags."""
    if runs.empty:
        console.print("no runs")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in ("run", "verdict", "epochs", "best", "train acc", "val acc", "gap",
                "GL %", "flags"):
        table.add_column(col, no_wrap=col != "flags",
                         justify="right" if col not in ("run", "verdict", "flags") else "left")
    for row in runs.itertuples():
        colour = COLOURS.get(row.verdict, "white")
        flags = str(row.flags or "")
        if len(flags) > 90:
            flags = flags[:87] + "..."
        table.add_row(row.run_id, f"[{colour}]{row.verdict}[/]", str(row.epochs_run),
                      str(row.best_epoch), _num(row.train_acc), _num(row.val_acc),
                      _num(row.gap_acc), _num(row.gl, 1), flags)
    console.print(table)
    best = best_configuration(runs)
    if best is not None:
        ids = ", ".join(best["run_id"])
        console.print(f"best by val acc: [bold]{ids}[/] val acc "
                      f"{best['tested_val_acc'].mean():.3f}, test acc "
                      f"{best['test_acc'].mean():.3f} (test split read for this configuration "
                      f"only)")
