"""``lr_find``: the range test on registered components, its result, and its files.

Components are built through the registry exactly as the engine builds them, so a
plugin's model, loss or optimizer works here with no extra code. The data is the
sweep's stratified split, and the test trains on its train part only (a streamed
dataset's too, read by DataLoader workers).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lrlab.data import Split, check_finite, stratified_split
from lrlab.errors import UsageError
from lrlab.lrfind.core import (
    CURVE_COLUMNS,
    RULES,
    Suggestion,
    diverged_step,
    range_test,
    suggestions_of,
)
from lrlab.lrfind.settings import (
    SHARED,
    default,
    one_value,
    read,
    read_test,
    seed_list,
    smooth_or_beta,
)
from lrlab.registry import Spec
from lrlab.settings import SWEEP

CURVE_FILE = "lrfind.parquet"
SUMMARY_FILE = "lrfind.json"
PLOT_FILE = "lrfind.png"


@dataclass
class LRFindResult:
    """What a range test hands back.

    ``curve``: one row per seed and step (``seed step lr loss smoothed``);
    ``suggestions``: rule -> :class:`Suggestion`; ``settings``: what was tested and how;
    ``diverged_at``: seed -> the step where the loss diverged (None: it never did);
    ``auto``: set when a sweep's ``--lr auto`` built its grid from this result.
    """

    curve: pd.DataFrame
    suggestions: dict[str, Suggestion]
    settings: dict[str, Any]
    diverged_at: dict[int, int | None]
    wall_s: float = 0.0
    auto: dict[str, Any] | None = None
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """A hash of the settings: the same key means the same test."""
        return settings_key(self.settings)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "key": self.key,
                "suggestions": {r: s.to_dict() for r, s in self.suggestions.items()},
                "diverged_at": {str(k): v for k, v in self.diverged_at.items()},
                "wall_s": round(self.wall_s, 3), "auto": self.auto}

    def table(self) -> str:
        """The suggestions side by side, each rule's explanation, and how the test ended."""
        s = self.settings
        n = len(s["seeds"])
        lines = [f"LR range test: {s['model']} on {s['dataset']}, {s['optimizer']}, "
                 f"{s['loss']}, batch {s['batch_size']}; {s['steps']} steps "
                 f"{s['start_lr']:g} -> {s['end_lr']:g} ({s['mode']}), "
                 f"{n} seed{'s' if n != 1 else ''}, {self.wall_s:.1f}s", ""]
        header = f"  {'rule':<14}{'suggested lr':>13}"
        if n > 1:
            header += f"   {'range over seeds':<22}{'spread':>7}"
        lines.append(header)
        for rule in RULES:
            sug = self.suggestions[rule]
            row = f"  {sug.label:<14}{_g(sug.lr):>13}"
            if n > 1:
                row += f"   {_g(sug.low) + ' .. ' + _g(sug.high):<22}{_x(sug.spread):>7}"
            lines.append(row)
        lines.append("")
        for rule in RULES:
            lines.append(f"  {self.suggestions[rule].label + ':':<14}"
                         f"{self.suggestions[rule].explanation}")
        lines.append("")
        for seed, step in self.diverged_at.items():
            where = "" if n == 1 else f"seed {seed}: "
            if step is None:
                lines.append(f"  {where}the loss did not diverge up to {s['end_lr']:g}; "
                             f"a larger --end-lr shows the edge")
            else:
                lr = self.curve.query("seed == @seed and step == @step")["lr"].iloc[0]
                lines.append(f"  {where}the loss diverged at step {step} (lr {lr:.3g}): "
                             f"past {s['diverge']:g}x its best smoothed value")
        return "\n".join(lines)

    def save(self, folder: str | Path, *, plot: bool = True) -> dict[str, Path]:
        """Write ``lrfind.parquet`` (the curve), ``lrfind.json`` (settings, suggestions)
        and ``lrfind.png`` (the figure) into ``folder``, each atomically."""
        from lrlab.results import atomic_write_parquet, atomic_write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        files = {"curve": folder / CURVE_FILE, "summary": folder / SUMMARY_FILE}
        atomic_write_parquet(self.curve, files["curve"])
        atomic_write_text(files["summary"], json.dumps(_plain(self.to_dict()), indent=2,
                                                       allow_nan=False, default=str))
        if plot:  # a sweep's grid (``--lr auto``) is marked on the figure
            from lrlab.lrfind.plot import save_plot

            files["plot"] = save_plot(self, folder / PLOT_FILE, (self.auto or {}).get("lrs"))
        self.files = files
        return files

    @classmethod
    def load(cls, folder: str | Path) -> LRFindResult:
        """Read a result back from the files :meth:`save` wrote."""
        folder = Path(folder)
        if not (folder / SUMMARY_FILE).is_file():
            raise UsageError(f"{folder} holds no LR finder result ({SUMMARY_FILE} is missing)")
        info = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
        curve = pd.read_parquet(folder / CURVE_FILE)
        suggestions = {rule: Suggestion(rule, {int(k): math.nan if v is None else float(v)
                                               for k, v in
                                               info["suggestions"][rule]["per_seed"].items()})
                       for rule in RULES}
        diverged = {int(k): v for k, v in info["diverged_at"].items()}
        settings = dict(info["settings"])
        if "beta" in settings and "smooth" not in settings:  # written before the rename
            settings["smooth"] = settings.pop("beta")
        return cls(curve, suggestions, settings, diverged, info.get("wall_s", 0.0),
                   info.get("auto"))


def _g(value: float) -> str:
    return f"{value:.3g}" if math.isfinite(value) else "none"


def _x(value: float) -> str:
    return f"x{value:.2g}" if math.isfinite(value) else ""


