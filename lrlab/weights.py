"""The weights back: what ``--save`` writes, and :func:`load_model`, which reads it.

``--save best|all|none`` (the setting ``save``, default ``best``) decides which runs'
weights a sweep keeps in ``<sweep folder>/weights/<run_id>.pt``: the weights each run's
test split was scored on (the restored epoch's when its stopper restored, else the last
epoch's), so a loaded model's validation accuracy on the sweep's own split is the runs
table's ``tested_val_acc``.

- Every run is written the moment it is stored (``best`` too), whole or not at all
  (:func:`lrlab.storage.atomic_write`): a killed sweep keeps what finished, and a resumed
  one keeps the weights of the runs it skips.
- When a sweep ends with every run of its grid stored, ``best`` prunes the folder to the
  best configuration's runs (one per seed, chosen on validation as
  :func:`lrlab.configs.best_configuration` chooses, with the sweep's ``near_chance``
  threshold: :func:`best_runs`; none when no configuration learned), and removes the
  folder when nothing is left in it. ``best`` and ``all`` also remove the files of runs
  the table no longer holds. An interrupted sweep, or one whose grid is not all stored
  yet (``-k``), prunes nothing else. A run pruned is gone for good: a later sweep that
  makes another configuration best (more seeds, other thresholds) finds no weights for
  it (``--save all`` keeps every run's; ``--fresh`` retrains).
- ``none`` writes nothing and removes nothing; ``--fresh`` removes the folder whatever
  ``save`` says (the runs it held are gone).
- The file is named by the run id; an id that is no plain file name or is over 150
  characters is cut and a digest of it appended (:func:`weights_file`).

A file is a ``torch.save``d dict of tensors, strings, numbers, lists and dicts only (read
with ``weights_only=True``)::

    {"format": 1, "run_id": ..., "model": "mlp(width=64)",   # the spec, as the table has it
     "model_name": "mlp", "model_params": {"width": 64},     # the same, exactly
     "model_file": "",            # an import path's file, absolute ("" for other models)
     "model_object": False,       # given to run_sweep as an object (rebuilt from model=)
     "input_shape": [64], "num_classes": 10, "classes": ["0", ...],
     "key": ..., "tested": {"epoch": 12, "val_loss": 0.1, "val_acc": 0.97},
     "state_dict": {...}}

``key`` and ``tested`` tie the file to the stored run: a run trained again since under
``--save none`` leaves a file that :func:`load_model` refuses. A ``state_dict`` holding
something else (a module's extra state of another type) is written, but
``weights_only=True`` may refuse to read it back: :func:`load_model` says so in one line.

:func:`load_model` rebuilds the model through the registry of the plugins the sweep
loaded (:meth:`lrlab.recipe.PluginRecipe.load` of the manifest's recipe), loads the
weights and hands it back in eval mode.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lrlab.errors import UsageError

WEIGHTS_DIR = "weights"
FORMAT = 1
SAVE_CHOICES = ("best", "all", "none")
# a run id longer than this is cut, and a digest of it appended, to name its file
_MAX_NAME = 150


def weights_dir(folder: str | Path) -> Path:
    """The folder of a sweep's saved weights."""
    return Path(folder) / WEIGHTS_DIR


def weights_file(folder: str | Path, run_id: str) -> Path:
    """Where the weights of ``run_id`` are saved: ``weights/<run_id>.pt`` (an id that is
    no plain file name, or a very long one, is shortened and a digest of it appended)."""
    name = run_id
    if len(name) > _MAX_NAME or not re.fullmatch(r"[^/\\\0]+", name) or name.startswith("."):
        digest = hashlib.sha1(run_id.encode()).hexdigest()[:12]
        name = re.sub(r"[/\\\0]", "_", run_id)[:_MAX_NAME].lstrip(".") + "-" + digest
    return weights_dir(folder) / f"{name}.pt"


def saved_weights(folder: str | Path, run_ids: Iterable[str]) -> dict[str, Path]:
    """run id -> its weights file, for those of ``run_ids`` that have one."""
    found = {rid: weights_file(folder, rid) for rid in run_ids}
    return {rid: path for rid, path in found.items() if path.is_file()}


