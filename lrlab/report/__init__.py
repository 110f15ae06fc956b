"""The sweep's HTML report: one self-contained ``index.html`` beside its tables.

    >>> from lrlab.report import write_report
    >>> write_report("reports/digits")          # doctest: +SKIP
    PosixPath('reports/digits/index.html')

The page is rendered by Jinja2 with autoescaping on, so names, run ids, flags and plugin
titles show as text; only the ``html`` of a plugin's :class:`Section` is inserted as is.
Figures are drawn by matplotlib on its Agg canvas (:mod:`lrlab.report.plotting`) and
embedded as base64 PNG, so the file opens offline and the report writes nothing but
``index.html``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from lrlab.report.sections import PluginSections, Section, collect

__all__ = ["PluginSections", "Section", "render", "write_report"]

REPORT_FILE = "index.html"


def write_report(folder: str | Path, plugins: Any = None,
                 extra_plugins: Sequence[str] = ()) -> Path:
    """Build ``<folder>/index.html`` from the stored results and return its path: the same
    page as ``lrlab report FOLDER``.

    :param folder: a sweep's results folder (``runs.parquet``, ``history.parquet``,
        ``manifest.json``).
    :param plugins: the :class:`lrlab.plugins.Plugins` host whose
        ``lrlab_report_sections`` implementations add sections; ``None`` loads the
        plugins the sweep loaded, as its manifest records them
        (:class:`lrlab.plugins.PluginRecipe`).
    :param extra_plugins: more ``-p`` arguments, when ``plugins`` is None.
    :raises lrlab.UsageError: the folder holds no results.
    :raises lrlab.PluginError: a plugin's section hook failed, naming the plugin.
    """
    from lrlab.results import atomic_write_text, load_results

    start = time.perf_counter()
    folder = Path(folder)
    runs, history, manifest = load_results(folder)
    manifest["folder"] = str(folder)  # where it is now (it may have moved since the sweep)
    if plugins is None:
        from lrlab.recipe import PluginRecipe, load_recipe

        plugins = load_recipe(PluginRecipe.from_manifest(manifest).with_extra(extra_plugins))
    extra = collect(plugins, runs=runs.copy(), history=history.copy(),
                    manifest=copy.deepcopy(manifest))
    page = render(runs, history, manifest, extra, name=manifest.get("name") or folder.name,
                  started=start, registry=getattr(plugins, "registry", None))
    path = folder / REPORT_FILE
    atomic_write_text(path, page)
    return path


def render(runs: pd.DataFrame, history: pd.DataFrame, manifest: dict[str, Any],
           sections: Sequence[PluginSections] = (), *, name: str = "sweep",
           started: float | None = None, registry: Any = None) -> str:
    """The report page as a string (nothing is written). ``registry`` (the plugins'
    components) lets the schedule figure replay each run's LR per batch."""
    from lrlab.report import analysis
    from lrlab.version import __version__

    started = time.perf_counter() if started is None else started
    sw = analysis.view(runs, history, manifest, name, registry)
    best = analysis.best_config(sw)
    columns, rows = analysis.all_runs(sw)
    context = {
        "name": sw.name, "n_runs": len(sw.runs), "counts": analysis.counts(sw),
        "best": best, "next_steps": analysis.next_steps(sw, best),
        "no_best": analysis.no_best(sw),
        "weights": _weights(manifest, best), "folder": str(manifest.get("folder") or ""),
        "fixed": [(a, analysis.fmt(v, "lr") if a == "lr" else str(v))
                  for a, v in sw.fixed.items()],
        "settings": analysis.settings(sw), "environment": analysis.environment(sw),
        "notes": [str(n) for n in manifest.get("notes") or []],
        "flagged": analysis.flagged(sw), "figures": figures(sw),
        "per_config": analysis.per_config(sw), "verdicts": list(analysis.VERDICTS),
        "effects": analysis.effects(sw), "intervals_note": analysis.intervals_note(sw),
        "columns": columns, "rows": rows, "plugin_sections": list(sections),
        "version": __version__,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    context["build_s"] = f"{time.perf_counter() - started:.1f}"
    return _environment().get_template("report.html").render(**context)


def _weights(manifest: dict[str, Any], best: Any) -> list[str]:
    """The saved weights of the best configuration's runs (``weights/<run_id>.pt``)."""
    if not best or not manifest.get("folder"):
        return []
    from lrlab.weights import saved_weights

    found = saved_weights(manifest["folder"], best.get("run_ids") or [])
    return [f"weights/{path.name}" for path in found.values()]


def figures(sw: Any) -> list[Any]:
    """Every figure of the report, drawn under the report's style (rcParams restored)."""
    from lrlab.report import fig_fit, fig_lr
    from lrlab.report.plotting import ReportFigure, style

    builders = [(fig_lr.lr_sensitivity, "lr-sensitivity", "Learning-rate sensitivity"),
                (fig_lr.learning_curves, "learning-curves", "Learning curves"),
                (fig_fit.gap_heatmap, "gap-heatmap", "Overfitting map"),
                (fig_fit.augment_effect, "augmentation", "Augmentation"),
                (fig_fit.early_stopping, "early-stopping", "Early stopping"),
                (fig_fit.axis_effects, "axis-effects", "What each axis does"),
                (fig_lr.lr_schedule, "lr-schedule", "Learning-rate schedules")]
    out = []
    with style():
        for build, key, title in builders:
            try:
                out.append(build(sw))
            except Exception as exc:  # one bad figure must not cost the whole report
                out.append(ReportFigure(key, title, "", absent=f"this figure could not be "
                                        f"drawn ({type(exc).__name__}: {exc})."))
    return out


def _environment() -> Any:
    import jinja2

    from lrlab.report.plotting import VERDICT_COLORS

    env = jinja2.Environment(loader=jinja2.PackageLoader("lrlab.report", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.globals["verdict_colors"] = VERDICT_COLORS
    return env
