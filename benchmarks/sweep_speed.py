"""How fast does a learning-rate sweep run? Three ways, one process, in alternation.

    python benchmarks/sweep_speed.py                  # digits (5 reps) + MNIST-sized (3 reps)
    python benchmarks/sweep_speed.py --quick          # 1 rep, fewer epochs (a smoke test)
    python benchmarks/sweep_speed.py --device cuda    # on a GPU

The same grid (learning rates x seeds, an MLP, SGD with momentum 0.9) is trained
  (A) the plain PyTorch way: a DataLoader per run, an optimizer per run, one run after
      another; evaluated as much as lrlab evaluates (before training, train + val after
      every epoch, test at the end), in DataLoader batches of twice the training batch
      size as the PyTorch tutorial does;
  (B) by lrlab's local executor (``lrlab.run_sweep(executor="local")``);
  (C) by lrlab's vectorized executor (``executor="vectorized"``).
(B) and (C) are timed end to end through ``run_sweep``: plugin loading, the split,
training, verdicts and writing the result tables (no HTML report); lrlab's stop on
divergence is switched off so every way trains every epoch of every run. Every way is
run once untimed on a small grid first, so one-time costs (imports, lazy initialization)
are paid before the clock starts; then the ways alternate, in a rotating order. On CUDA
the clock is read after ``torch.cuda.synchronize()``. The datasets: scikit-learn's digits (overhead-bound: 8x8
images, batch 32) and an MNIST-sized tensor set generated here (70,000 x 784, 10
classes, from class-conditional Gaussians in a 16-d latent space pushed through a random
projection and a sigmoid, so validation accuracy is meaningful; no download).

Printed: wall time (median over reps), training samples per second, the speed-up over
(A), achieved FLOP/s (forward + backward + evaluation matmul FLOPs of the MLP per second)
next to the dense fp32 matmul throughput this script measures with ``torch.mm`` on the
same device, and each way's mean final validation accuracy (and on CUDA the GPU
utilization, where pynvml is installed). The table is Markdown, ready for
benchmarks/README.md. ``--breakdown`` then runs (C) once more with timers around its
parts and prints where its time goes.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import breakdown
import torch
import torch.nn.functional as F
from breakdown import sync
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lrlab
from lrlab import hookimpl
from lrlab.data import Data, stratified_split

WIDTH, DEPTH = 128, 2  # lrlab's default mlp
SPLIT = (0.6, 0.2, 0.2)


@dataclass
class Grid:
    name: str
    dataset: str
    batch_size: int
    epochs: int
    reps: int = 3  # timed repetitions of each way (the median is reported)


# -- data ---------------------------------------------------------------------------------


@functools.cache
def mnist_sized(n: int = 70_000, seed: int = 0) -> Data:
    """70,000 images of 1x28x28 in 10 classes: learnable, not trivially separable."""
    gen = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 10)[torch.randperm(n, generator=gen)]
    means = torch.randn(10, 16, generator=gen) * 1.1
    z = means[y] + torch.randn(n, 16, generator=gen)
    proj = torch.randn(16, 784, generator=gen) / 4.0
    x = torch.sigmoid(z @ proj + 0.5 * torch.randn(n, 784, generator=gen))
    return Data(x.view(n, 1, 28, 28), y, [str(c) for c in range(10)])


class BenchData:
    """A plugin that lends lrlab the generated dataset (generated once per process)."""

    @hookimpl
    def lrlab_register_datasets(self, register):
        def mnist_sized_factory(root: str) -> Data:
            """70,000 generated 28x28 images in 10 classes (see benchmarks/sweep_speed.py)."""
            return mnist_sized()

        register("mnist-sized", mnist_sized_factory)


def load_split(dataset: str):
    from lrlab.builtin.datasets import digits

    return stratified_split(digits("data") if dataset == "digits" else mnist_sized(), SPLIT, 0)


# -- (A) the plain PyTorch loop -----------------------------------------------------------


def plain_mlp(in_features: int, classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(DEPTH):
        layers += [nn.Linear(in_features, WIDTH), nn.ReLU()]
        in_features = WIDTH
    layers.append(nn.Linear(in_features, classes))
    return nn.Sequential(*layers)


def plain_run(split, lr: float, seed: int, grid: Grid, device: torch.device) -> float:
    """One run as the tutorials write it; returns the final validation accuracy."""
    torch.manual_seed(seed)
    model = plain_mlp(math.prod(split.input_shape), split.num_classes).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    train_dl = DataLoader(TensorDataset(*split.train), batch_size=grid.batch_size,
                          shuffle=True)
    eval_dls = [DataLoader(TensorDataset(*part), batch_size=2 * grid.batch_size)
                for part in (split.train, split.val)]
    test_dl = DataLoader(TensorDataset(*split.test), batch_size=2 * grid.batch_size)

    def evaluate(dl):
        model.eval()
        loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in dl:
                xb, yb = xb.to(device), yb.to(device)
                out = model(xb)
                loss += F.cross_entropy(out, yb, reduction="sum").item()
                correct += (out.argmax(1) == yb).sum().item()
                n += len(yb)
        return loss / n, correct / n

    val_acc = [evaluate(dl) for dl in eval_dls][1][1]
    for _ in range(grid.epochs):
        model.train()
        for xb, yb in train_dl:
            xb, yb = xb.to(device), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        val_acc = [evaluate(dl) for dl in eval_dls][1][1]
    evaluate(test_dl)
    return val_acc


def way_a(grid: Grid, lrs, seeds, device) -> tuple[float, int]:
    split = load_split(grid.dataset)
    accs = [plain_run(split, lr, seed, grid, device) for lr in lrs for seed in seeds]
    return statistics.mean(accs), len(accs) * grid.epochs


# -- (B), (C) lrlab -----------------------------------------------------------------------


def way_lrlab(executor: str, grid: Grid, lrs, seeds, device, out: str,
              tag: str) -> tuple[float, int]:
    result = lrlab.run_sweep(
        out=out, name=f"{grid.name}-{executor}-{tag}", executor=executor, fresh=True,
        report=False, plugins=[BenchData()], dataset=grid.dataset, model="mlp",
        optimizer="sgd(momentum=0.9)", schedule="constant", augment="none", stopper="none",
        lr=list(lrs), seed=list(seeds), epochs=grid.epochs, batch_size=grid.batch_size,
        device=str(device), split=list(SPLIT), thresholds={"diverge_factor": 1e9})
    runs = result.runs
    if (runs["error"] != "").any():
        raise RuntimeError(runs.loc[runs["error"] != "", "error"].iloc[0])
    return float(runs["val_acc"].mean()), int(runs["epochs_run"].sum())


# -- measuring -----------------------------------------------------------------------------


def matmul_peak(device: torch.device) -> float:
    """Best dense fp32 ``torch.mm`` throughput (FLOP/s) over a few square sizes."""
    sizes = (1024, 2048) if device.type == "cpu" else (4096, 8192)
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device)
        b = torch.randn(n, n, device=device)
        for _ in range(2):
            a @ b
        reps = max(3, int(4e10 / (2 * n ** 3))) if device.type == "cpu" else 20
        for _ in range(3):
            sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                a @ b
            sync(device)
            best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - start))
    return best


def mlp_flops(split) -> tuple[float, float]:
    """(training FLOPs per sample, forward FLOPs per sample) of the benchmark MLP."""
    dims = [math.prod(split.input_shape)] + [WIDTH] * DEPTH + [split.num_classes]
    macs = [a * b for a, b in zip(dims, dims[1:], strict=False)]
    forward = 2 * sum(macs)
    # backward: weight gradients of every layer, input gradients of all but the first
    return forward + forward + 2 * sum(macs[1:]), forward


def total_flops(split, runs: int, epochs_run: int) -> float:
    train, forward = mlp_flops(split)
    n_train, n_val, n_test = split.sizes()
    evals = (epochs_run + runs) * (n_train + n_val) + runs * n_test
    return epochs_run * n_train * train + evals * forward


class GpuSampler:
    """Mean GPU utilization while a way runs, polled every 0.2 s (needs pynvml)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples = device, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml: nothing to report
                return

    def __enter__(self):
        if self.device.type == "cuda":
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()

    def mean(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def time_grid(grid: Grid, ways, n_runs: int, device: torch.device) -> list[tuple]:
    """Time every way ``grid.reps`` times, in rotating order; one table row per way."""
    split = load_split(grid.dataset)
    keys = list(ways)
    times: dict[str, list[float]] = {k: [] for k in keys}
    accs, work, util = {}, {}, {}
    for rep in range(grid.reps):
        for key in keys[rep % len(keys):] + keys[:rep % len(keys)]:
            with GpuSampler(device) as sampler:
                sync(device)
                start = time.perf_counter()
                accs[key], work[key] = ways[key][1](grid, f"r{rep}")
                sync(device)
                times[key].append(time.perf_counter() - start)
            util[key] = sampler.mean()
            print(f"  {grid.name} rep {rep} {ways[key][0]}: {times[key][-1]:.2f} s", flush=True)
    base = statistics.median(times["A"]) if "A" in times else float("nan")
    rows = []
    for key in keys:
        wall = statistics.median(times[key])
        flops = total_flops(split, n_runs, work[key])
        rows.append((grid.name, ways[key][0], wall, min(times[key]),
                     work[key] * split.sizes()[0] / wall, base / wall, flops / wall / 1e9,
                     accs[key], util[key]))
    return rows


def machine() -> str:
    if torch.cuda.is_available():
        gpu = f", GPU {torch.cuda.get_device_name(0)}"
    else:
        gpu = ""
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines()
                   if line.startswith("Model name"))
    except (OSError, StopIteration):
        pass
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads{gpu}")


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--grids", default="digits,mnist", help="digits and/or mnist")
    parser.add_argument("--quick", action="store_true", help="1 rep, fewer epochs")
    parser.add_argument("--reps", type=int, default=None,
                        help="timed reps per way (default: 5 on digits, 3 on mnist)")
    parser.add_argument("--lrs", type=int, default=8, help="learning rates in the grid")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per learning rate")
    parser.add_argument("--ways", default="ABC", help="which ways to run")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--breakdown", action="store_true",
                        help="after timing, run (C) once more and say where its time goes")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    grids = {"digits": Grid("digits", "digits", 32, 4 if args.quick else 10,
                            args.reps or (1 if args.quick else 5)),
             "mnist": Grid("mnist-sized", "mnist-sized", 128, 1 if args.quick else 2,
                           args.reps or (1 if args.quick else 3))}
    lrs = [round(10 ** (-3 + 2 * i / max(1, args.lrs - 1)), 6) for i in range(args.lrs)]
    seeds = list(range(args.seeds))
    ways = {"A": ("A plain loop", lambda g, tag: way_a(g, lrs, seeds, device)),
            "B": ("B lrlab local", lambda g, tag: way_lrlab("local", g, lrs, seeds, device,
                                                             out, tag)),
            "C": ("C lrlab vectorized", lambda g, tag: way_lrlab("vectorized", g, lrs, seeds,
                                                                  device, out, tag))}
    ways = {k: v for k, v in ways.items() if k in args.ways}
    out = tempfile.mkdtemp(prefix=f"lrlab-bench-{os.getpid()}-")
    print(f"machine: {machine()}")
    print(f"load average before: {load()}")
    peak = matmul_peak(device)
    print(f"dense fp32 matmul (torch.mm) on {device}: {peak / 1e9:.1f} GFLOP/s")
    print(f"grid: {len(lrs)} learning rates {lrs[0]:g}..{lrs[-1]:g} x {len(seeds)} seeds, "
          f"mlp(width={WIDTH}, depth={DEPTH}), sgd(momentum=0.9)\n")

    # one-time costs (imports, lazy initialization, make_fx's first trace) paid before any
    # clock starts: 4 epochs make the vectorized executor trace its step
    warm = Grid("warmup", "digits", 32, 4)
    for key, (_, fn) in ways.items():
        fn(warm, "warm") if key == "A" else way_lrlab(
            "local" if key == "B" else "vectorized", warm, lrs[:2], [0], device, out, "warm")

    rows = []
    for name in args.grids.split(","):
        rows += time_grid(grids[name], ways, len(lrs) * len(seeds), device)
    print(f"\nload average after: {load()}")
    peak = max(peak, matmul_peak(device))  # the machine's best, in case of a busy moment
    print(f"dense fp32 matmul again: best {peak / 1e9:.1f} GFLOP/s\n")
    util_col = device.type == "cuda"
    head = ("| grid | way | wall s (median) | best s | samples/s | vs A | GFLOP/s | % of mm peak "
            "| mean val acc |"
            + (" GPU util |" if util_col else ""))
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for g, w, wall, best, sps, ratio, gflops, acc, u in rows:
        print(f"| {g} | {w} | {wall:.2f} | {best:.2f} | {sps:,.0f} | {ratio:.1f}x | {gflops:.1f} | "
              f"{100 * gflops * 1e9 / peak:.0f}% | {acc:.3f} |" + (f" {u} |" if util_col else ""))
    print(f"\n(mm peak: {peak / 1e9:.1f} GFLOP/s fp32 on {device}; {machine()})")
    if args.breakdown:
        base = {g: wall for g, w, wall, *_ in rows if w.startswith("A")}
        for name in args.grids.split(","):
            grid = grids[name]
            split = load_split(grid.dataset)
            work = grid.epochs * len(lrs) * len(seeds)
            breakdown.report(grid.name, functools.partial(
                way_lrlab, "vectorized", grid, lrs, seeds, device, out, "breakdown"),
                device, base.get(grid.name, math.nan),
                total_flops(split, len(lrs) * len(seeds), work))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:  # the result tables (B) and (C) wrote are not needed afterwards
        for folder in Path(tempfile.gettempdir()).glob(f"lrlab-bench-{os.getpid()}-*"):
            shutil.rmtree(folder, ignore_errors=True)