def _plain(value: Any) -> bool:
    """Whether ``torch.load(weights_only=True)`` reads ``value`` back."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def payload(run: Any, state_dict: dict[str, Any], *, input_shape: Iterable[int],
            classes: Iterable[str], key: str = "", tested: dict[str, Any] | None = None,
            model_object: bool = False) -> dict[str, Any]:
    """What a weights file holds (see the module's docstring)."""
    spec = run.model
    params = dict(spec.params)
    model_file = ""
    where, sep, _ = spec.name.rpartition(":")
    if sep and where.endswith(".py"):  # relative to the folder the sweep ran in
        model_file = str(Path(where).resolve())
    return {"format": FORMAT, "run_id": run.run_id, "model": str(spec),
            "model_name": spec.name, "model_params": params if _plain(params) else None,
            "model_file": model_file, "model_object": bool(model_object),
            "input_shape": [int(n) for n in input_shape],
            "num_classes": len(list(classes)), "classes": [str(c) for c in classes],
            "key": key, "tested": dict(tested or {}), "state_dict": dict(state_dict)}


def save_weights(path: str | Path, run: Any, state_dict: dict[str, Any], *,
                 input_shape: Iterable[int], classes: Iterable[str], key: str = "",
                 tested: dict[str, Any] | None = None, model_object: bool = False) -> Path:
    """Write one run's weights file at ``path``, whole or not at all."""
    import torch

    from lrlab.storage import atomic_write

    path = Path(path)
    data = payload(run, state_dict, input_shape=input_shape, classes=list(classes),
                   key=key, tested=tested, model_object=model_object)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: torch.save(data, fh))
    return path


def tested_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a stored run that tie a weights file to it."""
    return {"epoch": int(summary.get("tested_epoch") or 0),
            "val_loss": float(summary.get("tested_val_loss", math.nan)),
            "val_acc": float(summary.get("tested_val_acc", math.nan))}


def remove_weights(folder: str | Path) -> None:
    """Remove a sweep's weights folder (``--fresh``)."""
    shutil.rmtree(weights_dir(folder), ignore_errors=True)


def prune_weights(folder: str | Path, keep: Iterable[str]) -> None:
    """Remove every weights file but those of the run ids ``keep`` (and any temporary
    file a killed write left); the folder too, when nothing is left in it."""
    where = weights_dir(folder)
    if not where.is_dir():
        return
    kept = {weights_file(folder, rid).name for rid in keep}
    for path in where.iterdir():
        if path.is_file() and (path.name.endswith(".tmp") or
                               (path.suffix == ".pt" and path.name not in kept)):
            with contextlib.suppress(OSError):
                path.unlink()
    with contextlib.suppress(OSError):  # not empty: kept
        where.rmdir()


def best_runs(runs: Any, near_chance: float | None = None, configs: Any = None) -> Any:
    """The runs (one per seed) of the best configuration, chosen on validation as
    :func:`lrlab.configs.best_configuration` chooses it, with the sweep's ``near_chance``
    threshold (None: lrlab's own) or from its per-configuration table ``configs``; None
    when no configuration learned."""
    from lrlab.configs import best_config, best_configuration, config_id, config_table

    if runs is None or runs.empty:
        return None
    if configs is None and near_chance is None:
        return best_configuration(runs)
    if configs is None:
        configs = config_table(runs, near_chance, intervals=False)
    best = best_config(configs)
    if best is None:
        return None
    return runs[[config_id(str(r)) == best["config_id"] for r in runs["run_id"]]]


# -- loading -----------------------------------------------------------------------------


