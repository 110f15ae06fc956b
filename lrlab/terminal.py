"""What ``lrlab sweep`` shows while it runs and after: a plugin on the lifecycle hooks,
the way pytest's terminal reporter is one."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
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
from lrlab.verdicts import VERDICTS

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


def print_results(console: Console, runs: pd.DataFrame, title: str | None = None,
                  configs: pd.DataFrame | None = None) -> None:
    """The runs as a table (verdict and cause, epochs, the kept epoch, accuracies, gap,
    GL, flags); with several seeds, one row per configuration after it; then the best
    configuration, chosen on validation, with its 95% interval, the configurations that
    cannot be told from it, the one test number lrlab shows, and what each axis does."""
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
        table.add_row(escape(str(row.run_id)), verdict_text(row.verdict, getattr(row, "cause", "")),
                      str(row.epochs_run), str(_col(row, "tested_epoch", "epochs_run")),
                      _num(_col(row, "tested_train_acc", "train_acc")),
                      _num(_col(row, "tested_val_acc", "val_acc")),
                      _num(_col(row, "tested_gap_acc", "gap_acc")),
                      _num(_col(row, "tested_gl", "gl"), 1), escape(flags))
    console.print(table)
    from lrlab.configs import config_table, no_best_reason

    if configs is None or "vs_best" not in configs:  # an older table: no intervals in it
        configs = config_table(runs)
    if not configs.empty and configs["n"].max() > 1:
        print_configs(console, configs)
    best = best_configuration(runs)
    if best is None:
        console.print(f"[bold]best configuration: none[/] - {no_best_reason(configs)}")
        return
    print_best(console, runs, configs, best)
    print_effects(console, runs)


def print_best(console: Console, runs: pd.DataFrame, configs: pd.DataFrame,
               best: pd.DataFrame) -> None:
    """``best by val acc ...: ids val acc 0.967 [0.961, 0.972], 5 seeds``, then which
    configurations are tied with it (paired by seed), or why lrlab cannot say."""
    from lrlab.configs import (
        config_id,
        mean_text,
        repeats_text,
        scope,
        tied_with_best,
        together_text,
    )

    ids = ", ".join(escape(str(r)) for r in best["run_id"])
    row = configs.set_index("config_id").loc[config_id(best["run_id"].iloc[0])]
    n = int(row["n"])
    seeds = repeats_text(best)
    console.print(f"best by val acc (chosen among the configurations that learned): "
                  f"[bold]{ids}[/] val acc {mean_text(row, 'val_acc')}, {seeds}; "
                  f"test acc {mean_text(row, 'test_acc')}")
    console.print("  every run was scored on the test split at its end; this is the only "
                  "test number shown, read after choosing on validation", style="dim")
    over = scope(runs)
    if n < 2:
        console.print("  one seed: no interval, and no telling whether the best is really "
                      "better than the runner-up; --seeds 3 gives intervals and paired "
                      "comparisons", style="dim", markup=False)
        return
    tied = tied_with_best(configs)
    together = together_text(row.get("vs_best_level"))
    if tied.empty:
        console.print(f"  no other configuration is tied with the best: each that learned is "
                      f"behind it (paired by seed, {together}, over {over})", style="dim",
                      markup=False)
        return
    names = "; ".join(f"{cid} ({_points_text(r)})" for cid, r in
                      zip(tied["config_id"], tied.to_dict("records"), strict=True))
    console.print(f"  tied with the best at this number of seeds (the interval of the val acc "
                  f"difference, paired by seed, holds 0; {together}): {names}", markup=False)


def _points_text(row: dict, unit: str = " points") -> str:
    """``−1.6 points [−6.3, +1.9]``: the val acc difference from the best."""
    from lrlab.stats import points_text

    return points_text(row["vs_best_mean"], row["vs_best_lo"], row["vs_best_hi"], unit)


def print_effects(console: Console, runs: pd.DataFrame) -> None:
    """What each axis does: each value against its baseline, paired on the other axes and
    the seed (:func:`lrlab.configs.axis_effects`), in words."""
    from lrlab.configs import axis_effects, effect_lines, scope, together_text

    effects = axis_effects(runs)
    lines = effect_lines(effects)
    if not lines:
        return
    console.print(f"what each axis does (each value against its baseline, paired on the "
                  f"other axes and the seed, runs that learned; "
                  f"{together_text(effects['level'].max())} per metric, over "
                  f"{scope(runs)} and the grid):", markup=False)
    for line in lines:
        console.print(f"  {line}", markup=False)


def print_configs(console: Console, configs: pd.DataFrame) -> None:
    """One row per configuration: its verdict (the seeds' majority), every seed's verdict
    counted, the mean over seeds of the kept weights' val acc and gap with its 95%
    interval, the mean GL, and its val acc against the best's, paired by seed."""
    from lrlab.configs import mean_text

    table = Table(title="per configuration (its runs aggregated: mean [95% interval]; vs best: "
                        "val acc minus the best's, in points, paired by seed)",
                  title_justify="left", header_style="bold")
    for col in ("configuration", "verdict", "runs", "val acc", "gap", "GL %", "vs best"):
        table.add_column(col, no_wrap=col in ("configuration", "vs best"),
                         justify="left" if col in ("configuration", "verdict", "runs")
                         or col.startswith("vs") else "right")
    for row in configs.to_dict("records"):
        vs = str(row.get("vs_best") or "")
        if vs in ("tied", "behind", "ahead"):
            vs = f"{vs} {_points_text(row, unit='')}"
        counts = ", ".join(f"{int(row[f'n_{v}'])} {v}" for v in VERDICTS if row.get(f"n_{v}"))
        table.add_row(escape(str(row["config_id"])), verdict_text(row["verdict"], row.get("cause")),
                      counts, mean_text(row, "val_acc"), mean_text(row, "gap_acc"),
                      _num(row.get("gl_mean"), 1), escape(vs))
    console.print(table)
