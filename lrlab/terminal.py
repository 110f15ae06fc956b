"""What ``lrlab sweep`` shows while it runs and after: a plugin on the lifecycle hooks,
the way pytest's terminal reporter is one."""

from __future__ import annotations

import math
from typing import Any

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

from lrlab.markers import hookimpl
from lrlab.results import best_configuration

COLOURS = {"ok": "green", "overfit": "dark_orange", "underfit": "blue",
           "unstable": "orange_red1", "diverged": "red", "error": "magenta"}


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


def _col(row: Any, name: str, fallback: str) -> Any:
    value = getattr(row, name, None)
    return getattr(row, fallback) if value is None else value


def verdict_text(verdict: str, cause: Any) -> str:
    """``underfit (stuck)``: the verdict and, when known, its cause."""
    cause = str(cause or "").replace("_", " ")
    colour = COLOURS.get(verdict, "white")
    return f"[{colour}]{verdict}[/]" + (f" ({cause})" if cause and cause != "nan" else "")


def _spread(mean: float, std: float, digits: int = 3) -> str:
    text = _num(mean, digits)
    return text if std is None or math.isnan(std) else f"{text} ± {_num(std, digits)}"


def print_results(console: Console, runs: pd.DataFrame, title: str | None = None,
                  configs: pd.DataFrame | None = None) -> None:
    """The runs as a table (verdict and cause, epochs, the kept epoch, accuracies, gap,
    GL, flags); with several seeds, one row per configuration after it; then the best
    configuration, chosen on validation, and the one test number lrlab shows."""
    if runs.empty:
        console.print("no runs")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in ("run", "verdict", "epochs", "kept", "train acc", "val acc", "gap",
                "GL %", "flags"):
        table.add_column(col, no_wrap=col != "flags",
                         justify="right" if col not in ("run", "verdict", "flags") else "left")
    for row in runs.itertuples():
        flags = str(row.flags or "")
        if len(flags) > 90:
            flags = flags[:87] + "..."
        table.add_row(row.run_id, verdict_text(row.verdict, getattr(row, "cause", "")),
                      str(row.epochs_run), str(_col(row, "tested_epoch", "epochs_run")),
                      _num(_col(row, "tested_train_acc", "train_acc")),
                      _num(_col(row, "tested_val_acc", "val_acc")),
                      _num(_col(row, "tested_gap_acc", "gap_acc")),
                      _num(_col(row, "tested_gl", "gl"), 1), flags)
    console.print(table)
    from lrlab.configs import config_table, no_best_reason

    configs = config_table(runs) if configs is None else configs
    if not configs.empty and configs["n"].max() > 1:
        print_configs(console, configs)
    best = best_configuration(runs)
    if best is None:
        console.print(f"[bold]best configuration: none[/] - {no_best_reason(configs)}")
        return
    ids = ", ".join(best["run_id"])
    n = len(best)
    val = _spread(best["tested_val_acc"].mean(), best["tested_val_acc"].std() if n > 1
                  else math.nan)
    test = _spread(best["test_acc"].mean(), best["test_acc"].std() if n > 1 else math.nan)
    console.print(f"best by val acc (chosen among the configurations that learned): "
                  f"[bold]{ids}[/] val acc {val}, test acc {test}")
    console.print("  every run was scored on the test split at its end; this is the only "
                  "test number shown, read after choosing on validation", style="dim")


def print_configs(console: Console, configs: pd.DataFrame) -> None:
    """One row per configuration: its verdict (the seeds' majority), every seed's verdict
    counted, and mean ± standard deviation over seeds of the kept weights' numbers."""
    from lrlab.configs import verdict_counts

    table = Table(title="per configuration (seeds aggregated)", title_justify="left",
                  header_style="bold")
    for col in ("configuration", "verdict", "seeds", "val acc", "gap", "GL %"):
        table.add_column(col, no_wrap=True,
                         justify="left" if col in ("configuration", "verdict", "seeds")
                         else "right")
    for row in configs.to_dict("records"):
        table.add_row(row["config_id"], verdict_text(row["verdict"], row.get("cause")),
                      verdict_counts(row), _spread(row["val_acc_mean"], row["val_acc_std"]),
                      _spread(row["gap_acc_mean"], row["gap_acc_std"]),
                      _spread(row["gl_mean"], row["gl_std"], 1))
    console.print(table)