def load_model(folder: str | Path, run_id: str | None = None, *, plugins: Any = None,
               model: Any = None, device: Any = "cpu") -> Any:
    """The model of a stored run with the weights its test split was scored on, in eval
    mode: what ``--save best|all`` kept in ``<folder>/weights/``.

    :param folder: a sweep's results folder (``reports/digits``).
    :param run_id: the run; None: the best configuration's first seed (its lowest), the
        configuration chosen on validation as :func:`lrlab.configs.best_configuration`
        chooses it (what ``--save best`` keeps).
    :param plugins: the :class:`lrlab.plugins.Plugins` host to build the model with, or
        plugin objects to load besides the sweep's; the model is built through the
        registry of the plugins the sweep loaded, as its manifest records them
        (:class:`lrlab.recipe.PluginRecipe`).
    :param model: the model class or factory, for a model that was given to
        ``run_sweep`` as an object (a notebook's class): built with the run's parameters.
    :param device: where the model is put (``"cpu"``).
    :raises lrlab.UsageError: one line: the folder holds no results, no run has that id
        (the closest is named), no configuration learned, or no weights were saved for it.
    """
    import torch

    from lrlab.results import load_results

    folder = Path(folder)
    runs, _, manifest = load_results(folder)
    config = manifest.get("config") or {}
    save = config.get("save", "best")
    near_chance = (config.get("thresholds") or {}).get("near_chance")
    row = _the_run(folder, runs, run_id, near_chance)
    run_id = str(row["run_id"])
    path = weights_file(folder, run_id)
    if not path.is_file():
        why = ("it errored" if row.get("verdict") == "error" and not row.get("tested_epoch")
               else "the sweep ran with --save none" if save == "none"
               else "--save best keeps the best configuration's runs only; --save all keeps "
                    "every run's" if save == "best"
               else "it was stored by a sweep that saved no weights for it")
        raise UsageError(f"no weights saved for run '{run_id}' in {weights_dir(folder)}/ "
                         f"({why})")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UsageError(f"{path} is not a readable weights file ({first[:160]})") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT or \
            not isinstance(saved.get("state_dict"), dict):
        raise UsageError(f"{path} is not an lrlab weights file of format {FORMAT}")
    if not _same_training(saved, row):
        raise UsageError(f"{path} holds the weights of an earlier training of run "
                         f"'{run_id}' (it was trained again since, under --save none); "
                         f"train it again with --save best or all")
    host = _host(manifest, plugins)
    spec = _spec(saved, model)
    with torch.random.fork_rng(devices=[]):  # building draws; the caller's stream is kept
        try:
            net = host.registry.build("model", spec, tuple(saved["input_shape"]),
                                      int(saved["num_classes"]))
        except UsageError as exc:
            if saved.get("model_object") and model is None:
                raise UsageError(f"model '{saved['model_name']}' of run '{run_id}' was given "
                                 f"to run_sweep as an object: pass it again, "
                                 f"lrlab.load_model(folder, model={saved['model_name']})") \
                    from None
            raise UsageError(f"cannot rebuild the model of run '{run_id}': {exc}") from None
    try:
        net.load_state_dict(saved["state_dict"])
    except RuntimeError as exc:
        first = (str(exc).strip().splitlines() or ["they differ"])[-1].strip()
        raise UsageError(f"the weights of run '{run_id}' do not fit model '{saved['model']}' "
                         f"as it is built now (its code changed since?): {first[:160]}") \
            from None
    return net.to(device).eval()


def _the_run(folder: Path, runs: Any, run_id: str | None,
             near_chance: float | None) -> dict[str, Any]:
    """The stored row of ``run_id`` (None: the best configuration's first seed)."""
    from lrlab.registry import closest

    if runs.empty:
        raise UsageError(f"{folder} holds no finished runs")
    if run_id is None:
        best = best_runs(runs, near_chance)
        if best is None or best.empty:
            raise UsageError(f"no configuration of {folder} learned, so none is best; name "
                             f"a run: lrlab.load_model(folder, run_id)")
        ordered = best.sort_values("seed", kind="stable") if "seed" in best else best
        return ordered.iloc[0].to_dict()
    ids = [str(r) for r in runs["run_id"]]
    if run_id not in ids:
        near = closest(run_id, ids)
        hint = f"; did you mean '{near}'?" if near else f" ({len(ids)} runs, e.g. '{ids[0]}')"
        raise UsageError(f"{folder} has no run '{run_id}'{hint}")
    return runs[runs["run_id"] == run_id].iloc[0].to_dict()


def _same_training(saved: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether a weights file is of the stored training of its run (its key and the
    numbers of its tested epoch match the table's)."""
    if saved.get("run_id") != row.get("run_id"):
        return False
    if saved.get("key") and row.get("key") and saved["key"] != row["key"]:
        return False
    tested = saved.get("tested") or {}
    for name, column in (("val_loss", "tested_val_loss"), ("val_acc", "tested_val_acc")):
        if name in tested and column in row:
            a, b = float(tested[name]), float(row[column])
            if not (a == b or (math.isnan(a) and math.isnan(b))):
                return False
    return True


def _host(manifest: dict[str, Any], plugins: Any) -> Any:
    """The plugins to build with: a host as given, else the sweep's (and ``plugins``)."""
    if plugins is not None and hasattr(plugins, "registry"):
        return plugins
    from lrlab.recipe import PluginRecipe

    extra = [] if plugins is None else list(plugins)
    return PluginRecipe.from_manifest(manifest).load(plugins=extra)


def _spec(saved: dict[str, Any], model: Any) -> Any:
    """The model's spec as the run had it; an import path's file found where it was."""
    from lrlab.registry import Spec, parse_spec

    params = saved.get("model_params")
    if not isinstance(params, dict):
        params = parse_spec(saved["model"], "model").kwargs
    params = tuple(sorted(params.items()))
    if model is not None:
        given = parse_spec(model, "model")
        return Spec(given.name, given.params or params, given.source)
    name = saved["model_name"]
    where, sep, attr = name.rpartition(":")
    file = saved.get("model_file") or ""
    if sep and where.endswith(".py") and not Path(where).is_file() and file and \
            Path(file).is_file():
        name = f"{file}:{attr}"  # the sweep ran in another folder
    return Spec(name, params)
