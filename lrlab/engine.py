"""Training one run: one function, top to bottom.

Batches come from tensors already on the device (no DataLoader): each epoch draws a
permutation from the run's own generator, so the same seed gives the same batch order
on every executor. A streamed dataset (:attr:`lrlab.data.Split.streaming`: too big for
memory) is read through DataLoader workers (``--workers``, :class:`lrlab.data.Feeder`),
batch by batch, in that same order: its history is the one the in-memory run of the same
data gives. After every epoch the model is evaluated clean (eval mode, no
augmentation) on the train and validation splits; the test split is evaluated once, at
the end, at the restored epoch when the stopper restores one; those weights are handed
back (``Trained.state_dict``) for ``--save`` (:mod:`lrlab.weights`).

Checkpoints (:mod:`lrlab.checkpoints`): given a store and the run's key, :func:`train`
saves, at an epoch boundary when a save is due (and the run goes on), everything that
decides the rest of the run: the history so far, the model's, optimizer's and schedule's
``state_dict`` (a schedule without one: its attributes), the end-of-epoch rule (the stopper's state, whether a snapshot was
taken), the restore-best snapshot, the batch-order generator, the global random state
(CPU, and CUDA on a GPU) that augmentation and dropout draw from, the epoch and the wall
time used. When the run starts and a readable checkpoint of the local format for its
device type exists, it continues after that epoch: built and seeded as always, then
every piece restored, so its history (``wall_s`` aside) and test numbers are the ones
of the run never interrupted, bit for bit on CPU. A checkpoint that does not fit (another
format, device type or run, an epoch out of range, a restore that raises) is ignored: the run trains from
scratch and overwrites it at its first save. So is one saved under other code (``code``,
the components' code record: an edited plugin retrains, as for stored runs).

Hooks on a resumed run: ``lrlab_run_start`` fires (it fires whenever a process starts
training the run); ``lrlab_epoch_end`` fires only for the epochs trained now, from the
one after the checkpoint (an epoch trained after the last checkpoint, before the kill,
is trained, and seen by the hook, again).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from lrlab.checkpoints import (
    CheckpointStore,
    object_state,
    restore_object,
    rng_state,
    set_rng_state,
)
from lrlab.config import Run
from lrlab.data import Feeder, Split, Stream
from lrlab.epochs import EpochRule
from lrlab.registry import Registry
from lrlab.settings import TrainSettings


@dataclass
class Trained:
    """What training hands back: per-epoch history, the test evaluation and the weights
    it was made with."""

    history: list[dict[str, float]]  # epoch 0 (untrained) .. epochs_run
    test_loss: float
    test_acc: float
    restored_epoch: int | None  # the epoch whose weights were tested, if restored
    stopped_by: str | None  # "stopper", "plugin", "diverged" or None (ran all epochs)
    resumed_epoch: int | None = None  # continued after this epoch of a checkpoint
    resumed_wall_s: float = 0.0  # the wall time the checkpoint had used
    # the weights the test split was scored on (the restored epoch's when the stopper
    # restored, else the last epoch's), as CPU copies: what ``--save`` writes
    state_dict: dict[str, Any] | None = None


# the format of a local checkpoint; one of another format (a vectorized member's) or
# another version is not resumed here
LOCAL_FORMAT = "lrlab.local/1"


class Unresumable(Exception):
    """A checkpoint that could not be restored: the run starts from scratch."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from lrlab.errors import UsageError

        raise UsageError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loss_fn: Callable, x: torch.Tensor | Stream,
             y: torch.Tensor, batch_size: int,
             feeder: Feeder | None = None) -> tuple[float, float]:
    """Mean loss and accuracy over ``(x, y)`` in eval mode, in large batches; ``x`` may
    be a streamed part (``y`` its targets), read by ``feeder``."""
    if isinstance(x, Stream):
        if feeder is None:
            raise ValueError("a streamed part is evaluated through a Feeder")
        device = feeder.device
        batches: Iterator = feeder.in_order(x, batch_size)
    else:
        device = x.device
        batches = ((x[s:s + batch_size], y[s:s + batch_size])
                   for s in range(0, len(y), batch_size))
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for xb, yb in batches:
        logits = model(xb).float()
        total_loss += loss_fn(logits, yb).double() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = len(y)
    return (total_loss / n).item(), correct.item() / n


