"""Running a sweep: the Python API behind ``lrlab sweep``.

    >>> import lrlab
    >>> result = lrlab.run_sweep(lr=[1e-3, 1e-2], epochs=5)
    >>> result.runs[["run_id", "verdict", "val_acc"]]

Everything is checked before anything is written: component names and parameters,
numbers, data roots. Then each run is trained, judged (``lrlab_diagnose``) and stored
the moment it finishes.
"""

from __future__ import annotations

import pickle
import platform
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lrlab.config import (
    COMPONENT_AXES,
    Run,
    SweepConfig,
    build_config,
    expand,
    run_key,
)
from lrlab.configs import config_table
from lrlab.engine import resolve_device
from lrlab.errors import PluginError, UsageError
from lrlab.executors import Context
from lrlab.keywords import keyword_matcher
from lrlab.plugins import PluginInfo, Plugins, load_plugins
from lrlab.recipe import recipe_of
from lrlab.results import ResultStore, RunResult
from lrlab.storage import FolderLock, check_writable
from lrlab.verdicts import FAILING, VERDICTS, Flag, summary_line, verdict_of
from lrlab.weights import (
    best_runs,
    prune_weights,
    remove_weights,
    save_weights,
    saved_weights,
    tested_of,
    weights_file,
)


@dataclass
class SweepResult:
    """What a sweep hands back: its tables and where they are stored."""

    config: SweepConfig
    runs: pd.DataFrame
    history: pd.DataFrame
    folder: Path
    wall_s: float
    ran: list[str] = field(default_factory=list)  # run ids trained now
    skipped: list[str] = field(default_factory=list)  # run ids resumed from disk
    notes: list[str] = field(default_factory=list)
    configs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per configuration
    collected: list[str] = field(default_factory=list)  # run ids, under collect_only
    # run id -> its saved weights (--save best|all; what lrlab.load_model loads)
    weights: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> Counter:
        return Counter(self.runs["verdict"]) if not self.runs.empty else Counter()

    def summary_line(self) -> str:
        """``12 runs: 7 ok, 3 overfit, 1 underfit, 1 diverged in 14.2s``."""
        verdicts = list(self.runs["verdict"]) if not self.runs.empty else []
        return summary_line(verdicts, self.wall_s)

    def _repr_html_(self) -> str:
        """The sweep in a notebook: summary line, flagged runs, LR figure (lrlab.notebook)."""
        from lrlab.notebook import sweep_html

        return sweep_html(self.runs, self.configs, name=self.config.name, folder=self.folder,
                          history=self.history, wall_s=self.wall_s)

    def __repr__(self) -> str:
        return f"<SweepResult {self.folder}: {self.summary_line()}>"

    @property
    def failed(self) -> bool:
        """True when a run is overfit, unstable, diverged or error (what ``--strict``
        fails on)."""
        return any(self.counts.get(v) for v in (*FAILING, "error"))


@dataclass
class Prepared:
    """A sweep checked and ready to run: nothing has been written yet."""

    config: SweepConfig
    plugins: Plugins
    runs: list[Run]  # the runs to train: the grid, less what -k deselected
    context: Context
    grid_keys: set[str] = field(default_factory=set)  # resume keys of the whole grid


