"""Two sweeps side by side (``lrlab compare A B``): what changed from A to B, with intervals.

    >>> from lrlab.compare import compare
    >>> c = compare("reports/last-week", "reports/digits", fail_if_worse=["val_acc=0.01"])
    >>> c.table[["config", "val_acc_delta", "val_acc_lo", "val_acc_hi", "fails"]]  # doctest: +SKIP

Configurations are matched on their axes (model, loss, optimizer, schedule, augment,
stopper, lr, epochs, batch size, dataset), not on run ids, which name only the axes that
vary in a grid. For each configuration in both, every metric's difference B − A has a 95%
interval (:mod:`lrlab.stats`): paired by seed when both sweeps ran the same seeds (and the
same split), since runs with one seed share initialisation and batch order; else the two
samples are resampled independently (Welch-style).

``--fail-if-worse val_acc=0.01`` fails a configuration whose B is worse than A by more than
0.01 *with confidence*: its interval lies entirely beyond the threshold. A sweep of many
configurations would fail by chance now and then if each were tested at 95%, so the gate
uses simultaneous intervals (Bonferroni over the configurations compared): a sweep with
no true change fails nominally 2.5% of the time however many configurations it has
(tests/test_compare.py measures 3-4% with 3 seeds and 4 configurations, where 95%
intervals each would fail about 10%). With one configuration the gate's interval is the
95% one shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lrlab.config import CONFIG_AXES, recorded_split_seeds
from lrlab.errors import UsageError
from lrlab.stats import (
    LEVEL,
    Interval,
    bonferroni,
    difference_intervals,
    interval_text,
    mean_intervals,
    pair_keys,
)

# metric -> (runs-table column, +1 when higher is better, -1 when lower is)
METRICS = {"val_acc": ("tested_val_acc", +1), "val_loss": ("tested_val_loss", -1),
           "gap_acc": ("tested_gap_acc", -1), "gl": ("tested_gl", -1)}
COLUMNS = [col for col, _ in METRICS.values()]
COMPARE_FILE = "compare.html"


@dataclass
class Comparison:
    """What :func:`compare` found. ``table`` has one row per configuration of either
    sweep: ``config`` (its varying axes), the axes, ``status`` (``both``, ``new`` in B,
    ``missing`` from B), ``pairing`` (``paired`` / ``unpaired``), ``n_a`` / ``n_b`` runs,
    ``verdict_a`` / ``verdict_b`` / ``verdict_changed``, for each metric ``<m>_a``,
    ``<m>_b`` (means), ``<m>_delta`` (B − A), ``<m>_lo`` / ``<m>_hi`` (its 95% interval),
    ``change`` (on val acc: ``better`` / ``worse`` / ``no clear change`` / ``no
    interval``), and for each ``--fail-if-worse`` metric ``<m>_gate_lo`` / ``_gate_hi``,
    then ``fails`` and ``fails_on`` (why)."""

    a: str
    b: str
    table: pd.DataFrame
    thresholds: dict[str, float] = field(default_factory=dict)
    gate_level: float = LEVEL
    notes: list[str] = field(default_factory=list)
    manifests: tuple[dict[str, Any], dict[str, Any]] = ({}, {})

    @property
    def failed(self) -> bool:
        """Whether a configuration got worse beyond a ``--fail-if-worse`` threshold."""
        return bool(self.table["fails"].any()) if "fails" in self.table else False

    def count(self, column: str, value: Any) -> int:
        return int((self.table[column] == value).sum()) if column in self.table else 0

    def summary_line(self) -> str:
        """``6 configurations: 1 worse, 0 better, 5 no clear change; 1 new, 0 missing``."""
        both = self.count("status", "both")
        parts = [f"{self.count('change', c)} {c}" for c in ("worse", "better",
                                                            "no clear change", "no interval")
                 if c != "no interval" or self.count("change", c)]
        line = (f"{both} configuration{'s' if both != 1 else ''} in both: " + ", ".join(parts)
                + f" (val acc, 95%); {self.count('status', 'new')} new, "
                f"{self.count('status', 'missing')} missing; "
                f"{int(self.table.get('verdict_changed', pd.Series(dtype=bool)).sum())} "
                f"verdict change(s)")
        if self.thresholds:
            fails = int(self.table["fails"].sum())
            line += (f"; --fail-if-worse: {fails} failed" if fails else
                     "; --fail-if-worse: passed")
        return line


def parse_thresholds(texts: list[str] | str | None) -> dict[str, float]:
    """``["val_acc=0.01", "gap_acc=0.02,gl=5"]`` -> ``{"val_acc": 0.01, ...}``; a bad one is
    a :class:`lrlab.errors.UsageError`."""
    from lrlab.registry import closest

    if isinstance(texts, str):
        texts = [texts]
    out: dict[str, float] = {}
    for item in (p.strip() for t in texts or [] for p in str(t).split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--fail-if-worse {item!r}: expected METRIC=THRESHOLD, e.g. "
                             f"val_acc=0.01")
        if name not in METRICS:
            near = closest(name, list(METRICS))
            raise UsageError(f"--fail-if-worse: unknown metric '{name}'"
                             + (f"; did you mean '{near}'?" if near else "")
                             + f" (choose from {', '.join(METRICS)})")
        try:
            threshold = float(value)
        except ValueError:
            threshold = math.nan
        if not (math.isfinite(threshold) and threshold >= 0):
            raise UsageError(f"--fail-if-worse {item!r}: the threshold must be a number >= 0, "
                             f"in the metric's units (val_acc=0.01 is one point of accuracy)")
        out[name] = threshold
    return out


def _load(source: Any, label: str) -> tuple[pd.DataFrame, dict[str, Any], str]:
    """The runs, manifest and name of a sweep folder (or of a runs table)."""
    if isinstance(source, pd.DataFrame):
        runs, manifest, name = source, {}, label
    else:
        from lrlab.results import load_results

        runs, _, manifest = load_results(source)
        name = str(source)
    if runs.empty:
        raise UsageError(f"{name} holds no runs to compare")
    runs = runs.copy()
    for col, _ in METRICS.values():
        if col not in runs:
            plain = col.removeprefix("tested_")
            runs[col] = runs[plain] if plain in runs else math.nan
        runs[col] = pd.to_numeric(runs[col], errors="coerce")
    return runs, manifest, name


def _mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _norm(axis: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if axis == "lr":
        return f"{float(value):.6g}"
    if axis in ("epochs", "batch_size"):
        return str(int(value))
    return str(value)


def _same_split(ma: dict[str, Any], mb: dict[str, Any]) -> bool:
    ca, cb = ma.get("config") or {}, mb.get("config") or {}
    return ca.get("split") == cb.get("split") and \
        recorded_split_seeds(ca) == recorded_split_seeds(cb)


def compare(a: Any, b: Any, *, fail_if_worse: list[str] | dict[str, float] | None = None
            ) -> Comparison:
    """Compare sweep ``b`` with sweep ``a`` (folders, or runs tables): per configuration
    the deltas B − A with their intervals, verdict changes, new and missing
    configurations, and the ``fail_if_worse`` gate (``["val_acc=0.01"]`` or
    ``{"val_acc": 0.01}``).

    :raises lrlab.UsageError: a folder without results, sweeps of different datasets, an
        unknown metric or a malformed threshold.
    """
    from lrlab.configs import majority

    thresholds = dict(fail_if_worse) if isinstance(fail_if_worse, dict) else \
        parse_thresholds(fail_if_worse)
    for name in thresholds:
        if name not in METRICS:
            raise UsageError(f"--fail-if-worse: unknown metric '{name}'")
    ra, ma, name_a = _load(a, "A")
    rb, mb, name_b = _load(b, "B")
    da = set(ra["dataset"].astype(str)) if "dataset" in ra else set()
    db = set(rb["dataset"].astype(str)) if "dataset" in rb else set()
    if da and db and da != db:
        raise UsageError(f"{name_a} and {name_b} are sweeps of different datasets "
                         f"({', '.join(sorted(da))} vs {', '.join(sorted(db))}): their "
                         f"numbers cannot be compared")
    axes = [x for x in CONFIG_AXES if x in ra and x in rb]
    pkeys = [k for k in pair_keys(ra) if k in rb]
    side_a, side_b = _by_config(ra, axes, pkeys), _by_config(rb, axes, pkeys)
    keys = list(dict.fromkeys([*side_a, *side_b]))
    varying = [x for i, x in enumerate(axes) if len({k[i] for k in keys}) > 1]
    same_split = _same_split(ma, mb)
    both = [k for k in keys if k in side_a and k in side_b]
    gate_level = bonferroni(len(both)) if thresholds else LEVEL

    rows, paired, unpaired, where = [], [], [], []
    for key in keys:
        ga, gb = side_a.get(key), side_b.get(key)
        status = "both" if ga and gb else "missing" if gb is None else "new"
        row: dict[str, Any] = {
            "config": ", ".join(f"{x}={key[axes.index(x)]}" for x in varying) or "all runs",
            **dict(zip(axes, key, strict=True)), "status": status,
            "n_a": len(ga[0]) if ga else 0, "n_b": len(gb[0]) if gb else 0,
            "verdict_a": majority(ga[2]) if ga else "", "verdict_b": majority(gb[2]) if gb else ""}
        row["verdict_changed"] = status == "both" and row["verdict_a"] != row["verdict_b"]
        for j, m in enumerate(METRICS):
            row[f"{m}_a"] = _mean(ga[0][:, j]) if ga else math.nan
            row[f"{m}_b"] = _mean(gb[0][:, j]) if gb else math.nan
        seeds_match = False
        if status == "both" and pkeys and same_split:
            pa, pb = _per_seed(ga), _per_seed(gb)
            seeds_match = set(pa) == set(pb) and len(pa) >= 2
        row["pairing"] = "" if status != "both" else "paired" if seeds_match else "unpaired"
        if seeds_match:  # per seed, B − A of every metric at once
            d = np.stack([pb[k] - pa[k] for k in pa])
            for j, m in enumerate(METRICS):
                paired.append(d[:, j][np.isfinite(d[:, j])])
                where.append((len(rows), m, "paired", len(paired) - 1))
        elif status == "both":
            for j, m in enumerate(METRICS):
                unpaired.append((ga[0][:, j], gb[0][:, j]))
                where.append((len(rows), m, "unpaired", len(unpaired) - 1))
        rows.append(row)
    _fill(rows, where, paired, unpaired, thresholds, gate_level)
    order = {"both": 0, "new": 1, "missing": 2}
    table = pd.DataFrame(sorted(rows, key=lambda r: order[r["status"]]))
    notes = _notes(ra, rb, pkeys, same_split, table, thresholds, gate_level, len(both))
    return Comparison(name_a, name_b, table, thresholds, gate_level, notes, (ma, mb))


def _by_config(runs: pd.DataFrame, axes: list[str], pkeys: list[str]
               ) -> dict[tuple, tuple[np.ndarray, list[tuple], list[str]]]:
    """Per configuration (its axes' values), its runs' metrics (rows x METRICS), their
    pair keys and their verdicts."""
    values = runs[COLUMNS].to_numpy(float)
    keys = list(zip(*(runs[x].map(lambda v, x=x: _norm(x, v)) for x in axes), strict=True)) \
        if axes else [()] * len(runs)
    seeds = list(zip(*(runs[k].tolist() for k in pkeys), strict=True)) if pkeys else \
        [()] * len(runs)
    verdicts = runs["verdict"].astype(str).tolist()
    where: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        where.setdefault(key, []).append(i)
    return {key: (values[idx], [seeds[i] for i in idx], [verdicts[i] for i in idx])
            for key, idx in where.items()}


def _per_seed(side: tuple[np.ndarray, list[tuple], list[str]]) -> dict[tuple, np.ndarray]:
    """A configuration's metrics per pair key (the mean, should a key repeat)."""
    rows: dict[tuple, list[np.ndarray]] = {}
    for values, seed in zip(side[0], side[1], strict=True):
        rows.setdefault(seed, []).append(values)
    return {k: np.mean(v, axis=0) for k, v in rows.items()}


def _intervals(paired: list, unpaired: list, level: float) -> dict[str, list[Interval]]:
    return {"paired": mean_intervals(paired, level),
            "unpaired": difference_intervals(unpaired, level)}


def _fill(rows: list[dict[str, Any]], where: list, paired: list, unpaired: list,
          thresholds: dict[str, float], gate_level: float) -> None:
    """Write the intervals (and the gate's) into the rows, then ``change`` and ``fails``."""
    shown = _intervals(paired, unpaired, LEVEL)
    gate = _intervals(paired, unpaired, gate_level) if thresholds and gate_level != LEVEL \
        else shown
    for r in rows:
        for m in METRICS:
            r.update({f"{m}_delta": math.nan, f"{m}_lo": math.nan, f"{m}_hi": math.nan})
            if m in thresholds:
                r.update({f"{m}_gate_lo": math.nan, f"{m}_gate_hi": math.nan})
    for i, m, kind, j in where:
        r, iv = rows[i], shown[kind][j]
        r.update({f"{m}_delta": r[f"{m}_b"] - r[f"{m}_a"], f"{m}_lo": iv.lo, f"{m}_hi": iv.hi})
        if m in thresholds:
            r.update({f"{m}_gate_lo": gate[kind][j].lo, f"{m}_gate_hi": gate[kind][j].hi})
    for r in rows:
        lo, hi = r["val_acc_lo"], r["val_acc_hi"]
        if r["status"] != "both":
            r["change"] = ""
        elif not (math.isfinite(lo) and math.isfinite(hi)):
            r["change"] = "no interval"
        else:
            r["change"] = "better" if lo > 0 else "worse" if hi < 0 else "no clear change"
        reasons = []
        for m, threshold in thresholds.items():
            sign = METRICS[m][1]
            lo, hi = r[f"{m}_gate_lo"], r[f"{m}_gate_hi"]
            if sign > 0 and hi < -threshold or sign < 0 and lo > threshold:
                text = interval_text(r[f"{m}_delta"], lo, hi, 1, 3).replace(
                    " [", f", {100 * gate_level:.4g}% interval [", 1)
                reasons.append(f"{m} {text}: beyond {'−' if sign > 0 else '+'}{threshold:g}")
        r["fails"], r["fails_on"] = bool(reasons), "; ".join(reasons)


def _notes(ra: pd.DataFrame, rb: pd.DataFrame, pkeys: list[str], same_split: bool,
           table: pd.DataFrame, thresholds: dict[str, float], gate_level: float,
           k: int) -> list[str]:
    """What the intervals are and how the sweeps were paired, one sentence each."""
    from lrlab.stats import covers

    out = []
    paired = int((table["pairing"] == "paired").sum())
    unpaired = int((table["pairing"] == "unpaired").sum())
    over = "seeds and splits" if "splits" in covers(ra) + covers(rb) else "seeds"
    if paired:
        out.append(f"{paired} configuration(s) paired by seed (both sweeps ran the same "
                   f"seeds on the same split): the interval is of the mean difference per "
                   f"seed, which cancels what a seed's initialisation and batch order add.")
    if unpaired:
        why = ("the sweeps' splits differ" if not same_split else
               "the sweeps ran different seeds, or fewer than two" if pkeys else
               "the tables have no seed column")
        out.append(f"{unpaired} configuration(s) compared unpaired ({why}): the two samples "
                   f"are resampled independently (Welch-style); each needs two runs or more "
                   f"for an interval (--seeds 3).")
    out.append(f"Intervals are 95%: a percentile bootstrap widened for small samples "
               f"(lrlab.stats); they hold the variance of {over}.")
    if thresholds and k > 1:
        out.append(f"--fail-if-worse uses simultaneous intervals over the {k} configurations "
                   f"({100 * gate_level:.4g}% each, Bonferroni), so that a sweep with no true "
                   f"change seldom fails (nominally 2.5% of the time, however many "
                   f"configurations): an interval shown at 95% may lie beyond a threshold and "
                   f"the gate still pass.")
    return out


def write_junit(comparison: Comparison, path: str | Path) -> Path:
    """Each configuration as a JUnit test case: failed when ``--fail-if-worse`` fails it,
    skipped when it is missing from B."""
    import xml.etree.ElementTree as ET

    from lrlab.junit import xml_text

    table = comparison.table
    suite = ET.Element("testsuite", name="lrlab.compare", tests=str(len(table)),
                       failures=str(int(table["fails"].sum())), errors="0",
                       skipped=str(comparison.count("status", "missing")))
    for r in table.to_dict("records"):
        case = ET.SubElement(suite, "testcase", classname="lrlab.compare",
                             name=xml_text(r["config"]), time="0")
        if r["fails"]:
            failure = ET.SubElement(case, "failure", type="worse", message=xml_text(r["fails_on"]))
            failure.text = xml_text(
                f"{comparison.a} -> {comparison.b}: {r['fails_on']}; val acc "
                f"{r['val_acc_a']:.4f} -> {r['val_acc_b']:.4f}, verdict {r['verdict_a']} -> "
                f"{r['verdict_b']}")
        elif r["status"] == "missing":
            ET.SubElement(case, "skipped", message=xml_text(f"not in {comparison.b}"))
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tree.write(tmp, encoding="utf-8", xml_declaration=True)
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


# -- the page -----------------------------------------------------------------------------

MAX_FIGURE_ROWS = 30


def default_html_path(comparison: Comparison) -> Path:
    """Where ``lrlab compare`` writes its page without ``--out``: ``compare.html`` in B's
    folder, beside B's report (the current folder when B is a table, not a folder)."""
    b = Path(comparison.b)
    return (b if b.is_dir() else Path.cwd()) / COMPARE_FILE


def render_html(comparison: Comparison) -> str:
    """The comparison as a self-contained HTML page in the report's style."""
    from datetime import UTC, datetime

    from lrlab.report import _environment
    from lrlab.version import __version__

    t = comparison.table
    rows = []
    for r in t.to_dict("records"):
        rows.append({**r, "val_acc_a": _cell(r["val_acc_a"]), "val_acc_b": _cell(r["val_acc_b"]),
                     "d_val_acc": _delta(r, "val_acc", 100), "d_gap": _delta(r, "gap_acc", 100),
                     "d_val_loss": _delta(r, "val_loss", 1, 3),
                     "sort": "" if not math.isfinite(r["val_acc_delta"]) else r["val_acc_delta"]})
    counts = [("worse", "c-worse", comparison.count("change", "worse")),
              ("better", "c-better", comparison.count("change", "better")),
              ("no clear change", "c-same", comparison.count("change", "no clear change")),
              ("verdict changed", "c-changed", int(t["verdict_changed"].sum())),
              ("new in B", "c-new", comparison.count("status", "new")),
              ("missing from B", "c-missing", comparison.count("status", "missing"))]
    if comparison.count("change", "no interval"):
        counts.insert(3, ("no interval", "c-same", comparison.count("change", "no interval")))
    context = {
        "a": comparison.a, "b": comparison.b, "summary": comparison.summary_line(),
        "counts": counts, "notes": comparison.notes, "rows": rows,
        "thresholds": ", ".join(f"{k}={v:g}" for k, v in comparison.thresholds.items()),
        "failed": comparison.failed, "failing": [r for r in rows if r["fails"]],
        "about_a": _about(comparison.manifests[0]), "about_b": _about(comparison.manifests[1]),
        "figure": _figure(comparison), "version": __version__,
        "generated": datetime.now(UTC).isoformat(timespec="seconds")}
    return _environment().get_template("compare.html").render(**context)


def write_html(comparison: Comparison, path: str | Path | None = None) -> Path:
    """Write :func:`render_html` to ``path`` (default :func:`default_html_path`)."""
    from lrlab.storage import atomic_write_text

    path = Path(path) if path is not None else default_html_path(comparison)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, render_html(comparison))
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _cell(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3f}"


