"""lrlab in a Jupyter notebook: a sweep as HTML, a stored sweep shown, a live progress bar.

    >>> import lrlab
    >>> from lrlab.notebook import NotebookProgress
    >>> result = lrlab.run_sweep(lr=[0.01, 0.1], plugins=[NotebookProgress()])  # doctest: +SKIP
    >>> result                        # the summary, the flagged runs, the LR figure
    >>> lrlab.show("reports/digits")  # the same for a stored sweep

:func:`sweep_html` is what a :class:`lrlab.SweepResult` and :func:`show` render as
(``_repr_html_``): one self-contained block of HTML (every value escaped, the figure an
inline PNG) with the summary line, the best configuration, the flagged runs with their
flags, and the learning-rate sensitivity figure of the report.

:class:`NotebookProgress` is a plugin on the lifecycle hooks that draws the sweep's
progress as one HTML output it updates in place (``display(..., display_id=True)``), so it
needs nothing beyond IPython, which every notebook kernel has; outside a notebook it
prints a line per finished run. Nothing here imports IPython or matplotlib until
it is used.
"""

from __future__ import annotations

import html
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrlab.markers import hookimpl
from lrlab.verdicts import VERDICTS, summary_line

__all__ = ["NotebookProgress", "Shown", "show", "sweep_html"]

MAX_FLAGGED = 50  # rows of the flagged table (the rest are counted)
MAX_CONFIGS = 30  # rows of the per-configuration table

