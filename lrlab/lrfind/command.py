"""``lrlab lr-find``: the Typer command, and the library call behind it."""

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from lrlab.cli_support import PluginOpt, handle_errors
from lrlab.config import DEFAULTS, check_name
from lrlab.errors import UsageError
from lrlab.lrfind.auto import AUTO_COUNT, AUTO_RULE, grid_around
from lrlab.lrfind.finder import LRFindResult, lr_find

COMPONENTS = ("model", "dataset", "optimizer", "loss")


def run_lr_find(*, name: str | None = None, out: str | None = None, cwd: Path | None = None,
                extra_plugins: Sequence[str] = (), plugins: Sequence[Any] = (),
                save: bool = True, model: str | None = None, dataset: str | None = None,
                optimizer: str | None = None, loss: str | None = None,
                batch_size: int | None = None, data_root: str | None = None,
                device: str | None = None, download: bool | None = None,
                **test: Any) -> LRFindResult:
    """Run the range test with the sweep's defaults and ``[tool.lrlab]`` filling in what is
    not given, and write its files to ``<out>/<name>/``.

    :param name: the results folder's name (default ``lrfind-<dataset>-<model>``).
    :param test: the range test's own settings: ``start_lr end_lr steps mode diverge
        beta seeds`` (see :func:`lrlab.lrfind.lr_find`).
    """
    from lrlab.config import build_config

    cwd = Path(cwd) if cwd else Path.cwd()
    given = {"model": model, "dataset": dataset, "optimizer": optimizer, "loss": loss,
             "batch_size": batch_size, "data_root": data_root, "device": device,
             "download": download or None, "out": out}
    config = build_config(None, given, cwd=cwd)
    picked = {}
    for axis in (*COMPONENTS, "batch_size"):
        values = config.grid[axis]
        if len(values) > 1:
            listed = ", ".join(str(v) for v in values)
            raise UsageError(f"lr-find tests one {axis} at a time; got {len(values)}: {listed}")
        picked[axis] = values[0]
    if name is None:
        name = f"lrfind-{picked['dataset'].name}-{picked['model'].name}"
    check_name(name)
    result = lr_find(**picked, **test, device=config.device, data_root=config.data_root,
                     download=config.download, split=config.split,
                     split_seed=config.split_seed, plugins=plugins,
                     extra_plugins=[*config.plugins, *extra_plugins], local_dirs=[cwd])
    if save:
        result.save(Path(config.out) / name)
    return result


@handle_errors
def lr_find_command(
    model: Annotated[str | None, typer.Option(
        help="Model to test, e.g. mlp or 'mlp(width=64)'.", show_default="mlp")] = None,
    dataset: Annotated[str | None, typer.Option(
        help="Dataset to train on (its train split only).", show_default="digits")] = None,
    optimizer: Annotated[str | None, typer.Option(
        help="Optimizer whose learning rate is tested.", show_default="sgd(momentum=0.9)")] = None,
    loss: Annotated[str | None, typer.Option(
        help="Loss function.", show_default="cross_entropy")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Mini-batch size.", show_default="32")] = None,
    start_lr: Annotated[float, typer.Option(help="Learning rate of the first step.")] = 1e-7,
    end_lr: Annotated[float, typer.Option(help="Learning rate of the last step.")] = 10.0,
    steps: Annotated[int, typer.Option(help="Training steps (one mini-batch each).")] = 100,
    mode: Annotated[str, typer.Option(
        help="How the rate grows: exp (evenly on a log scale) or linear.")] = "exp",
    diverge: Annotated[float, typer.Option(
        help="Stop once the smoothed loss exceeds this multiple of its best.")] = 4.0,
    smooth: Annotated[float, typer.Option(
        help="Smoothing of the loss: the factor of its exponential moving average "
             "(0 = none).")] = 0.98,
    seeds: Annotated[int, typer.Option(
        help="Repeat the test with this many seeds; each suggestion is their median, "
             "with its spread.")] = 1,
    name: Annotated[str | None, typer.Option(
        help="Results folder name under --out.", show_default="lrfind-<dataset>-<model>")] = None,
    out: Annotated[str | None, typer.Option(
        help="Folder that holds results.", show_default="reports")] = None,
    data_root: Annotated[str | None, typer.Option(
        help="Folder of downloadable datasets.", show_default="data")] = None,
    download: Annotated[bool, typer.Option(
        help="Download a missing dataset (MNIST, CIFAR-10).")] = False,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu or cuda.", show_default="auto")] = None,
    plugin: PluginOpt = None,
) -> None:
    """Learning-rate range test: train while the learning rate grows, and suggest one.

    Records the loss of every step, smooths it, and stops once it diverges.
    Prints three suggestions: steepest descent, minimum / 10 and valley.
    Writes lrfind.png (figure), lrfind.parquet (curve), lrfind.json to <out>/<name>/.
    """
    result = run_lr_find(model=model, dataset=dataset, optimizer=optimizer, loss=loss,
                         batch_size=batch_size, start_lr=start_lr, end_lr=end_lr,
                         steps=steps, mode=mode, diverge=diverge, beta=smooth, seeds=seeds,
                         name=name, out=out, data_root=data_root, download=download,
                         device=device, extra_plugins=plugin or ())
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
                  if str(s[key]) != str(DEFAULTS[key][0])]
        if s["batch_size"] != DEFAULTS["batch_size"][0]:
            flags.append(f"--batch-size {s['batch_size']}")
        typer.echo(f"next: lrlab sweep {' '.join(flags)} --lr auto   ({AUTO_COUNT} rates "
                   f"from {grid[0]:g} to {grid[-1]:g}, around {centre.label})")