def build_augment(registry: Registry, run: Run, input_shape: tuple[int, ...]):
    steps = [registry.build("augmentation", spec, input_shape) for spec in run.augment
             if spec.name != "none"]
    if not steps:
        return None

    def pipeline(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return pipeline


@contextlib.contextmanager
def cpu_threads(model: torch.nn.Module, batch_size: int, device: torch.device,
                threads: int) -> Iterator[None]:
    """Run a training on ``threads`` CPU threads (0: :func:`lrlab.threads.choose`'s)."""
    from lrlab.threads import choose

    before = torch.get_num_threads()
    wanted = choose(model, batch_size, device, threads)
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train(run: Run, data: Split, registry: Registry, settings: TrainSettings,
          epoch_end: Callable[[Run, int, dict[str, float]], bool] | None = None,
          checkpoints: CheckpointStore | None = None, key: str | None = None,
          code: str = "") -> Trained:
    """Train ``run`` on ``data`` (already on ``settings.device``) and evaluate it; with
    ``checkpoints`` and the run's ``key``, continue from its checkpoint and save new ones
    (see the module's docstring); ``code`` identifies the code of the run's components
    (a checkpoint saved under another code is not continued)."""
    keep = Keeper(checkpoints, key, code) if checkpoints is not None and key else None
    saved = keep.load(run, settings.device) if keep is not None else None
    try:
        return _start(run, data, registry, settings, epoch_end, keep, saved)
    except Unresumable:
        return _start(run, data, registry, settings, epoch_end, keep, None)


def _start(run: Run, data: Split, registry: Registry, settings: TrainSettings,
           epoch_end: Callable[[Run, int, dict[str, float]], bool] | None,
           keep: Keeper | None, saved: dict[str, Any] | None) -> Trained:
    torch.manual_seed(run.seed)  # initialization, dropout and augmentation randomness
    model = registry.build("model", run.model, data.input_shape, data.num_classes)
    model = model.to(settings.device)
    feeder = Feeder(settings.device, settings.workers)  # a streamed split's workers
    with cpu_threads(model, run.batch_size, settings.device, settings.threads), \
            contextlib.closing(feeder):
        return _train(run, model, data, registry, settings, epoch_end, keep, saved, feeder)


class Keeper:
    """The checkpoints of one run: when to save, what, and what a saved one must be."""

    def __init__(self, store: CheckpointStore, key: str, code: str = "") -> None:
        self.store, self.key, self.code = store, key, code

    def load(self, run: Run, device: torch.device) -> dict[str, Any] | None:
        """The run's checkpoint when it is one this executor can continue."""
        saved = self.store.load(self.key, map_location="cpu")  # copied in place later
        head = saved.get("header") if saved is not None else None
        if not isinstance(head, dict) or head.get("format") != LOCAL_FORMAT \
                or head.get("device") != device.type or head.get("run_id") != run.run_id \
                or head.get("code", "") != self.code \
                or not 0 < head.get("epoch", 0) < run.epochs:
            return None
        return saved

    def begin(self) -> None:
        self.store.begin(self.key)

    def save_if_due(self, make_state: Callable[[], dict[str, Any]]) -> bool:
        return self.store.save_if_due(self.key, make_state)


def _train(run: Run, model: torch.nn.Module, data: Split, registry: Registry,
           settings: TrainSettings,
           epoch_end: Callable[[Run, int, dict[str, float]], bool] | None,
           keep: Keeper | None, saved: dict[str, Any] | None, feeder: Feeder) -> Trained:
    device = settings.device
    batch_gen = torch.Generator(device=device).manual_seed(run.seed)  # batch order
    loss_fn = registry.build("loss", run.loss, data.num_classes)
    optimizer = registry.build("optimizer", run.optimizer, model.parameters(), run.lr)
    n = data.sizes()[0]
    steps_per_epoch = math.ceil(n / run.batch_size)
    schedule = registry.build("schedule", run.schedule, optimizer, steps_per_epoch, run.epochs)
    augment = build_augment(registry, run, data.input_shape)
    stopper = registry.build("stopper", run.stopper)
    forward = torch.compile(model, dynamic=False) if settings.compile else model
    autocast = settings.amp and device.type == "cuda"

    def evaluate_part(part) -> tuple[float, float]:
        if isinstance(part, Stream):
            return evaluate(model, loss_fn, part, part.targets, settings.eval_batch_size,
                            feeder)
        return evaluate(model, loss_fn, *part, settings.eval_batch_size)

    def clean_metrics() -> dict[str, float]:
        train_loss, train_acc = evaluate_part(data.train)
        val_loss, val_acc = evaluate_part(data.val)
        return {"train_loss": train_loss, "train_acc": train_acc,
                "val_loss": val_loss, "val_acc": val_acc}

    rule = EpochRule(run, stopper, settings.thresholds, epoch_end)
    best_state: dict[str, Any] | None = None
    stopped_by = None
    if saved is None:
        start = time.perf_counter()
        history = [{"epoch": 0, "lr": optimizer.param_groups[0]["lr"], **clean_metrics(),
                    "max_batch_loss": math.nan, "batch_loss": math.nan, "wall_s": 0.0}]
        first = 1
    else:
        try:  # everything built as for a fresh start, now set to where the run was
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            restore_object(schedule, saved["schedule"])
            rule.load_state_dict(saved["rule"])
            best_state = saved["best"]
            batch_gen.set_state(saved["batch_gen"])
            history = saved["history"]
            first = saved["header"]["epoch"] + 1
            if len(history) != first:
                raise ValueError(f"{len(history)} history rows for epoch {first - 1}")
            set_rng_state(saved["rng"], device)
        except Exception as exc:
            raise Unresumable(str(exc)) from exc
        start = time.perf_counter() - saved["wall_s"]
    if keep is not None:
        keep.begin()

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {"header": {"format": LOCAL_FORMAT, "device": device.type, "epoch": epoch,
                           "run_id": run.run_id, "code": keep.code if keep else ""},
                "history": history, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "schedule": object_state(schedule),
                "rule": rule.state_dict(), "best": best_state,
                "batch_gen": batch_gen.get_state(), "rng": rng_state(device),
                "wall_s": time.perf_counter() - start}

    for epoch in range(first, run.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=batch_gen, device=device)
        if data.streaming:  # the workers read by index on the CPU
            order = order.cpu()
        peak = torch.zeros((), device=device)  # the epoch's largest mini-batch loss
        total = torch.zeros((), device=device, dtype=torch.float64)  # and their sum
        for xb, yb in feeder.batches(data.train, order.split(run.batch_size)):
            if augment is not None:
                xb = augment(xb)
            lr_used = optimizer.param_groups[0]["lr"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = forward(xb)
            loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            peak = torch.maximum(peak, loss.detach().nan_to_num(nan=math.inf))
            total += loss.detach().double()

        metrics = {"lr": lr_used, **clean_metrics()}
        history.append({"epoch": epoch, **metrics, "max_batch_loss": peak.item(),
                        "batch_loss": total.item() / steps_per_epoch,
                        "wall_s": time.perf_counter() - start})

        # divergence, then the stopper, then the plugins: see lrlab.epochs
        decision = rule.after_epoch(history, epoch, metrics)
        if decision.snapshot:
            best_state = copy.deepcopy(model.state_dict())
        if decision.stopped_by:
            stopped_by = decision.stopped_by
            break
        if keep is not None and epoch < run.epochs:
            keep.save_if_due(functools.partial(checkpoint, epoch))

    restored = rule.restore_epoch(stopped_by)
    if restored is not None:
        model.load_state_dict(best_state)
    test_loss, test_acc = evaluate_part(data.test)
    state = cpu_state_dict(model) if settings.save != "none" else None  # for --save
    if saved is None:
        return Trained(history, test_loss, test_acc, restored, stopped_by, state_dict=state)
    return Trained(history, test_loss, test_acc, restored, stopped_by,
                   resumed_epoch=first - 1, resumed_wall_s=saved["wall_s"], state_dict=state)


def cpu_state_dict(model: torch.nn.Module) -> dict[str, Any]:
    """``model.state_dict()`` as CPU copies (its tensors detached; anything else, a
    module's extra state, as it is)."""
    return {k: v.detach().to("cpu", copy=True) if isinstance(v, torch.Tensor) else v
            for k, v in model.state_dict().items()}


# the keys a schedule may change; a schedule that changes others (momentum cycling)
# cannot be replayed from its learning rates alone
SCHEDULED = ("lr", "initial_lr")


def dummy_optimizer(registry: Registry, run: Run) -> torch.optim.Optimizer:
    """The run's optimizer, built by its factory on one dummy parameter."""
    return registry.build("optimizer", run.optimizer, [torch.nn.Parameter(torch.zeros(1))],
                          run.lr)


def lr_table(registry: Registry, run: Run, steps_per_epoch: int,
             strict: bool = True) -> list[float] | str:
    """The run's learning rate at each of its steps, read from its own schedule.

    The schedule is built on a dummy optimizer and stepped as training would step it, so
    any schedule plugin works; a pure ``LambdaLR`` is read from its factors directly.
    With ``strict``, a schedule that also changes other settings (momentum cycling) gives
    a string saying so instead, since its learning rates alone do not replay it.
    """
    optimizer = dummy_optimizer(registry, run)
    schedule = registry.build("schedule", run.schedule, optimizer, steps_per_epoch,
                              run.epochs)
    total = steps_per_epoch * run.epochs
    group = optimizer.param_groups[0]
    if type(schedule) is LambdaLR and len(schedule.lr_lambdas) == 1:
        base, factor = schedule.base_lrs[0], schedule.lr_lambdas[0]
        return [group["lr"]] + [base * factor(s) for s in range(1, total)]
    fixed = {k: v for k, v in group.items() if k not in SCHEDULED and k != "params"}
    table = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
        for _ in range(total):
            table.append(float(group["lr"]))
            schedule.step()
            if strict and any(group.get(k) != v for k, v in fixed.items()):
                return f"schedule '{run.schedule}' changes optimizer settings besides the LR"
    return table
