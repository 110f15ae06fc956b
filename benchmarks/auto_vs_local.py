"""Where vectorizing a group starts to pay: small sweeps, local vs vectorized vs auto.

For each grid (a group of ``W`` runs, one per learning rate, trained ``E`` epochs), the
same sweep runs on the ``local``, the ``vectorized`` and the ``auto`` executor, in one
warm process (torch, the plugins and ``torch._dynamo`` already imported, so only what
differs between executors is timed), in alternation, and the minimum of the reps is
kept. What is timed is ``lrlab.run_sweep(report=False)``: preparing, training, verdicts
and tables; all but the training are the same work on every executor.

``spared`` is what ``auto`` weighs (``lrlab.builtin.vectorized``): the single-run steps
the group spares (its members' steps less its own), against ``needed``: MIN_SPARED_STEPS,
scaled up for a step of more than COMPUTE_BOUND multiply-adds. ``auto`` should be about
as fast as the faster of the other two.

    python benchmarks/auto_vs_local.py            # digits, mlp; 2 reps
    python benchmarks/auto_vs_local.py --big      # also a larger model and dataset
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import lrlab
from lrlab.builtin.vectorized import COMPUTE_BOUND, MIN_SPARED_STEPS, spared_steps

EXECUTORS = ("local", "vectorized", "auto")


def lrs(width: int) -> list[float]:
    """``width`` learning rates spread from 1e-3 to 0.3 (all train, none diverges)."""
    return [round(1e-3 * 300 ** (i / max(1, width - 1)), 6) for i in range(width)]


def sweep(out: Path, executor: str, width: int, epochs: int, **kw) -> tuple[float, list]:
    """CPU seconds of one sweep (on one thread: on a shared machine the CPU time of a
    single-threaded process is what its wall time would be on an idle one)."""
    start = time.process_time()
    result = lrlab.run_sweep(out=out, executor=executor, fresh=True, report=False,
                             lr=lrs(width), epochs=epochs, augment="none", threads=1, **kw)
    return time.process_time() - start, result.notes


def big_dataset(folder: Path) -> str:
    """A synthetic 16x16 dataset of 12,000 samples, 10 classes (saved with torch.save)."""
    path = folder / "big.pt"
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 1, 16, 16, generator=gen)
    y = torch.randint(0, 10, (12_000,), generator=gen)
    x = centres[y] + 2.0 * torch.randn(12_000, 1, 16, 16, generator=gen)
    torch.save({"x": x, "y": y}, path)
    return f"tensors(path={path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also a larger model and dataset")
    parser.add_argument("--only-big", action="store_true", help="only the larger ones")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lrlab-auto-"))
    cases = [] if args.only_big else [("digits", "mlp", w, e) for w in (2, 4, 8, 16)
                                      for e in (1, 3, 5)]
    if args.big or args.only_big:
        data = big_dataset(work)
        cases += [("digits", "mlp(width=512)", w, e) for w in (2, 4, 8) for e in (1, 3)]
        cases += [("digits", "cnn(channels=16)", w, e) for w in (2, 8) for e in (1, 3)]
        cases += [(data, "mlp(width=256)", w, e) for w in (2, 4, 8) for e in (1, 2)]
    sweep(work / "warm", "vectorized", 2, 1)  # imports, dynamo, first-call costs
    sweep(work / "warm", "local", 2, 1)
    print(f"MIN_SPARED_STEPS = {MIN_SPARED_STEPS}, COMPUTE_BOUND = {COMPUTE_BOUND:,}; "
          f"CPU seconds on one thread, min of {args.reps} reps\n")
    print(f"{'dataset':>10s} {'model':>16s} {'W':>3s} {'E':>2s} {'spared':>7s} {'needed':>7s} "
          f"{'local':>6s} {'vect':>6s} {'auto':>6s}  auto chose  faster")
    for dataset, model, width, epochs in cases:
        best: dict[str, float] = {}
        notes: list = []
        for rep in range(args.reps):
            order = EXECUTORS if rep % 2 == 0 else EXECUTORS[::-1]
            for ex in order:
                wall, got = sweep(work / ex, ex, width, epochs, dataset=dataset, model=model)
                best[ex] = min(best.get(ex, wall), wall)
                if ex == "auto":
                    notes = got
        chose = "vectorized" if any("trained vectorized" in n for n in notes) else "local"
        faster = "vect" if best["vectorized"] < best["local"] else "local"
        name = dataset if len(dataset) <= 10 else "synthetic"
        spared, needed = weighed(dataset, model, width, epochs)
        print(f"{name:>10s} {model:>16s} {width:3d} {epochs:2d} {spared:7d} {needed:7d} "
              f"{best['local']:6.2f} {best['vectorized']:6.2f} {best['auto']:6.2f}  "
              f"{chose:10s}  {faster}", flush=True)


def weighed(dataset: str, model: str, width: int, epochs: int) -> tuple[int, int]:
    """The steps the group of these runs spares, and how many auto needs (on CPU)."""
    import math

    from lrlab.config import build_config, expand
    from lrlab.executors import Context
    from lrlab.plugins import load_plugins
    from lrlab.vectorized.stacked import forward_macs

    config = build_config(overrides={"dataset": dataset, "model": model, "lr": lrs(width),
                                     "epochs": epochs, "augment": "none"})
    host = load_plugins([])
    runs = expand(config)
    data = Context(config, host, torch.device("cpu")).data(runs[0])
    batch = runs[0].batch_size
    net = host.registry.build("model", runs[0].model, data.input_shape, data.num_classes)
    step_size = forward_macs(net, data.train[0][:batch])
    needed = MIN_SPARED_STEPS * max(1.0, step_size / COMPUTE_BOUND)
    return spared_steps(runs, math.ceil(len(data.train[1]) / batch)), round(needed)


if __name__ == "__main__":
    main()
