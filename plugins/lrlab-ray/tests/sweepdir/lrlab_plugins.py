"""A local plugin file for the ray executor's tests (copied beside a sweep file).

Its models exist only here, so a run that uses one proves this file reached the Ray
worker; ``lrlab_run_start`` leaves markers naming the process (and the Ray node) it ran in.
"""

import os
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def here_linear(input_shape, num_classes):
    """A linear classifier defined in this file."""
    c, h, w = input_shape
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(c * h * w, num_classes))


def boom(input_shape, num_classes):
    """Raises while being built."""
    raise RuntimeError("boom from the local lrlab_plugins.py")


class _Crash(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        os._exit(3)


def crash(input_shape, num_classes):
    """Kills the process that trains it, as a segfault or the OOM killer would."""
    return _Crash()


def slow(input_shape, num_classes, *, seconds: float = 3.0):
    """here_linear, after a nap."""
    time.sleep(seconds)
    return here_linear(input_shape, num_classes)


def lrlab_register_models(register):
    for factory in (here_linear, boom, crash, slow):
        register(factory.__name__, factory)


def lrlab_run_start(run):
    (HERE / f"started-{run.run_id}.pid").write_text(str(os.getpid()))
    try:
        import ray
    except ImportError:
        return
    if ray.is_initialized():  # in a Ray worker: which node of the cluster trains this run
        (HERE / f"node-{run.run_id}.txt").write_text(ray.get_runtime_context().get_node_id())