def _plain(value: Any) -> Any:
    """``value`` with NaN and infinities as None: standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def settings_key(settings: dict[str, Any]) -> str:
    payload = {k: v for k, v in settings.items() if k != "device_name"}
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def lr_find(model: str | Spec = default("model"),
            dataset: str | Spec = default("dataset"),
            optimizer: str | Spec = default("optimizer"),
            loss: str | Spec = default("loss"), *,
            batch_size: int = default("batch_size"),
            start_lr: float = default("start_lr"),
            end_lr: float = default("end_lr"),
            steps: int = default("steps"),
            mode: str = default("mode"),
            diverge: float = default("diverge"),
            smooth: float = default("smooth"),
            seeds: int | Sequence[int] = default("seeds"),
            device: str | torch.device = default("device"),
            data_root: str = default("data_root"),
            download: bool = default("download"),
            split: tuple[float, float, float] = default("split"),
            split_seed: int = default("split_seed"),
            plugins: Iterable[Any] = (), extra_plugins: Sequence[str] = (),
            local_dirs: Iterable[Path] = (), host: Any = None,
            data: Split | None = None, beta: float | None = None) -> LRFindResult:
    """Run the learning-rate range test on registered components.

    Every setting's default and check is its declaration's: the test's own in
    :data:`lrlab.lrfind.settings.RANGE_TEST`, the rest in :data:`lrlab.settings.SWEEP`
    (a bad value is one line of :class:`UsageError`).

    :param model, dataset, optimizer, loss: components as written on the command line
        (``"mlp(width=64)"``) or :class:`Spec` objects; one of each.
    :param start_lr, end_lr, steps, mode: the rates tried: ``steps`` rates from
        ``start_lr`` to ``end_lr``, spaced evenly in log (``exp``) or linearly.
    :param diverge: stop once the smoothed loss exceeds this multiple of its best.
    :param smooth: the smoothing factor of the loss's exponential moving average
        (``beta``: its old name, still accepted).
    :param seeds: a number N (seeds 0..N-1) or the seeds themselves; each seed builds
        a fresh model and draws its own batches, and each rule reports its median.
    :param host: an already loaded :class:`lrlab.plugins.Plugins` (else plugins are
        loaded from ``plugins``, ``extra_plugins`` and ``local_dirs``).
    :param data: an already split dataset on the device (else it is loaded and split
        with ``split`` and ``split_seed``, as a sweep splits it).
    """
    from lrlab.engine import resolve_device
    from lrlab.plugins import load_plugins

    test = read_test({"start_lr": start_lr, "end_lr": end_lr, "steps": steps, "mode": mode,
                      "diverge": diverge, "smooth": smooth_or_beta(smooth, beta)})
    start_lr, end_lr, steps = test["start_lr"], test["end_lr"], test["steps"]
    mode, diverge, smooth = test["mode"], test["diverge"], test["smooth"]
    batch_size = one_value("batch_size", batch_size)
    seed_numbers = seed_list(seeds)
    specs = {kind: one_value(kind, value) for kind, value in
             (("model", model), ("dataset", dataset), ("optimizer", optimizer), ("loss", loss))}
    if not isinstance(device, torch.device):
        device = read(SHARED["device"], device)
    data_root = read(SHARED["data_root"], data_root)
    download = read(SHARED["download"], download)
    split = read(SWEEP["split"], split)
    split_seeds = read(SWEEP["split_seed"], split_seed)  # a sweep's axis; one split here
    if len(split_seeds) != 1:
        raise UsageError(f"the range test trains on one split; got {len(split_seeds)} split "
                         f"seeds")
    split_seed = split_seeds[0]
    if host is None:
        host = load_plugins(list(extra_plugins), plugins=plugins, local_dirs=local_dirs)
    registry = host.registry
    for kind, spec in specs.items():
        registry.check(kind, spec)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if data is None:
        spec = specs["dataset"]
        if download and "download" in registry.check("dataset", spec).params:
            spec = Spec(spec.name, tuple(sorted({**spec.kwargs, "download": True}.items())))
        raw = registry.build("dataset", spec, data_root)
        check_finite(raw, str(specs["dataset"]))
        data = stratified_split(raw, split, split_seed).to(dev)
    x, y = data.train if not data.streaming else (data.train, None)

    start = time.perf_counter()
    curves, diverged_at = [], {}
    for seed in seed_numbers:
        torch.manual_seed(seed)  # the model's initialization, as the engine seeds it
        net = registry.build("model", specs["model"], data.input_shape,
                             data.num_classes).to(dev)
        loss_fn = registry.build("loss", specs["loss"], data.num_classes)
        opt = registry.build("optimizer", specs["optimizer"], net.parameters(), start_lr)
        curve = range_test(net, opt, loss_fn, x, y, start_lr=start_lr, end_lr=end_lr,
                           steps=steps, mode=mode, batch_size=batch_size, diverge=diverge,
                           smooth=smooth, seed=seed)
        diverged_at[seed] = diverged_step(curve, diverge)
        curves.append(curve.assign(seed=seed))
    wall = time.perf_counter() - start
    curve = pd.concat(curves, ignore_index=True)[CURVE_COLUMNS]
    curve = curve.astype({"seed": "int64", "step": "int64"})
    settings = {k: str(v) for k, v in specs.items()}
    settings.update(batch_size=batch_size, start_lr=start_lr, end_lr=end_lr, steps=steps,
                    mode=mode, diverge=diverge, smooth=smooth, seeds=seed_numbers,
                    split=list(split), split_seed=split_seed,
                    device=dev.type, train_size=data.sizes()[0])
    return LRFindResult(curve, suggestions_of(curve, steps), settings, diverged_at, wall)