def _delta(r: dict[str, Any], m: str, scale: float, digits: int = 1) -> str:
    if r["status"] != "both":
        return "—"
    text = interval_text(r[f"{m}_delta"], r[f"{m}_lo"], r[f"{m}_hi"], scale, digits)
    return text


def _about(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    cfg = manifest.get("config") or {}
    rows = [(k, str(manifest[k])) for k in ("name", "finished") if manifest.get(k)]
    if manifest.get("command_line"):
        rows.append(("command line", str(manifest["command_line"])))
    if cfg.get("split") is not None:
        seeds = ", ".join(str(v) for v in recorded_split_seeds(cfg))
        rows.append(("split", f"{cfg.get('split')} (split_seed {seeds})"))
    versions = manifest.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return rows


def _figure(comparison: Comparison) -> Any:
    """Val acc and gap deltas per configuration in both sweeps, as a forest plot."""
    from lrlab.report.plotting import ReportFigure, absent, forest, new_figure, shown

    key, title = "deltas", "B − A per configuration: validation accuracy and the gap"
    t = comparison.table[comparison.table["status"] == "both"]
    if t.empty:
        return absent(key, title, "no configuration is in both sweeps.")
    t = t.sort_values("val_acc_delta", kind="stable").head(MAX_FIGURE_ROWS)
    fig = new_figure(11, 1.3 + 0.38 * len(t))
    left, right = fig.subplots(1, 2, sharey=True)
    labels = t["config"].tolist()
    for ax, m, better, name in ((left, "val_acc", True, "validation accuracy (higher is better)"),
                                (right, "gap_acc", False, "train − val gap (lower is better)")):
        forest(ax, labels, (100 * t[f"{m}_delta"]).tolist(), (100 * t[f"{m}_lo"]).tolist(),
               (100 * t[f"{m}_hi"]).tolist(), higher_is_better=better, title=name,
               xlabel="B − A, percentage points")
    more = len(comparison.table[comparison.table["status"] == "both"]) - len(t)
    caption = ("One row per configuration in both sweeps, the largest fall in val acc at the "
               "top: the dot is B − A of the mean over its runs, the bar its 95% interval "
               "(paired by seed where both ran the same seeds). Green: clearly better, red: "
               "clearly worse, grey: no clear change; a hollow dot has no interval."
               + (f" {more} more configuration(s) are in the table only." if more else ""))
    figure: ReportFigure = shown(key, title, caption, fig, "forest plot of B − A per "
                                                         "configuration")
    return figure
