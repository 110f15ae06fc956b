"""Where the vectorized executor's time goes, and how far it is from its matmul floor.

Used by ``sweep_speed.py --breakdown``: one extra, untimed (C) run with timers around its
parts, and one under ``torch.profiler`` that adds up the time spent inside matrix-multiply
kernels. That sum is the floor: a sweep doing nothing but those kernels, at the speed
they reach at these shapes, would take that long. (A)'s wall time over it is the largest
speed-up any executor could show on this machine without doing fewer FLOPs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

MATMULS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def parts(run_c: Callable[[], object], device: torch.device) -> dict[str, float]:
    """Seconds per part of one (C) run (``run_c()``), and its ``total``."""
    from lrlab.results import ResultStore
    from lrlab.vectorized.optim import BatchedOptimizer
    from lrlab.vectorized.stacked import StackedModel

    spent: dict[str, float] = {}
    originals = []

    def timed(owner, name, part, split_first=False):
        func = getattr(owner, name)
        originals.append((owner, name, func))

        def wrapper(self, *args, **kwargs):
            sync(device)
            start = time.perf_counter()
            before = len(getattr(self, "_traces", ()))
            try:
                return func(self, *args, **kwargs)
            finally:
                sync(device)
                key = part
                if split_first and len(getattr(self, "_traces", ())) > before:
                    key = "tracing the step (make_fx)"
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(StackedModel, "grads", "forward + backward (vmap of grad)", split_first=True)
    timed(BatchedOptimizer, "step", "optimizer update")
    timed(StackedModel, "evaluate", "clean evaluation (train, val, test)")
    timed(ResultStore, "add", "storing results (Parquet, per run)")
    try:
        start = time.perf_counter()
        run_c()
        spent["everything else"] = time.perf_counter() - start - sum(spent.values())
        spent["total"] = time.perf_counter() - start
    finally:
        for owner, name, func in originals:
            setattr(owner, name, func)
    return spent


def matmul_seconds(run_c: Callable[[], object], device: torch.device) -> float:
    """Seconds spent inside matrix-multiply kernels during one (C) run, by the profiler."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run_c()
        sync(device)
    total = 0.0
    for event in prof.key_averages():
        if event.key in MATMULS:
            total += (event.self_device_time_total if device.type == "cuda"
                      else event.self_cpu_time_total)
    return total / 1e6


def report(name: str, run_c: Callable[[], object], device: torch.device,
           a_wall: float, flops: float) -> None:
    """Print where (C)'s time goes on grid ``name`` and its matmul floor."""
    spent = parts(run_c, device)
    total = spent.pop("total")
    print(f"\nwhere (C)'s {total:.2f} s go on {name}:")
    for part, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {part:40s} {seconds:6.2f} s  {100 * seconds / total:4.0f}%")
    floor = matmul_seconds(run_c, device)
    print(f"  inside matmul kernels (profiler)         {floor:6.2f} s  {100 * floor / total:4.0f}%"
          f"  ({flops / floor / 1e9:.0f} GFLOP/s at these shapes)")
    if a_wall == a_wall:  # (A) was timed
        print(f"  ceiling: (A) {a_wall:.2f} s / matmul floor {floor:.2f} s = "
              f"{a_wall / floor:.1f}x, if (C) were nothing but its matmul kernels")