def prepare(config: SweepConfig, *, extra_plugins: Iterable[str] = (),
            plugins: Iterable[Any] = (), keyword: str | None = None,
            local_dirs: Iterable[Path] = (), load_data: bool = True,
            fresh: bool = False) -> Prepared:
    """Load plugins, check every component, expand the grid and load the data; build the
    components of the runs there are to train (none when a finished sweep runs again;
    all under ``fresh``)."""
    check_folder(config.out_dir)
    host = load_plugins([*config.plugins, *extra_plugins], plugins=plugins,
                        local_dirs=local_dirs)
    host.call("lrlab_configure", config=config)
    registry = host.registry
    for axis, kind in COMPONENT_AXES.items():
        for value in config.grid[axis]:
            for spec in value if axis == "augment" else (value,):
                if axis == "augment" and spec.name == "none" and spec.params:
                    raise UsageError("augmentation 'none' takes no parameters")
                registry.check(kind, spec)
                if kind == "stopper":
                    registry.build(kind, spec)  # cheap: bad parameter values fail here
    registry.check("executor", config.executor)
    # models named by an import path and objects given to the API were registered on the
    # fly: named as plugins in the manifest, and their code hashed into the code record
    for comp in registry.adhoc():
        info = host.info.setdefault(comp.plugin, PluginInfo(comp.plugin, comp.plugin))
        if f"{comp.kind}:{comp.name}" not in info.registered:
            info.registered.append(f"{comp.kind}:{comp.name}")
    device = resolve_device(config.device)
    context = Context(config, host, device)
    if any(isinstance(v, str) for v in config.grid["lr"]):
        from lrlab.lrfind import resolve_auto_lr

        config.grid["lr"] = resolve_auto_lr(config, context)
    runs = expand(config)
    grid_keys = {run_key(r, config) for r in runs}
    if keyword:
        match = keyword_matcher(keyword)
        runs = [r for r in runs if match(r.run_id)]
        if not runs:
            raise UsageError(f"-k {keyword!r} selects none of the runs")
    if load_data:
        for run in runs:
            context.data(run)  # a missing data root fails here, before anything is written
        dry_build(runs if fresh else to_train(runs, context, grid_keys), context)
    return Prepared(config, host, runs, context, grid_keys)


def check_folder(folder: Path) -> None:
    """That ``folder`` can be created and written, before anything is (one line, exit 2)."""
    check_writable(folder)


def to_train(runs: list[Run], context: Context, grid_keys: set[str]) -> list[Run]:
    """The runs a resumed sweep will train, as :meth:`ResultStore.resume` will decide
    (read only: nothing is written): a sweep run again over finished results trains, so
    builds, nothing. All of them when the folder holds another grid (execute says so)."""
    store = ResultStore(context.config.out_dir)
    if not store.exists():
        return runs
    selected = {context.run_key(r): r for r in runs}
    codes = {key: context.code_record(run) for key, run in selected.items()}
    try:
        todo, _, _ = store.resume(selected, grid_keys or set(selected), codes=codes)
    except UsageError:
        return runs
    return todo


def dry_build(runs: list[Run], context: Context) -> None:
    """Build each distinct component once, on the CPU, before anything is written: a bad
    parameter value (``mlp(width=-3)``, ``sgd(momentum=-1)``) or a factory returning the
    wrong kind of object is then one line and exit 2, not a sweep of failed runs. Any other
    exception is left for the run to raise (it becomes an ``error`` run)."""
    registry = context.registry
    built: set[tuple[Any, ...]] = set()

    def attempt(kind: str, spec: Any, *args: Any) -> Any:
        try:
            return registry.build(kind, spec, *args)
        except (UsageError, PluginError):
            raise
        except (ValueError, TypeError) as exc:  # what torch says of a bad argument
            raise UsageError(f"{kind} '{spec}': {type(exc).__name__}: {exc}") from None
        except Exception:  # anything else fails the run itself, traceback kept
            return None

    for run in runs:
        data = context.data(run)
        shape, classes = data.input_shape, data.num_classes
        for kind, spec, args in (("model", run.model, (shape, classes)),
                                 ("loss", run.loss, (classes,)),
                                 *(("augmentation", a, (shape,)) for a in run.augment
                                   if a.name != "none")):
            if (kind, str(spec), args) not in built:
                built.add((kind, str(spec), args))
                attempt(kind, spec, *args)
        key = ("optimizer", str(run.optimizer), str(run.schedule), run.epochs)
        if key not in built:
            built.add(key)
            optimizer = attempt("optimizer", run.optimizer,
                                [torch.nn.Parameter(torch.zeros(1))], run.lr)
            if optimizer is not None:
                attempt("schedule", run.schedule, optimizer, 1, run.epochs)


