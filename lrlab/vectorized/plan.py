"""Which runs can be trained together, and what each member needs: its optimizer
settings and its learning rate at every step.

Runs form a group when they share the dataset, model, loss, batch size, augmentation
and the structure of their optimizer (SGD with or without Nesterov, Adam, AdamW,
RAdam); within a group each keeps its own learning rate, seed, optimizer numbers,
schedule, stopper and number of epochs. :func:`plan_group` says why a group cannot be
vectorized, or what training it needs, before any hook is called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lrlab.config import Run, augment_str
from lrlab.data import fork_rng
from lrlab.engine import dummy_optimizer, lr_table
from lrlab.registry import Registry
from lrlab.vectorized.optim import OptimKind, describe
from lrlab.vectorized.stacked import check_vmap, forward_macs, inspect_model

BUILTIN_OPTIMIZERS = "builtin.optimizers"


@dataclass
class Plan:
    """A group ready to train: the runs and what each member needs."""

    runs: list[Run]
    kind: OptimKind
    hypers: list[dict[str, float]]  # per member: momentum, betas, eps, weight_decay
    lr_tables: list[list[float]]  # per member: the LR of each step
    steps_per_epoch: int
    stochastic: bool  # the model draws randomness in training (dropout)
    augmented: bool  # the runs augment their batches
    step_size: int = 0  # multiply-adds of a member's forward pass on one batch


def optimizer_kind(registry: Registry, run: Run) -> tuple[OptimKind, dict[str, float]] | str:
    """The run's optimizer as the batched optimizers know it, or why they do not."""
    comp = registry.get("optimizer", run.optimizer.name)
    if comp.plugin != BUILTIN_OPTIMIZERS:
        return f"optimizer '{run.optimizer.name}' comes from plugin '{comp.plugin}'"
    return describe(dummy_optimizer(registry, run))


def group_key(registry: Registry, run: Run) -> tuple[Any, ...] | str:
    """What runs must share to be trained together, or why this run cannot be."""
    try:
        described = optimizer_kind(registry, run)
    except Exception as exc:  # the local executor will report it as the run's error
        return f"its optimizer failed to build ({type(exc).__name__}: {exc})"
    if isinstance(described, str):
        return described
    return (str(run.dataset), run.split_seed, str(run.model), str(run.loss), run.batch_size,
            augment_str(run.augment), described[0])


def plan_group(runs: list[Run], registry: Registry, data, batch_size: int,
               device: torch.device, single: bool = False) -> Plan | str:
    """Check a group and gather what its members need; a string says why not.

    ``single``: a group of one run is planned too (a member continuing from its
    checkpoint is trained as it was, vectorized)."""
    if len(runs) < 2 and not single:
        return "a group of one run gains nothing from vmap"
    described = [optimizer_kind(registry, run) for run in runs]
    for d in described:
        if isinstance(d, str):
            return d
    kinds = {d[0] for d in described}
    if len(kinds) != 1:
        return "the runs' optimizers differ in structure"
    steps_per_epoch = math.ceil(len(data.train[1]) / batch_size)
    tables = []
    for run in runs:
        table = lr_table(registry, run, steps_per_epoch)
        if isinstance(table, str):
            return table
        tables.append(table)
    run = runs[0]
    with fork_rng(device):
        probe = registry.build("model", run.model, data.input_shape, data.num_classes)
    probe = probe.to(device)
    updates, stochastic = inspect_model(probe, data.train[0][:batch_size])
    if updates:
        return "the model updates buffers in training (BatchNorm running statistics)"
    x, y = data.train[0][:batch_size], data.train[1][:batch_size]
    loss_fn = registry.build("loss", run.loss, data.num_classes)
    failure = check_vmap(probe, loss_fn, x, y, stochastic)
    if failure is not None:
        return failure
    augmented = any(spec.name != "none" for spec in run.augment)
    step_size = forward_macs(probe, x)
    return Plan(list(runs), kinds.pop(), [d[1] for d in described], tables, steps_per_epoch,
                stochastic, augmented, step_size)
