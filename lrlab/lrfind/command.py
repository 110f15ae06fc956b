"""``lrlab lr-find``: the Typer command, and the library call behind it.

The command's options are the declarations of :data:`lrlab.lrfind.settings.COMMAND`
(the range test's own, and what it shares with a sweep), so their help and defaults are
written once. This module has no ``from __future__ import annotations``: Typer reads the
annotations of ``lr_find_command`` as objects.
"""

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from lrlab.cli_support import PluginOpt, handle_errors, with_setting_options
from lrlab.lrfind.settings import COMMAND, ONE_VALUE, RANGE_TEST, default, one_value, read
from lrlab.settings import check_name


def run_lr_find(*, name: str | None = None, out: str | None = None, cwd: Path | None = None,
                extra_plugins: Sequence[str] = (), plugins: Sequence[Any] = (),
                save: bool = True, model: str | None = None, dataset: str | None = None,
                optimizer: str | None = None, loss: str | None = None,
                batch_size: int | str | None = None, data_root: str | None = None,
                device: str | None = None, download: bool | None = None,
                **test: Any) -> "LRFindResult":  # noqa: F821 (imported when it runs)
    """Run the range test with the sweep's defaults and ``[tool.lrlab]`` filling in what is
    not given, and write its files to ``<out>/<name>/``.

    :param name: the results folder's name (default ``lrfind-<dataset>-<model>``).
    :param test: the range test's own settings: ``start_lr end_lr steps mode diverge
        smooth seeds`` (see :func:`lrlab.lrfind.lr_find`); None: the default.
    """
    from lrlab.config import build_config
    from lrlab.lrfind.finder import lr_find

    cwd = Path(cwd) if cwd else Path.cwd()
    name = read(RANGE_TEST["name"], name)
    given = {"model": model, "dataset": dataset, "optimizer": optimizer, "loss": loss,
             "batch_size": batch_size, "data_root": data_root, "device": device,
             "download": download, "out": out}
    config = build_config(None, given, cwd=cwd)
    picked = {axis: one_value(axis, config.grid[axis]) for axis in ONE_VALUE}
    if name is None:
        parts = (picked["dataset"].name, picked["model"].name)  # a model may be a path
        name = "lrfind-" + "-".join(re.sub(r"[^A-Za-z0-9_.\-]+", "_", p).strip("_.")
                                    for p in parts)
    check_name(name)
    test = {k: v for k, v in test.items() if v is not None}
    result = lr_find(**picked, **test, device=config.device, data_root=config.data_root,
                     download=config.download, split=config.split,
                     split_seed=config.grid["split_seed"][0], plugins=plugins,
                     extra_plugins=[*config.plugins, *extra_plugins], local_dirs=[cwd])
    if save:
        result.save(Path(config.out) / name)
    return result


@handle_errors
@with_setting_options(COMMAND)
def lr_find_command(plugin: PluginOpt = None, **options: Any) -> None:
    """Learning-rate range test: train while the learning rate grows, and suggest one.

    Records the loss of every step, smooths it, and stops once it diverges.
    Prints three suggestions: steepest descent, minimum / 10 and valley.
    Writes lrfind.png (figure), lrfind.parquet (curve), lrfind.json to <out>/<name>/.
    """
    from lrlab.lrfind.auto import AUTO_COUNT, AUTO_RULE, grid_around

    result = run_lr_find(**options, extra_plugins=plugin or ())
    typer.echo(result.table())
    folder = result.files["summary"].parent
    typer.echo(f"\nwrote {folder}/: lrfind.png (figure), lrfind.parquet (curve), "
               f"lrfind.json (suggestions)")
    centre = result.suggestions[AUTO_RULE]
    if centre.values:
        s = result.settings
        grid = grid_around(centre.lr, AUTO_COUNT)
        # the sweep that repeats this test: every setting it depends on, defaults left out
        flags = [f"--model '{s['model']}'", f"--optimizer '{s['optimizer']}'"]
        flags += [f"--{key.replace('_', '-')} '{s[key]}'" for key in ("dataset", "loss")
                  if str(s[key]) != str(default(key))]
        if s["batch_size"] != default("batch_size"):
            flags.append(f"--batch-size {s['batch_size']}")
        typer.echo(f"next: lrlab sweep {' '.join(flags)} --lr auto   ({AUTO_COUNT} rates "
                   f"from {grid[0]:g} to {grid[-1]:g}, around {centre.label})")