STYLE = """<style>
.lrlab-nb { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; font-size: 13px;
  line-height: 1.4; color: #222; max-width: 1150px; }
.lrlab-nb .lrlab-summary { font-size: 15px; font-weight: 600; margin: 4px 0 6px; }
.lrlab-nb .lrlab-sub { color: #666; }
.lrlab-nb table { border-collapse: collapse; margin: 4px 0 10px; }
.lrlab-nb th, .lrlab-nb td { border-bottom: 1px solid #e3e3e3; padding: 3px 8px;
  text-align: left; vertical-align: top; }
.lrlab-nb td.num, .lrlab-nb th.num { text-align: right; font-variant-numeric: tabular-nums; }
.lrlab-nb .lrlab-badge { color: #fff; border-radius: 3px; padding: 0 5px; font-size: 12px;
  white-space: nowrap; }
.lrlab-nb h4 { margin: 10px 0 2px; font-size: 14px; }
.lrlab-nb img { max-width: 100%; height: auto; }
.lrlab-nb code { font-size: 12px; }
</style>"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(verdict: str) -> str:
    from lrlab.report.plotting import VERDICT_COLORS

    colour = VERDICT_COLORS.get(verdict, "#555")
    return (f'<span class="lrlab-badge" style="background:{colour};color:#fff">'
            f"{_e(verdict)}</span>")


def _manifest(folder: Path | None) -> dict[str, Any]:
    """The manifest of the sweep stored in ``folder`` ({} when there is none)."""
    if folder is None:
        return {}
    from lrlab.errors import UsageError
    from lrlab.results import read_manifest

    try:
        return read_manifest(Path(folder))
    except UsageError:
        return {}


# -- a sweep as HTML --------------------------------------------------------------------


def sweep_html(runs: pd.DataFrame, configs: pd.DataFrame | None = None, *, name: str = "",
               folder: str | Path | None = None, history: pd.DataFrame | None = None,
               wall_s: float | None = None) -> str:
    """A sweep as self-contained HTML for a notebook: its name and folder, the summary
    line (``8 runs: 5 ok, 2 overfit, 1 diverged in 14.2s``), the best configuration
    chosen on validation, with several seeds the verdict of each configuration, the
    flagged runs (overfit, unstable, diverged, underfit, error) with their flags and a
    hint, and the report's learning-rate sensitivity figure as an inline PNG.

    :param runs: the ``runs`` table.
    :param configs: the ``configs`` table (one row per configuration), when at hand.
    :param name: the sweep's name.
    :param folder: the sweep's folder: shown, and its manifest read for the thresholds
        and, unless ``wall_s`` is given, the sweep's wall time.
    :param history: the ``history`` table (the flagged table then says which mini-batch
        loss blew up a diverged run).
    :param wall_s: the sweep's wall time in seconds, for the summary line.
    """
    from lrlab.report import analysis

    folder = Path(folder) if folder is not None else None
    manifest = _manifest(folder)
    if wall_s is None:
        wall_s = manifest.get("wall_s")
    name = name or manifest.get("name") or (folder.name if folder is not None else "")
    head = f"<b>{_e(name)}</b>" if name else "<b>lrlab sweep</b>"
    if folder is not None:
        head += f' <span class="lrlab-sub">· <code>{_e(folder)}</code></span>'
    parts = [STYLE, '<div class="lrlab-nb">', f"<div>{head}</div>"]
    if runs is None or runs.empty:
        parts += ['<div class="lrlab-summary">no runs</div>', "</div>"]
        return "\n".join(parts)
    verdicts = [str(v) for v in runs["verdict"]] if "verdict" in runs else []
    parts.append(f'<div class="lrlab-summary">{_e(summary_line(verdicts, wall_s))}</div>')
    history = history if history is not None else pd.DataFrame()
    sw = analysis.view(runs, history, manifest, name or "sweep")
    parts.append(_best_html(sw))
    if configs is not None and not configs.empty and "n" in configs \
            and int(configs["n"].max()) > 1:
        parts.append(_configs_html(configs))
    parts.append(_flagged_html(analysis.flagged(sw)))
    parts.append(_figure_html(sw))
    if folder is not None and (folder / "index.html").is_file():
        parts.append(f'<div class="lrlab-sub">report: <code>{_e(folder / "index.html")}'
                     f"</code></div>")
    parts.append("</div>")
    return "\n".join(parts)


def _best_html(sw: Any) -> str:
    from lrlab.report import analysis

    best = analysis.best_config(sw)
    if best is None:
        return f"<div>best configuration: <b>none</b> — {_e(analysis.no_best(sw))}</div>"
    seeds = f" (mean over {best['repeats']})" if best["seeds"] > 1 else ""
    return (f"<div>best by validation: <b>{_e(best['label'])}</b>{_e(seeds)} — val acc "
            f"<b>{_e(best['val_acc'])}</b>, test acc {_e(best['test_acc'])} "
            f'<span class="lrlab-sub">(chosen on validation among the configurations that '
            f"learned; the only test number shown)</span></div>")


def _configs_html(configs: pd.DataFrame) -> str:
    from lrlab.configs import verdict_counts
    from lrlab.report.analysis import fmt

    rows = configs.to_dict("records")
    body = []
    for row in rows[:MAX_CONFIGS]:
        val = fmt(row.get("val_acc_mean"), "acc")
        std = row.get("val_acc_std")
        if std is not None and not (isinstance(std, float) and math.isnan(std)):
            val += f" ± {fmt(std, 'acc')}"
        body.append(f"<tr><td><code>{_e(row.get('config_id', ''))}</code></td>"
                    f"<td>{_badge(str(row.get('verdict', '')))}</td>"
                    f"<td>{_e(verdict_counts(row))}</td><td class=\"num\">{_e(val)}</td></tr>")
    more = len(rows) - MAX_CONFIGS
    tail = f'<div class="lrlab-sub">… and {more} more</div>' if more > 0 else ""
    return ("<h4>Per configuration (seeds aggregated)</h4><table><thead><tr>"
            "<th>configuration</th><th>verdict</th><th>seeds</th>"
            "<th class=\"num\">val acc</th></tr></thead><tbody>" + "".join(body)
            + "</tbody></table>" + tail)


def _flagged_html(flagged: list[dict[str, Any]]) -> str:
    if not flagged:
        return ("<h4>Flagged runs (0)</h4><div class=\"lrlab-sub\">No run was flagged: every "
                "run learned without overfitting.</div>")
    body = []
    for r in flagged[:MAX_FLAGGED]:
        hint = f'<div class="lrlab-sub">{_e(r["hint"])}</div>' if r.get("hint") else ""
        body.append(
            f"<tr data-verdict=\"{_e(r['verdict'])}\"><td>{_badge(r['verdict'])}</td>"
            f"<td><code>{_e(r['run_id'])}</code></td><td class=\"num\">{_e(r['lr'])}</td>"
            f"<td class=\"num\">{_e(r['epochs'])}</td>"
            f"<td class=\"num\">{_e(r['train_acc'])}</td>"
            f"<td class=\"num\">{_e(r['val_acc'])}</td>"
            f"<td class=\"num\">{_e(r['gap_acc'])}</td>"
            f"<td>{_e(r['flags'])}{hint}</td></tr>")
    more = len(flagged) - MAX_FLAGGED
    tail = (f'<div class="lrlab-sub">… and {more} more flagged run(s): see '
            f"<code>.runs</code></div>") if more > 0 else ""
    return (f"<h4>Flagged runs ({len(flagged)})</h4><table><thead><tr><th>verdict</th>"
            "<th>run</th><th class=\"num\">lr</th><th class=\"num\">best / ran</th>"
            "<th class=\"num\">train acc</th><th class=\"num\">val acc</th>"
            "<th class=\"num\">gap</th><th>flags</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>" + tail)


def _figure_html(sw: Any) -> str:
    """The report's LR-sensitivity figure as an inline PNG (or why it is absent), drawn
    under the report's local style (the caller's rcParams are restored)."""
    from lrlab.report.fig_lr import lr_sensitivity
    from lrlab.report.plotting import ReportFigure, style

    with warnings.catch_warnings(), style():
        for category in (PendingDeprecationWarning, DeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)
        try:
            fig = lr_sensitivity(sw)
        except Exception as exc:  # a figure that fails must not cost the whole display
            fig = ReportFigure("lr-sensitivity", "Learning-rate sensitivity", "",
                               absent=f"this figure could not be drawn "
                                      f"({type(exc).__name__}: {exc}).")
    title = f"<h4>{_e(fig.title)}</h4>"
    if not fig.png:
        return title + f'<div class="lrlab-sub">{_e(fig.absent)}</div>'
    return (title + f'<img src="data:image/png;base64,{fig.png}" alt="{_e(fig.alt)}" '
            f'width="{fig.width}" style="max-width:100%;height:auto">'
            f'<div class="lrlab-sub">{_e(fig.caption)}</div>')


# -- a stored sweep ---------------------------------------------------------------------


@dataclass(repr=False)
class Shown:
    """A stored sweep, for a notebook: renders as :func:`sweep_html`; its tables are
    ``runs``, ``history``, ``configs`` and its ``manifest``."""

    folder: Path
    runs: pd.DataFrame
    history: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)
    configs: pd.DataFrame | None = None

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.folder.name)

    def summary_line(self) -> str:
        verdicts = [str(v) for v in self.runs["verdict"]] if not self.runs.empty else []
        return summary_line(verdicts, self.manifest.get("wall_s"))

    def _repr_html_(self) -> str:
        return sweep_html(self.runs, self.configs, name=self.name, folder=self.folder,
                          history=self.history, wall_s=self.manifest.get("wall_s"))

    def __repr__(self) -> str:
        return f"<lrlab sweep {self.name!r} in {self.folder}: {self.summary_line()}>"


def show(folder: str | Path | Any) -> Shown:
    """A stored sweep (its folder, or anything with a ``folder``, such as a
    :class:`lrlab.SweepResult`) for a notebook: the cell shows its summary, flagged runs
    and LR figure.

    :raises lrlab.UsageError: the folder holds no sweep results.
    """
    from lrlab.results import CONFIGS_FILE, load_results

    folder = Path(getattr(folder, "folder", folder))
    runs, history, manifest = load_results(folder)
    configs = None
    if (folder / CONFIGS_FILE).is_file():
        try:
            configs = pd.read_parquet(folder / CONFIGS_FILE)
        except (OSError, ValueError):
            configs = None
    return Shown(folder, runs, history, manifest, configs)


# -- progress -----------------------------------------------------------------------------


def _kernel_display() -> Callable[[str], Any] | None:
    """``show(html) -> handle`` (``handle.update(html)``) in a Jupyter kernel; None
    elsewhere (a script, a terminal IPython, no IPython at all)."""
    try:
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return None

    class Handle:
        def __init__(self, page: str) -> None:
            self.handle = display(HTML(page), display_id=True)

        def update(self, page: str) -> None:
            self.handle.update(HTML(page))

    return Handle


class NotebookProgress:
    """The sweep's progress in a notebook: a bar over the runs advancing per epoch, the
    run and epoch being trained, the verdicts so far, elapsed and remaining time; at the
    end, the summary line. One output, updated in place.

    Use it as a plugin: ``lrlab.run_sweep(..., plugins=[NotebookProgress()])``. Outside a
    Jupyter kernel it prints one line per finished run instead.

    :param every: the fewest seconds between two redraws (a run's end and the sweep's end
        always redraw).
    :param display: ``display(html) -> handle`` with ``handle.update(html)``; the kernel's
        by default (for tests).
    """

    __name__ = "notebook-progress"

    def __init__(self, *, every: float = 0.5,
                 display: Callable[[str], Any] | None = None) -> None:
        self.every = every
        self._display = display
        self.handle: Any = None
        self.name = ""
        self.total = 0
        self.done: list[str] = []  # the verdicts of the finished runs
        self.epochs: dict[str, int] = {}
        self.total_epochs: dict[str, int] = {}
        self.current = ""
        self.started = self.drawn = 0.0
        self.finished: str | None = None  # the summary line, once the sweep ended

    # -- the hooks ----------------------------------------------------------------------

    @hookimpl
    def lrlab_sweep_start(self, config, runs) -> None:
        self.name, self.total = str(config.name), len(runs)
        self.done, self.current, self.finished = [], "", None
        self.epochs = {r.run_id: 0 for r in runs}
        self.total_epochs = {r.run_id: max(1, int(r.epochs)) for r in runs}
        self.started = time.perf_counter()
        show = self._display or _kernel_display()
        if show is None:
            self.handle = None
            print(f"{self.name}: training {self.total} run(s)", flush=True)
        else:
            self.handle = show(self.html())
            self.drawn = time.perf_counter()

    @hookimpl
    def lrlab_run_start(self, run) -> None:
        self.current = f"{run.run_id}: starting"
        self._redraw()

    @hookimpl
    def lrlab_epoch_end(self, run, epoch, metrics) -> None:
        self.epochs[run.run_id] = epoch
        total = self.total_epochs.get(run.run_id, epoch)
        val = metrics.get("val_acc")
        acc = f", val acc {val:.3f}" if isinstance(val, float) and math.isfinite(val) else ""
        self.current = f"{run.run_id}: epoch {epoch}/{total}{acc}"
        self._redraw()

    @hookimpl
    def lrlab_run_end(self, run, result) -> None:
        verdict = str(result.summary.get("verdict") or "")
        self.done.append(verdict)
        self.epochs[run.run_id] = self.total_epochs.get(run.run_id, 1)
        if self.handle is None:
            print(f"[{len(self.done)}/{self.total}] {run.run_id}: {verdict}", flush=True)
        else:
            self._redraw(force=True)

    @hookimpl
    def lrlab_sweep_end(self, config, runs, history) -> None:
        verdicts = [str(v) for v in runs["verdict"]] if not runs.empty else []
        self.finished = summary_line(verdicts, time.perf_counter() - self.started)
        if self.handle is None:
            print(f"{self.name}: {self.finished}", flush=True)
        else:
            self._redraw(force=True)

    # -- drawing ------------------------------------------------------------------------

    def fraction(self) -> float:
        """How much of the sweep is done, counted in epochs."""
        total = sum(self.total_epochs.values())
        done = sum(min(e, self.total_epochs.get(r, e)) for r, e in self.epochs.items())
        return done / total if total else 1.0

    def html(self) -> str:
        """The progress as HTML: what the notebook output shows now."""
        fraction = self.fraction() if self.finished is None else 1.0
        elapsed = time.perf_counter() - self.started if self.started else 0.0
        timing = f"{elapsed:.0f}s elapsed"
        if self.finished is None and 0 < fraction < 1:
            timing += f", about {elapsed / fraction * (1 - fraction):.0f}s left"
        counts = {v: self.done.count(v) for v in VERDICTS}
        so_far = ", ".join(f"{n} {v}" for v, n in counts.items() if n) or "none yet"
        if self.finished is not None:
            line = f"<b>done</b>: {_e(self.finished)}"
        else:
            line = f'<span class="lrlab-sub">{_e(self.current or "starting")}</span>'
        return (f'{STYLE}<div class="lrlab-nb lrlab-progress"><b>{_e(self.name)}</b> '
                f'<progress value="{fraction * 1000:.0f}" max="1000" '
                f'style="width:40%;vertical-align:middle"></progress> '
                f"{len(self.done)}/{self.total} runs · {fraction:.0%} of epochs · {timing}"
                f"<div>{line}</div><div class=\"lrlab-sub\">verdicts so far: {_e(so_far)}"
                f"</div></div>")

    def _redraw(self, force: bool = False) -> None:
        if self.handle is None:
            return
        now = time.perf_counter()
        if force or now - self.drawn >= self.every:
            self.handle.update(self.html())
            self.drawn = now
