"""What the report says in words: verdict counts, the best configuration, hints, next steps.

Everything here is plain pandas over the stored ``runs`` and ``history`` tables; the
figures (:mod:`lrlab.report.fig_lr`, :mod:`lrlab.report.fig_fit`) and the page (:mod:`lrlab.report`) read the
:class:`SweepView` built by :func:`view`.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lrlab.config import AXES, CONFIG_AXES, REPEATS, recorded_split_seeds
from lrlab.results import HISTORY_COLUMNS, best_configuration
from lrlab.verdicts import DEFAULT_THRESHOLDS, VERDICTS

NUMBERS = ["epochs_run", "best_epoch", "restored_epoch", "train_loss", "train_acc",
           "val_loss", "val_acc", "best_train_loss", "best_train_acc", "best_val_loss",
           "best_val_acc", "test_loss", "test_acc", "gap_loss", "gap_acc", "gl", "wall_s"]
NUMERIC = ("lr", "epochs", "batch_size", "split_seed", "seed")  # axes sorted as numbers
FLAGGED = ("overfit", "unstable", "diverged", "underfit", "error")  # the flagged table's order


@dataclass
class SweepView:
    """The stored tables, tidied, with what the report derives from them.

    ``runs`` always has ``tested_val_acc``/``tested_val_loss`` (validation metrics of the
    weights that were tested: the restored epoch's when the stopper restored one), gains
    ``config`` (a label of the run's
    varying axes, seed left out) and ``best_lr`` (the LR that did best among runs that
    differ from this one only in LR and seed).
    """

    name: str
    runs: pd.DataFrame
    history: pd.DataFrame
    manifest: dict[str, Any]
    axes: list[str]  # axis columns present
    varying: list[str]  # axes with more than one value, seed and split seed left out
    fixed: dict[str, Any]  # axis -> its single value
    seeds: int  # runs per configuration (seeds × split seeds)
    thresholds: dict[str, float] = field(default_factory=dict)
    registry: Any = None  # the plugins' components, to rebuild a run's schedule (optional)
    _configs: pd.DataFrame | None = field(default=None, repr=False)
    _effects: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def configs(self) -> pd.DataFrame:
        """The ``configs`` table of these runs (:func:`lrlab.configs.config_table`), built
        once: intervals, and each configuration against the best (chosen as
        :func:`lrlab.results.best_configuration` chooses it)."""
        if self._configs is None:
            from lrlab.configs import config_table

            self._configs = config_table(self.runs)
        return self._configs

    @property
    def effects(self) -> pd.DataFrame:
        """What each axis does (:func:`lrlab.configs.axis_effects`), built once."""
        if self._effects is None:
            from lrlab.configs import axis_effects

            self._effects = axis_effects(self.runs)
        return self._effects

    def values(self, axis: str) -> list[Any]:
        """The distinct values of an axis, in order (numbers ascending)."""
        if axis not in self.runs:
            return []
        vals = self.runs[axis].dropna().unique().tolist()
        return sorted(vals) if axis in NUMERIC else vals


def view(runs: pd.DataFrame, history: pd.DataFrame, manifest: dict[str, Any],
         name: str, registry: Any = None) -> SweepView:
    """Tidy the tables (missing columns filled) and derive the report's columns."""
    runs = runs.copy().reset_index(drop=True)
    for col in NUMBERS + ["lr"]:
        runs[col] = pd.to_numeric(runs[col], errors="coerce") if col in runs else math.nan
    for col in ("run_id", "verdict", "cause", "flags", "stopped_by", "error"):
        runs[col] = runs[col].fillna("").astype(str) if col in runs else ""
    runs.loc[~runs["verdict"].isin(VERDICTS), "verdict"] = "error"
    axes = [a for a in AXES if a in runs]
    for a in axes:
        if a not in NUMERIC:
            runs[a] = runs[a].fillna("").astype(str)
    history = history.copy()
    if history.empty or "run_id" not in history:
        history = pd.DataFrame(columns=HISTORY_COLUMNS)
    varying = [a for a in axes if a not in REPEATS and runs[a].nunique(dropna=True) > 1]
    fixed = {a: runs[a].iloc[0] for a in axes if a not in varying and a not in REPEATS
             and not runs.empty}
    seeds = 1  # runs per configuration: seeds × split seeds
    for repeat in REPEATS:
        seeds *= int(runs[repeat].nunique()) if repeat in runs and not runs.empty else 1
    config = manifest.get("config") or {}
    thresholds = {**DEFAULT_THRESHOLDS, **(config.get("thresholds") or {})}

    peaks = (history.groupby("run_id")["max_batch_loss"].max()
             if "max_batch_loss" in history and not history.empty else pd.Series(dtype=float))
    runs["peak_loss"] = runs["run_id"].map(peaks).astype(float)  # largest mini-batch loss
    runs["peak_epoch"] = runs["run_id"].map(_peak_epochs(history)).astype(float)  # and when
    for col in ("tested_val_acc", "tested_val_loss", "tested_train_acc", "tested_gap_acc",
                "tested_gl"):  # tables of older sweeps lack them: the last epoch's then
        if col not in runs:
            runs[col] = runs[col.replace("tested_", "")]
    runs["config"] = [config_label(row, varying) for row in runs.to_dict("records")]
    runs["best_lr"] = _peer_best_lr(runs, [a for a in CONFIG_AXES if a in runs and a != "lr"])
    return SweepView(name, runs, history, manifest, axes, varying, fixed, seeds, thresholds,
                     registry)


def config_label(row: dict[str, Any], varying: list[str]) -> str:
    """``lr=0.1, augment=noise``: the run's values of the varying axes."""
    parts = [f"{a}={fmt(row[a], 'lr') if a == 'lr' else row[a]}" for a in varying]
    return ", ".join(parts) or "all runs"


def _peer_best_lr(runs: pd.DataFrame, others: list[str]) -> pd.Series:
    """For each run, the LR of the best configuration among its peers (the runs that
    differ from it only in LR and seed), chosen as :func:`lrlab.results.best_configuration`
    chooses the sweep's best."""
    from lrlab.results import best_configuration

    if runs.empty or "lr" not in runs:
        return pd.Series(math.nan, index=runs.index)
    best_lr = pd.Series(math.nan, index=runs.index)
    groups = runs.groupby(others, dropna=False, sort=False) if others else [((), runs)]
    for _, group in groups:
        best = best_configuration(group)
        if best is not None:
            best_lr[group.index] = float(best["lr"].iloc[0])
    return best_lr


# -- formatting ---------------------------------------------------------------------------


def fmt(x: Any, kind: str = "loss") -> str:
    """A number as a table cell: ``loss`` 3 significant digits, ``acc`` 3 decimals,
    ``gap`` signed, ``pct`` a percentage, ``lr`` 3 significant digits, ``int``, ``s``
    seconds; NaN is a dash."""
    if x is None or isinstance(x, str):
        return x or "—"
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if kind == "acc":
        return f"{x:.3f}"
    if kind == "gap":
        return "0.000" if abs(x) < 5e-4 else f"{x:+.3f}".replace("-", "−")
    if kind == "pct":
        return f"{x:.1f}%"
    if kind == "lr":
        return f"{x:.3g}"
    if kind == "int":
        return str(int(x))
    if kind == "s":
        return f"{x:.2f}"
    return f"{x:.3g}"


# -- summary ------------------------------------------------------------------------------


def counts(sw: SweepView) -> list[tuple[str, int]]:
    """Runs per verdict, every verdict listed (zeros too), in VERDICTS order."""
    c = sw.runs["verdict"].value_counts()
    return [(v, int(c.get(v, 0))) for v in VERDICTS]


def best_config(sw: SweepView) -> dict[str, Any] | None:
    """The configuration with the highest mean validation accuracy over its seeds, its
    numbers with their 95% intervals, and the configurations tied with it.

    Chosen on validation alone; only then is its test metric read, so the test set
    stays an unbiased estimate (the lesson of the train/val/test split).
    """
    from lrlab.configs import config_id, mean_text, repeats_text, tied_with_best

    group = best_configuration(sw.runs)
    if group is None:
        return None
    keys = [a for a in CONFIG_AXES if a in group]
    first = group.iloc[0]
    row = sw.configs.set_index("config_id").loc[config_id(first["run_id"])]
    label = {cid: cfg for cid, cfg in zip(sw.runs["run_id"].map(config_id), sw.runs["config"],
                                          strict=True)}
    tied = [{"label": label.get(r["config_id"], r["config_id"]),
             "diff": _points(r["vs_best_mean"], r["vs_best_lo"], r["vs_best_hi"])}
            for r in tied_with_best(sw.configs).to_dict("records")]
    n = int(row["n"])
    return {
        "label": first["config"],
        "axes": [(a, fmt(first[a], "lr") if a == "lr" else str(first[a])) for a in keys],
        "val_acc": mean_text(row, "val_acc"), "val_loss": mean_text(row, "val_loss"),
        "test_acc": mean_text(row, "test_acc"),
        "test_loss": fmt(group["test_loss"].mean(), "loss"),
        "seeds": n, "repeats": repeats_text(group), "run_ids": group["run_id"].tolist(),
        "verdicts": ", ".join(sorted(set(group["verdict"]))), "lr": float(first["lr"]),
        "verdict": str(group["verdict"].mode().iloc[0]),
        "tied": tied, "separation": separation(sw, n, tied),
    }


def _points(mean: float, lo: float, hi: float) -> str:
    """``−0.4 points [−1.0, +0.3]``: an accuracy difference in percentage points."""
    from lrlab.stats import points_text

    return points_text(mean, lo, hi)


def separation(sw: SweepView, n: int, tied: list[dict[str, Any]]) -> str:
    """Whether the best is really the best, in one sentence."""
    if n < 2:
        return ("One seed: there is no interval, and no telling whether the best is really "
                "better than the runner-up. Run with --seeds 3 for intervals and paired "
                "comparisons.")
    from lrlab.configs import together_text

    level = sw.configs["vs_best_level"].max() if "vs_best_level" in sw.configs else None
    together = together_text(level)
    if tied:
        return (f"Tied with the best at this number of seeds ({n}): the configurations below "
                f"differ from it by an amount whose interval (paired by seed; {together}) "
                "holds 0, so the sweep cannot tell them apart; more seeds may.")
    return ("No other configuration that learned is tied with the best: each is behind it "
            f"by an interval (paired by seed; {together}) that excludes 0.")


def intervals_note(sw: SweepView) -> str:
    """What the intervals are and which variance they hold."""
    from lrlab.configs import scope

    over = scope(sw.runs)
    recorded = recorded_split_seeds(sw.manifest.get("config") or {})
    split = recorded[0] if len(recorded) == 1 else None
    fixed = (f"the split is fixed (split_seed {split}), so they leave out how much a "
             f"different split would move the numbers" if split is not None else
             "the split is fixed, so they leave out how much a different split would move "
             "the numbers")
    held = ("seeds and splits: each run had its own initialisation, batch order and split"
            if over == "seeds and splits" else f"seeds only; {fixed}")
    one = (" With one seed per configuration only the axis effects, paired over the grid's "
           "other settings, have intervals; --seeds 3 gives every number one."
           if sw.seeds < 2 else "")
    return ("Intervals are 95% intervals of the mean: a percentile bootstrap widened "
            "for small samples to keep its 95% with 2 to 5 seeds. Comparisons are paired "
            f"by seed{' and split' if over == 'seeds and splits' else ''}: runs with the same "
            f"seed share initialisation and batch order. They hold the variance of "
            f"{held}.{one}{SPLIT_ADVICE if over != 'seeds and splits' else ''}")


SPLIT_ADVICE = (" --split-seeds 3 repeats every configuration on 3 train/val/test splits, "
                "so the intervals hold the split's variance too.")


def effects(sw: SweepView) -> list[str]:
    """What each axis does, in words (:func:`lrlab.configs.effect_lines`)."""
    from lrlab.configs import effect_lines

    return effect_lines(sw.effects)


def settings(sw: SweepView) -> list[tuple[str, str]]:
    """The sweep's settings as (name, value) rows: grid axes, split, thresholds ..."""
    cfg = sw.manifest.get("config") or {}
    rows = []
    grid = cfg.get("grid") or {}
    for axis in sw.axes:
        vals = grid.get(axis) or sw.values(axis)
        rows.append((axis, ", ".join(fmt(v, "lr") if isinstance(v, float) else str(v)
                                     for v in vals)))
    for key in ("split", "split_seed", "executor", "eval_batch_size", "compile", "amp"):
        if key in cfg:
            rows.append((key, str(cfg[key])))
    sizes = sw.manifest.get("split_sizes") or {}
    for ds, s in sizes.items():
        rows.append((f"{ds} sizes", ", ".join(f"{k} {v}" for k, v in s.items())))
    rows.append(("thresholds", ", ".join(f"{k}={v:g}" for k, v in sw.thresholds.items())))
    return rows


def environment(sw: SweepView) -> list[tuple[str, str]]:
    """Device, versions, command line, times and plugins from the manifest."""
    m = sw.manifest
    rows = []
    dev = m.get("device") or {}
    if dev:
        rows.append(("device", " ".join(str(dev.get(k, "")) for k in ("type", "name")).strip()
                     + (f" ({dev['torch_threads']} threads)" if dev.get("torch_threads") else "")))
    if m.get("command_line"):
        rows.append(("command line", str(m["command_line"])))
    versions = m.get("versions") or {}
    if versions:
        rows.append(("versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    for key in ("started", "finished"):
        if m.get(key):
            rows.append((key, str(m[key])))
    if m.get("wall_s") is not None:
        rows.append(("wall time", f"{float(m['wall_s']):.1f} s"))
    plugins = [p.get("name", "?") for p in m.get("plugins") or [] if isinstance(p, dict)]
    if plugins:
        rows.append(("plugins", ", ".join(plugins)))
    return rows


# -- flagged runs and hints ---------------------------------------------------------------


def no_best(sw: SweepView) -> str:
    """Why no configuration is named best (:func:`lrlab.configs.no_best_reason`)."""
    from lrlab.configs import no_best_reason

    return no_best_reason(sw.configs)


def command(row: dict[str, Any], **flags: str) -> str:
    """``lrlab sweep --model mlp --augment none --lr 0.01,0.03 --epochs 30``: the run's
    configuration with ``flags`` changed, the next sweep to run (values shell-quoted)."""
    axes = {"dataset": row.get("dataset"), "model": row.get("model"),
            "loss": row.get("loss"), "optimizer": row.get("optimizer"),
            "schedule": row.get("schedule"), "augment": row.get("augment"),
            "stopper": row.get("stopper"), "lr": fmt(row.get("lr"), "lr"),
            "epochs": fmt(row.get("epochs"), "int")}
    axes.update(flags)
    from lrlab.settings import SWEEP

    parts = ["lrlab sweep"]
    for name, value in axes.items():
        # the run's own values, less those the default sweep has anyway
        default = name not in ("dataset", "model", "lr", "epochs") and \
            str(value) == SWEEP[name].shown_default()
        if value is None or value == "" or value == "—" or (name not in flags and default):
            continue
        parts.append(f"--{name.replace('_', '-')} {shlex.quote(str(value))}")
    return " ".join(parts)


def _lrs(*values: float) -> str:
    """``0.01,0.03``: distinct learning rates, rounded to two significant digits."""
    out = []
    for v in values:
        text = fmt(float(f"{v:.2g}"), "lr")
        if text not in out:
            out.append(text)
    return ",".join(out)


def hint(row: dict[str, Any], registry: Any = None) -> str:
    """One line: the cause, the cure, and the next command; never against the run.

    ``registry`` (the sweep's components) lets a cure that changes the model use the
    model's own parameters (``width``, ``channels``, ``dropout``)."""
    verdict, lr, best_lr = row["verdict"], row["lr"], row.get("best_lr", math.nan)
    cause = str(row.get("cause") or "")
    ran = int(row["epochs_run"]) if row["epochs_run"] == row["epochs_run"] else 0
    known = isinstance(best_lr, float) and math.isfinite(best_lr)
    best = f" (lr {fmt(best_lr, 'lr')} did best)" if known and best_lr != lr else ""
    lower = _lrs(best_lr) if known and best_lr < lr else _lrs(lr / 10)
    schedule = str(row.get("schedule", "") or "")
    onecycle = schedule.startswith("onecycle")
    nxt = "; next: "
    if verdict == "error":
        return "the run raised an error: fix it and re-run the sweep (finished runs are kept)"
    if verdict == "diverged":
        return (f"diverged at lr {fmt(lr, 'lr')} in epoch {blowup_epoch(row)} ({blowup(row)}): the LR is "
                f"too large: lower the LR by a decade{best}{nxt}{command(row, lr=lower)}")
    if verdict == "unstable":
        what = {"spikes": "mini-batch losses spiked", "rising": "the training loss rose back",
                "collapse": "validation accuracy fell back towards chance"}.get(cause,
                                                                                "unstable")
        if onecycle:  # it already warms up: only a lower rate is left to try
            return (f"{what} at lr {fmt(lr, 'lr')} even with a warm-up ({schedule}): the LR is "
                    f"too large to learn steadily; lower the LR{best}"
                    f"{nxt}{command(row, lr=_lrs(lr / 10, lr / 3), schedule=schedule)}")
        return (f"{what} at lr {fmt(lr, 'lr')}: the LR is too large to learn steadily; "
                f"lower the LR{best} or warm up (--schedule onecycle)"
                f"{nxt}{command(row, lr=_lrs(lr / 10, lr / 3), schedule=f'{schedule},onecycle' if schedule else 'onecycle')}")
    if verdict == "underfit":
        epochs = int(row["epochs"]) if row.get("epochs") == row.get("epochs") and \
            row.get("epochs") else ran
        if cause == "still_improving":
            more = max(2 * epochs, epochs + 1)
            return (f"val loss still falling after {ran} epochs: train longer "
                    f"(--epochs {more}){nxt}{command(row, epochs=str(more))}")
        head = (f"train acc {fmt(row['best_train_acc'], 'acc')} after {ran} epochs at lr "
                f"{fmt(lr, 'lr')}: barely moved from chance")
        if known and lr > best_lr:
            return (f"{head}, at a rate too high to learn: lower the LR{best}"
                    f"{nxt}{command(row, lr=_lrs(best_lr))}")
        if known and lr < best_lr:
            return f"{head}: raise the LR{best}{nxt}{command(row, lr=_lrs(best_lr))}"
        if known:  # the best rate already: more capacity, not another rate
            bigger = _bigger(row, registry)
            if bigger is None:  # a plugin's model: lrlab cannot say how to grow it
                return (f"{head}, at the best LR: use a model with more capacity than "
                        f"{row.get('model')}{nxt}lrlab list model (each model's parameters)")
            return (f"{head}, at the best LR: use a bigger model"
                    f"{nxt}{command(row, model=bigger)}")
        return (f"{head}: raise the LR or use a bigger model"
                f"{nxt}{command(row, lr=_lrs(lr * 3, lr * 10))}")
    if verdict == "overfit":
        plain = str(row.get("augment", "none")) in ("none", "")
        regularized = None if plain else _regularized(row, registry)
        cure = "augment" if plain else "regularize more (dropout, weight decay)" \
            if regularized else "regularize more (weight decay, a smaller model)"
        fix = command(row, augment="none,noise") if plain else \
            command(row, model=regularized) if regularized else \
            f"lrlab list model (the parameters of {row.get('model')})"
        gap = fmt(row.get("tested_gap_acc", row["gap_acc"]), "acc")
        rule = "GL" if cause == "gl" else "gap"
        restored = int(row.get("restored_epoch") or 0) > 0
        if restored:  # the stopper already stopped and restored: stopping earlier is moot
            return (f"overfit even at the epoch early stopping kept ({int(row['restored_epoch'])}, "
                    f"gap {gap}, by {rule}): {'augment or regularize' if plain else cure}"
                    f"{nxt}{fix}")
        no_stopper = str(row.get("stopper", "")) in ("none", "")
        b = int(row["best_epoch"]) if row["best_epoch"] == row["best_epoch"] else 0
        if cause in ("gl", "") and 0 < b < ran:
            stop = command(row, stopper="patience(patience=5,restore_best=True)")
            return (f"val loss bottomed at epoch {b} of {ran}: "
                    f"{'stop earlier (early stopping)' if no_stopper else 'stop earlier'} or "
                    f"{cure}{nxt}{stop if no_stopper else fix}")
        return f"train-val acc gap {gap} after {ran} epochs: {cure}{nxt}{fix}"
    return ""


def _spec_params(spec_text: str, kind: str, registry: Any) -> tuple[Any, dict[str, Any]]:
    """The component ``spec_text`` and the parameters its factory takes (``{}`` when the
    registry is not at hand or does not know it)."""
    from lrlab.registry import parse_spec

    try:
        spec = parse_spec(spec_text, kind)
    except Exception:
        return None, {}
    if registry is None:
        return spec, {}
    try:
        return spec, dict(registry.get(kind, spec.name).params)
    except Exception:
        return spec, {}


def _with(spec: Any, **params: Any) -> str:
    """``spec`` with ``params`` set, keeping its other parameters."""
    merged = {**spec.kwargs, **params}
    inner = ",".join(f"{k}={v}" for k, v in merged.items())
    return f"{spec.name}({inner})" if inner else spec.name


def _bigger(row: dict[str, Any], registry: Any = None) -> str | None:
    """A model with more capacity than the run's (a wider MLP, a CNN, more channels), when
    the model takes a width or channels; None when lrlab cannot say how to grow it."""
    model = str(row.get("model") or "mlp")
    spec, params = _spec_params(model, "model", registry)
    if spec is None:
        return None
    if spec.name == "linear":
        return "mlp"
    names = set(params) or {"mlp": {"width"}, "cnn": {"channels"}}.get(spec.name, set())
    for key, default, floor in (("width", 128, 512), ("channels", 32, 64)):
        if key in names:
            now = spec.kwargs.get(key) or (params[key].default if key in params else default)
            now = now if isinstance(now, (int, float)) and not isinstance(now, bool) else default
            wider = _with(spec, **{key: max(2 * int(now), floor)})
            return f"{wider},cnn" if spec.name == "mlp" else wider
    return None


def _regularized(row: dict[str, Any], registry: Any = None) -> str | None:
    """The run's model with dropout, when the model takes a dropout (its other parameters
    kept); None when it does not."""
    spec, params = _spec_params(str(row.get("model") or "mlp"), "model", registry)
    if spec is None:
        return None
    if "dropout" in params or (not params and spec.name in ("mlp", "cnn")):
        return _with(spec, dropout=0.3)
    return None


def _peak_epochs(history: pd.DataFrame) -> pd.Series:
    """run_id -> the epoch of its largest mini-batch loss (the first, on ties)."""
    if history.empty or "max_batch_loss" not in history:
        return pd.Series(dtype=float)
    h = history[["run_id", "epoch", "max_batch_loss"]].reset_index(drop=True)
    h["_v"] = h["max_batch_loss"].astype(float).fillna(-math.inf)
    return h.loc[h.groupby("run_id")["_v"].idxmax()].set_index("run_id")["epoch"]


def blowup_epoch(row: dict[str, Any]) -> int:
    """The epoch a diverged run blew up: its largest mini-batch loss's when that is what
    blew up, else the last it trained (a run that blew up in epoch 1 may have gone on)."""
    peak, train = row.get("peak_loss", math.nan), row["train_loss"]
    epoch = row.get("peak_epoch", math.nan)
    if isinstance(peak, float) and math.isfinite(peak) and not (train >= peak) and \
            isinstance(epoch, float) and math.isfinite(epoch) and epoch >= 1:
        return int(epoch)
    ran = row.get("epochs_run")
    return int(ran) if ran == ran and ran is not None else 0


def blowup(row: dict[str, Any]) -> str:
    """The loss that shows a run diverged: its largest mini-batch loss when that is what
    blew up (the epoch's clean loss may look tame), else its training loss."""
    peak, train = row.get("peak_loss", math.nan), row["train_loss"]
    if isinstance(peak, float) and math.isfinite(peak) and not (train >= peak):
        return f"a mini-batch loss reached {fmt(peak)}"
    return f"train loss {fmt(train)}"


def flagged(sw: SweepView) -> list[dict[str, Any]]:
    """Every overfit / diverged / underfit / error run with its evidence and a hint."""
    runs = sw.runs[sw.runs["verdict"].isin(FLAGGED)].copy()
    runs["_order"] = runs["verdict"].map(FLAGGED.index)
    # overfit runs by how much (largest gap first), the others by learning rate
    runs["_key"] = runs["lr"].where(runs["verdict"] != "overfit", -runs["tested_gap_acc"])
    out = []
    for row in runs.sort_values(["_order", "_key"], kind="stable").to_dict("records"):
        diverged = row["verdict"] == "diverged"
        out.append({
            "verdict": row["verdict"], "run_id": row["run_id"], "config": row["config"],
            "lr": fmt(row["lr"], "lr"), "gap_acc": fmt(row["tested_gap_acc"], "gap"),
            "gl": fmt(row["tested_gl"], "pct"),
            "epochs": f"{fmt(row['best_epoch'], 'int')} / {fmt(row['epochs_run'], 'int')}"
                      + (f" of {fmt(row['epochs'], 'int')}" if _num(row.get("epochs")) != ""
                         else ""),
            "train_acc": fmt(row["tested_train_acc"], "acc"),
            "val_acc": fmt(row["tested_val_acc"], "acc"),
            "diverged_at": (f"epoch {blowup_epoch(row)}: {blowup(row)}"
                            if diverged else ""),
            "flags": row["flags"], "hint": hint(row, sw.registry),
        })
    return out


def next_steps(sw: SweepView, best: dict[str, Any] | None) -> list[str]:
    """A few sentences: what worked, what to avoid, what to run next."""
    runs, out = sw.runs, []
    if best is not None:
        seeds = f", {best['repeats']}" if best["seeds"] > 1 else ""
        out.append(f"Best by validation: {best['label']} — val acc {best['val_acc']}{seeds}, "
                   f"test acc {best['test_acc']} (every run was scored on the test split; "
                   f"only this one, chosen on validation, is shown).")
        if best["tied"]:
            out.append(f"{len(best['tied'])} configuration(s) are tied with the best at "
                       f"this number of seeds: more seeds (--seeds) may tell them apart.")
    else:
        out.append(f"No configuration learned: {no_best(sw)}.")
    unstable = runs[runs["verdict"] == "unstable"]
    if not unstable.empty:
        out.append(f"{len(unstable)} run(s) unstable, the smallest at lr "
                   f"{fmt(unstable['lr'].min(), 'lr')}: the LR is too large to learn steadily; "
                   f"keep below it or warm up.")
    div = runs[runs["verdict"] == "diverged"]
    if not div.empty:
        low = div["lr"].min()
        out.append(f"{len(div)} run(s) diverged, the smallest at lr {fmt(low, 'lr')}: "
                   f"keep the LR below it, or warm up (schedule onecycle).")
    under = runs[runs["verdict"] == "underfit"]
    if not under.empty and best is not None:
        small = under[under["lr"] < best["lr"]]
        if not small.empty:
            out.append(f"{len(small)} run(s) underfit at lr ≤ {fmt(small['lr'].max(), 'lr')}: "
                       f"too small to learn in the epochs given; raise the LR or train longer.")
    longer = runs[(runs["verdict"] == "underfit") & (runs["cause"] == "still_improving")]
    if not longer.empty:
        out.append(f"{len(longer)} run(s) were still improving when they ended: train them "
                   f"longer (--epochs).")
    over = runs[runs["verdict"] == "overfit"]
    if not over.empty:
        gl = int((over["cause"] == "gl").sum()) if "cause" in over else 0
        text = (f"{len(over)} run(s) overfit ({gl} by GL, the val loss risen past its "
                f"minimum; {len(over) - gl} by the train-val gap).")
        effect = augment_effect(sw)
        if effect:
            text += " " + effect
        elif "augment" in sw.fixed and sw.fixed["augment"] in ("none", ""):
            text += " Try augmentation (--augment none,noise)."
        if "stopper" in sw.fixed and sw.fixed["stopper"] in ("none", ""):
            text += " Try early stopping (--stopper none,patience)."
        out.append(text)
    if best is not None and runs["lr"].nunique() > 1:
        lr = best["lr"]
        zoom = ",".join(fmt(float(f"{lr * f:.2g}"), "lr") for f in (1 / 3, 1, 3))
        out.append(f"Zoom in around the best LR next: --lr {zoom}.")
    return out


def augment_effect(sw: SweepView) -> str:
    """``Augmentation 'noise' vs 'none': gap −6.5 points [−7.0, −6.0] ...`` (the paired
    effect of :func:`lrlab.configs.axis_effects`, runs that learned only)."""
    if "augment" not in sw.varying:
        return ""
    from lrlab.configs import effect_lines

    lines = [line for line in effect_lines(sw.effects[sw.effects["axis"] == "augment"])
             if "no pair" not in line]
    return ("Augmentation, paired on the other axes and the seed: "
            + "; ".join(line.removeprefix("augment ") for line in lines) + ".") if lines else ""


# -- all runs -----------------------------------------------------------------------------

RUN_COLUMNS = [  # column, header, kind, tooltip
    ("epochs_run", "epochs run", "int", "epochs trained (fewer than planned when stopped)"),
    ("best_epoch", "best epoch", "int", "epoch of the lowest validation loss"),
    ("train_loss", "train loss", "loss", "final training loss (clean evaluation)"),
    ("val_loss", "val loss", "loss", "final validation loss"),
    ("best_val_loss", "best val loss", "loss", "lowest validation loss"),
    ("train_acc", "train acc", "acc", "final training accuracy"),
    ("tested_val_acc", "val acc", "acc", "validation accuracy of the tested weights"),
    ("best_val_acc", "best val acc", "acc", "validation accuracy at the best epoch"),
    ("gap_acc", "gap (acc)", "gap", "train acc − val acc at the last epoch"),
    ("gap_loss", "gap (loss)", "gap", "val loss − train loss at the last epoch"),
    ("gl", "GL", "pct", "Prechelt's generalization loss at the last epoch"),
    ("wall_s", "time (s)", "s", "wall-clock seconds"),
]


def all_runs(sw: SweepView) -> tuple[list[tuple[str, str, bool]], list[dict[str, Any]]]:
    """Columns (header, tooltip, numeric) and rows of every run, best validation first."""
    runs = sw.runs.sort_values(["tested_val_acc", "tested_val_loss"], ascending=[False, True],
                               na_position="last", kind="stable")
    axes = [a for a in sw.varying] + [a for a in REPEATS if a in sw.runs
                                      and sw.runs[a].nunique() > 1]
    extra = [("stopped_by", "stopped by", "", "why training ended early")] \
        if (runs["stopped_by"] != "").any() else []
    extra += [("restored_epoch", "restored", "int", "epoch whose weights were tested")] \
        if (runs["restored_epoch"].fillna(0) > 0).any() else []
    cols = [("run id", "the run's id", False), ("verdict", "ok / overfit / underfit / "
                                               "diverged / error", False)]
    cols += [(a, "grid axis", a in NUMERIC) for a in axes]
    spec = RUN_COLUMNS[:2] + extra + RUN_COLUMNS[2:]
    cols += [(h, tip, kind != "") for _, h, kind, tip in spec]
    rows = []
    for r in runs.to_dict("records"):
        cells = [(r["run_id"], None), (r["verdict"], None)]
        cells += [(fmt(r[a], "lr") if a == "lr" else str(r[a]),
                   _num(r[a]) if a in ("lr", "epochs", "batch_size", "seed") else None)
                  for a in axes]
        cells += [(fmt(r[c], kind) if kind else (r[c] or "—"), _num(r[c]) if kind else None)
                  for c, _, kind, _ in spec]
        rows.append({"verdict": r["verdict"], "cells": cells})
    return cols, rows


def _num(x: Any) -> float | str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    return "" if math.isnan(v) else v


# -- per configuration --------------------------------------------------------------------


def per_config(sw: SweepView) -> list[dict[str, Any]]:
    """One row per configuration (:func:`lrlab.configs.config_table`) when any has more
    than one seed, else ``[]``: its verdict, the count of each verdict, the mean and 95%
    interval over its seeds of the kept weights' val acc, gap and GL (sd as a tooltip), and
    its val acc against the best's, paired by seed."""
    from lrlab.configs import mean_text

    table = sw.configs
    if table.empty or "n" not in table or not (table["n"] > 1).any():
        return []

    def sd(r: dict[str, Any], name: str, kind: str) -> str:
        v = r.get(f"{name}_std", math.nan)
        return f"sd {fmt(v, kind)}" if isinstance(v, float) and math.isfinite(v) else ""

    label = {cid: cfg for cid, cfg in zip(sw.runs["run_id"].map(_config_id),
                                          sw.runs["config"], strict=True)}
    rows = []
    for r in table.sort_values("val_acc_mean", ascending=False, na_position="last",
                               kind="stable").to_dict("records"):
        vs = str(r.get("vs_best") or "")
        rows.append({"config": label.get(r["config_id"], r["config_id"]),
                     "config_id": r["config_id"], "verdict": r["verdict"],
                     "cause": str(r.get("cause") or ""), "n": int(r["n"]),
                     "counts": [int(r.get(f"n_{v}", 0) or 0) for v in VERDICTS],
                     "val_acc": mean_text(r, "val_acc"), "val_acc_sd": sd(r, "val_acc", "acc"),
                     "gap": mean_text(r, "gap_acc"), "gap_sd": sd(r, "gap_acc", "acc"),
                     "gl": mean_text(r, "gl", 1), "gl_sd": sd(r, "gl", "pct"),
                     "vs_best": vs, "vs_best_diff": _points(r["vs_best_mean"], r["vs_best_lo"],
                                                            r["vs_best_hi"])
                     if vs in ("tied", "behind", "ahead") else "",
                     "sort": _num(r.get("val_acc_mean"))})
    return rows


def _config_id(run_id: str) -> str:
    from lrlab.configs import config_id

    return config_id(run_id)