def manifest(config: SweepConfig, host: Plugins, context: Context) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    try:  # its version without importing it (torchvision's import costs seconds)
        torchvision_version = version("torchvision")
    except PackageNotFoundError:  # pragma: no cover - torchvision is a dependency
        torchvision_version = ""
    from lrlab.version import __version__

    device = context.device
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine()
    sizes = context.split_sizes()
    return {
        "name": config.name,
        "folder": str(config.out_dir),
        "config": config.to_dict(),
        "command_line": config.command_line,
        "device": {"type": device.type, "name": device_name,
                   "torch_threads": torch.get_num_threads()},
        "versions": {"lrlab": __version__, "python": platform.python_version(),
                     "torch": torch.__version__, "torchvision": torchvision_version,
                     "pandas": pd.__version__, "platform": platform.platform()},
        "plugins": [{"name": i.name, "source": i.source, "version": i.version,
                     "where": str(i.where)} for i in host.info.values()],
        "plugin_recipe": recipe_of(host).to_dict(),
        "split_sizes": sizes,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def judge(host: Plugins, result: RunResult, thresholds: dict[str, float],
          history: pd.DataFrame) -> None:
    """Ask every ``lrlab_diagnose`` for flags; the verdict is the most severe one."""
    summary = result.summary
    if summary["error"]:
        summary["verdict"], summary["cause"] = "error", ""
        summary["flags"] = _last_line(summary["error"])
        return
    try:
        answers = host.call("lrlab_diagnose", run=result.run, history=history,
                            summary=dict(summary), thresholds=dict(thresholds))
    except PluginError as exc:
        plugin_failed(summary, exc)
        return
    flags: list[Flag] = [f for answer in answers for f in (answer or [])]
    for f in flags:
        if f.verdict is not None and f.verdict not in VERDICTS:
            summary["verdict"], summary["cause"] = "error", ""
            summary["flags"] = f"a diagnosis gave the unknown verdict {f.verdict!r}"
            return
    summary["verdict"], summary["cause"], summary["flags"] = verdict_of(flags)


def plugin_failed(summary: dict[str, Any], exc: PluginError) -> None:
    """A plugin's hook raised while a run was judged or ended: the run is an ``error``, its
    flag naming the plugin and the hook (:meth:`Plugins.call` says which), the traceback
    kept; the sweep goes on."""
    summary.update(verdict="error", cause="", flags=str(exc), error=traceback.format_exc())


def rejudge(store: ResultStore, host: Plugins, config: SweepConfig,
            runs: dict[str, Run]) -> None:
    """Judge the stored runs of this grid again: the thresholds or the loaded diagnoses
    may have changed since they were trained (judging is cheap; training is not)."""
    rows = store.runs
    _, history = store.tables()
    by_run = dict(tuple(history.groupby("run_id", sort=False))) if not history.empty else {}
    for row in rows:
        if row["key"] in runs and row["verdict"] != "error":
            mine = by_run.get(row["run_id"], history.iloc[:0]).drop(columns="run_id")
            judge(host, RunResult(runs[row["key"]], row, mine.to_dict("records")),
                  config.thresholds, mine.reset_index(drop=True))
    store.rewrite_runs(rows)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by Ctrl-C (SIGINT) or SIGTERM. What had finished is stored, the
    tables, the per-configuration table and the report say so; ``result`` holds them and
    ``in_flight`` counts the runs that were training (checkpointed at epoch boundaries)."""

    def __init__(self, result: SweepResult, in_flight: int, code: int = 130) -> None:
        super().__init__(f"interrupted: {len(result.runs)} run(s) stored")
        self.result, self.in_flight, self.code = result, in_flight, code


def execute(prepared: Prepared, *, fresh: bool = False, exitfirst: bool = False,
            report: bool = True) -> SweepResult:
    """Train the prepared runs, storing each as it finishes; resume what is stored.

    The sweep folder is locked meanwhile (a second sweep on it is refused). On Ctrl-C or
    SIGTERM the runs that finished are kept and :class:`SweepInterrupted` is raised with
    the tables of what is stored.
    """
    config, host, context = prepared.config, prepared.plugins, prepared.context
    start = time.perf_counter()
    selected = {run_key(r, config): r for r in prepared.runs}  # the runs -k kept
    codes = {key: context.code_record(run) for key, run in selected.items()}
    store = ResultStore(config.out_dir)
    with FolderLock(config.out_dir, config.command_line):
        if fresh and context.checkpoints is not None:
            context.checkpoints.clear()  # starting over: runs in flight start over too
        if fresh:
            remove_weights(config.out_dir)  # the runs they were of are gone too
        todo, skipped, notes = store.resume(selected, prepared.grid_keys or set(selected),
                                            fresh=fresh, codes=codes)
        info = manifest(config, host, context)
        notes = recipe_notes(store.previous_manifest, info) + notes
        store.start(info)
        if skipped:
            rejudge(store, host, config, selected)
        ran: list[str] = []
        try:
            train_all(todo, prepared, store, codes, ran, exitfirst=exitfirst)
        except KeyboardInterrupt as exc:
            notes.append(f"interrupted: {len(ran)} of {len(todo)} run(s) to train finished")
            result = finish(prepared, store, info, start, ran, skipped, notes + context.notes,
                            report=report, interrupted=True)
            raise SweepInterrupted(result, len(todo) - len(ran),
                                   getattr(exc, "code", 130)) from None
        return finish(prepared, store, info, start, ran, skipped, notes + context.notes,
                      report=report)


def train_all(todo: list[Run], prepared: Prepared, store: ResultStore,
              codes: dict[str, str], ran: list[str], *, exitfirst: bool) -> None:
    """Train ``todo`` with the sweep's executor; judge, end and store each run as it
    finishes (its weights written under ``--save best|all``, its checkpoint removed once it
    is stored), its id appended to ``ran``."""
    config, host, context = prepared.config, prepared.plugins, prepared.context
    executor = host.registry.build("executor", config.executor)
    host.call("lrlab_sweep_start", config=config, runs=todo)
    for result in executor.run(todo, context):
        judge(host, result, config.thresholds, pd.DataFrame(result.history))
        try:
            host.call("lrlab_run_end", run=result.run, result=result)
        except PluginError as exc:
            plugin_failed(result.summary, exc)
        key = context.run_key(result.run)
        result.summary["code"] = codes.get(key, "")
        store.add(result)
        if config.save != "none":
            keep_weights(result, context, key)
        checkpoints = getattr(context, "checkpoints", None)
        if checkpoints is not None:  # stored: its checkpoint is not needed any more
            checkpoints.remove(key)
        ran.append(result.run.run_id)
        if exitfirst and result.verdict == "error":
            context.stop_requested = True


def keep_weights(result: RunResult, context: Context, key: str) -> None:
    """Write a stored run's weights to ``weights/<run_id>.pt`` (every run, under ``--save
    best`` too: :func:`finish_weights` prunes); a run without weights (an error) leaves
    no file of an earlier training behind."""
    run = result.run
    path = weights_file(context.config.out_dir, run.run_id)
    if result.weights is None:
        path.unlink(missing_ok=True)
        return
    data = context.data(run)
    try:
        save_weights(path, run, result.weights, input_shape=data.input_shape,
                     classes=data.classes, key=key, tested=tested_of(result.summary),
                     model_object=run.model.source is not None)
    except (pickle.PicklingError, TypeError, AttributeError) as exc:  # odd extra state
        path.unlink(missing_ok=True)
        context.note(f"weights: run {run.run_id} has a state_dict that torch.save cannot "
                     f"write ({type(exc).__name__}: {exc}); its weights are not saved")


def finish_weights(prepared: Prepared, runs: pd.DataFrame, configs: pd.DataFrame, *,
                   interrupted: bool) -> tuple[dict[str, Path], list[str]]:
    """The saved weights of the stored runs, and a note on what is missing. Under ``--save
    best`` a sweep that ends with its whole grid stored keeps only the files of the best
    configuration's runs (``configs``' best, what :func:`lrlab.load_model` loads); ``best``
    and ``all`` remove the files of runs no longer stored. ``none`` removes nothing."""
    config = prepared.config
    folder = config.out_dir
    ids = [str(r) for r in runs["run_id"]] if not runs.empty else []
    if config.save == "none":
        return saved_weights(folder, ids), []
    keep, judged = ids, config.save == "all"
    grid = prepared.grid_keys or {run_key(r, config) for r in prepared.runs}
    complete = not runs.empty and grid <= set(runs["key"])
    if config.save == "best" and complete and not interrupted:
        best = best_runs(runs, configs=configs)
        keep, judged = ([] if best is None else [str(r) for r in best["run_id"]]), True
    prune_weights(folder, keep)
    saved = saved_weights(folder, ids)
    errors = set(runs["run_id"][runs["verdict"] == "error"]) if ids else set()
    missing = [rid for rid in keep if judged and rid not in saved and rid not in errors]
    notes = [f"weights: {len(missing)} run(s) to keep have no saved weights (e.g. "
             f"{missing[0]}): trained under --save none, pruned by an earlier --save best, "
             f"or by an executor that hands none back; --fresh trains them again"] \
        if missing else []
    return saved, notes


def finish(prepared: Prepared, store: ResultStore, info: dict[str, Any], start: float,
           ran: list[str], skipped: list[Run], notes: list[str], *, report: bool,
           interrupted: bool = False) -> SweepResult:
    """The tables of what is stored, the per-configuration table, the manifest's end,
    ``lrlab_sweep_end`` and the report."""
    config, host = prepared.config, prepared.plugins
    runs, history = store.tables(order=[r.run_id for r in prepared.runs])
    configs = config_table(runs, config.thresholds["near_chance"])
    weights, weight_notes = finish_weights(prepared, runs, configs, interrupted=interrupted)
    notes = notes + weight_notes
    if interrupted:
        info["interrupted"] = True
    store.finish(configs, info, wall_s=time.perf_counter() - start, notes=notes)
    if not interrupted:
        host.call("lrlab_sweep_end", config=config, runs=runs, history=history)
    if report and not runs.empty:
        from lrlab.report import write_report

        write_report(config.out_dir, plugins=host)
    return SweepResult(config, runs, history, config.out_dir, time.perf_counter() - start,
                       ran, [r.run_id for r in skipped], notes, configs, weights=weights)


def recipe_notes(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """A note when a resumed sweep loads other plugins than its stored runs were made with."""
    if not before or "plugin_recipe" not in before:
        return []
    old, new = before["plugin_recipe"], now["plugin_recipe"]
    if old == new:
        return []
    changed = [k for k in new if old.get(k) != new[k]]
    return [f"the plugins differ from the stored sweep's ({', '.join(changed)}); the stored "
            f"runs are judged again with the ones loaded now"]


def run_sweep(sweep_file: str | Path | None = None, *, plugins: Iterable[Any] = (),
              extra_plugins: Iterable[str] = (), keyword: str | None = None,
              fresh: bool = False, exitfirst: bool = False, report: bool = True,
              collect_only: bool = False, junit_xml: str | Path | None = None,
              cwd: Path | None = None, command_line: str | None = None,
              **overrides: Any) -> SweepResult:
    """Run a sweep and return its tables: what ``lrlab sweep`` does, from Python.

    :param sweep_file: a TOML sweep file; its folder's ``lrlab_plugins.py`` is loaded
        (without one, the ``lrlab_plugins.py`` of ``cwd``).
    :param plugins: plugin objects to register (modules, classes, instances).
    :param extra_plugins: module names to load, or ``no:NAME`` to block one (``-p``).
    :param keyword: a ``-k`` expression selecting runs by id.
    :param fresh: ignore stored results and start over.
    :param exitfirst: stop after the first run that errors (``-x``).
    :param report: write the HTML report.
    :param collect_only: check everything and list the runs (``result.collected``); train
        and write nothing (``--collect-only``).
    :param junit_xml: also write each run as a JUnit test case to this file.
    :param overrides: any setting of :data:`lrlab.settings.SWEEP`: ``lr=[1e-3, 1e-2]``,
        ``epochs=5``, ``model="cnn"``, ``name="mine"``, ``thresholds={...}`` or
        ``thresholds=["overfit_gl=10"]`` ...
    """
    path = Path(sweep_file) if sweep_file is not None else None
    cwd = Path(cwd) if cwd else Path.cwd()
    if command_line is None:
        command_line = " ".join(sys.argv) if sys.argv else ""
    config = build_config(path, overrides, cwd=cwd, command_line=command_line)
    junit = check_junit_path(junit_xml) if junit_xml is not None and not collect_only \
        else None
    local = [path.parent] if path is not None else [cwd]
    prepared = prepare(config, extra_plugins=extra_plugins, plugins=plugins,
                       keyword=keyword, local_dirs=local, load_data=not collect_only,
                       fresh=fresh)
    if collect_only:
        return SweepResult(config, pd.DataFrame(), pd.DataFrame(), config.out_dir, 0.0,
                           collected=[r.run_id for r in prepared.runs])
    result = execute(prepared, fresh=fresh, exitfirst=exitfirst, report=report)
    if junit is not None:
        from lrlab.junit import write_junit

        write_junit(result, junit)
    return result


def check_junit_path(path: str | Path) -> Path:
    """That a JUnit file can be written at ``path`` (before anything is trained)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--junit-xml {path} is a folder")
    if not path.resolve().parent.is_dir():
        raise UsageError(f"--junit-xml: folder {path.resolve().parent} does not exist")
    return path
