"""Training a planned group of runs at once, each member as :func:`lrlab.engine.train`
would train it alone.

Every member is seeded as the local executor seeds a run (``torch.manual_seed(seed)``
before its model is built, its own generator for its batch order), so its initial
weights and its batches are the same; its gradients come from one ``vmap`` over the
group and its update from the batched optimizer, at its own learning rate from its own
schedule. After each epoch every member is evaluated clean, its history row written and
its stopper asked; a member that diverges, is stopped or runs out of epochs is done:
its test split is evaluated and its result handed back while the others go on.

Finished members stay in the tensors (zeroed, learning rate 0) until a quarter of the
rows are finished; then the tensors are compacted, so a step never carries much dead
weight and the step function is not re-traced for every member that stops.

Wall time is shared: each interval of the group's clock is divided among the members
that were training in it, so a member's ``wall_s`` (in its history and its result) is
its share, and the shares of a group add up to the group's wall time.
"""

from __future__ import annotations

import functools
import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from lrlab.config import Run
from lrlab.data import take_rows
from lrlab.engine import Trained, build_augment, cpu_threads
from lrlab.epochs import EpochRule
from lrlab.vectorized.optim import BatchedOptimizer
from lrlab.vectorized.plan import Plan
from lrlab.vectorized.stacked import StackedModel

# a batch shape is traced into a graph (about 0.1-0.3 s) only when it will be stepped at
# least this often: each traced call saves about a millisecond of eager vmap overhead
TRACE_MIN_CALLS = 100


@dataclass
class Member:
    """One run inside a group, and its record so far."""

    run: Run
    lrs: list[float]  # the LR of each of its steps
    rule: EpochRule  # its stopper and the end-of-epoch checks, as engine.train applies them
    gen: torch.Generator  # its batch order, seeded as the local executor seeds it
    rng: tuple[torch.Tensor, ...] = ()  # its global RNG state for augmentation draws
    history: list[dict[str, float]] = field(default_factory=list)
    best: dict[str, torch.Tensor] | None = None  # parameters of the stopper's best epoch
    stopped_by: str | None = None
    restored: int | None = None  # the epoch whose weights were tested
    error: str = ""
    wall_s: float = 0.0  # its share of the group's wall time


@dataclass
class Finished:
    """A member's outcome: what :func:`lrlab.engine.train` would have returned, or an error."""

    run: Run
    trained: Trained | None
    wall_s: float
    error: str = ""


class Clock:
    """Shares the group's wall time among the members that were training."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def charge(self, members: list[Member]) -> None:
        now = time.perf_counter()
        share = (now - self.last) / max(1, len(members))
        self.last = now
        for m in members:
            m.wall_s += share


def train_group(plan: Plan, context) -> Iterator[Finished]:
    """Train the runs of ``plan`` together; yield each member's outcome as it finishes."""
    settings, registry = context.settings, context.registry
    device = settings.device
    data = context.data(plan.runs[0])
    x_train, y_train = data.train
    n, batch, spe = len(y_train), plan.runs[0].batch_size, plan.steps_per_epoch
    clock = Clock()

    members, models, hypers = [], [], []
    for run, table, hyper in zip(plan.runs, plan.lr_tables, plan.hypers, strict=True):
        try:
            context.run_start(run)
        except Exception:
            yield Finished(run, None, 0.0, traceback.format_exc())
            continue
        torch.manual_seed(run.seed)  # initialization, as engine.train does
        gen = torch.Generator(device=device).manual_seed(run.seed)  # batch order
        models.append(registry.build("model", run.model, data.input_shape,
                                     data.num_classes).to(device))
        rule = EpochRule(run, registry.build("stopper", run.stopper), settings.thresholds,
                         context.epoch_end)
        members.append(Member(run, table, rule, gen, rng_state(device)))
        hypers.append(hyper)
    if not members:
        return
    loss_fn = registry.build("loss", plan.runs[0].loss, data.num_classes)
    augment = build_augment(registry, plan.runs[0], data.input_shape)
    stacked = StackedModel(models, loss_fn, stochastic=plan.stochastic, amp=settings.amp,
                           compile=settings.compile)
    del models
    optimizer = BatchedOptimizer(plan.kind, hypers, stacked.sizes, device)
    steps = max(len(m.lrs) for m in members)
    lr_table = torch.tensor([m.lrs + [0.0] * (steps - len(m.lrs)) for m in members],
                            dtype=torch.float64, device=device)
    slots: list[Member | None] = list(members)  # row -> member (None: finished)
    chunk = max(1, settings.eval_batch_size // len(members))
    arange = torch.arange(n, device=device)
    # the group's compute runs on the thread count engine.train would choose for a run
    # that steps all members' samples at once (not around the yields: the sweep stores
    # results between them)
    threads = functools.partial(cpu_threads, stacked.template, batch * len(members), device,
                                settings.threads)

    def clean_metrics(rows: list[int]) -> list[dict[str, float]]:
        if len(rows) == stacked.width:
            params, buffers = stacked.params, stacked.buffers
        else:
            params, buffers = stacked.take(torch.tensor(rows, device=device))
        with threads():
            train_loss, train_acc = stacked.evaluate(params, buffers, *data.train, chunk)
            val_loss, val_acc = stacked.evaluate(params, buffers, *data.val, chunk)
        return [{"train_loss": train_loss[i], "train_acc": train_acc[i],
                 "val_loss": val_loss[i], "val_acc": val_acc[i]} for i in range(len(rows))]

    for m, metrics in zip(members, clean_metrics(list(range(len(members)))), strict=True):
        m.history.append({"epoch": 0, "lr": m.lrs[0], **metrics, "max_batch_loss": math.nan,
                          "batch_loss": math.nan, "wall_s": 0.0})
    clock.charge(members)

    def end_of_epoch(m: Member, row: int, epoch: int, metrics: dict[str, float]) -> bool:
        """Apply the end-of-epoch rule as engine.train does; True when the member is done.
        An exception from its stopper or a plugin hook is that member's error only."""
        try:
            decision = m.rule.after_epoch(m.history, epoch, metrics)
            if decision.snapshot:
                m.best = stacked.snapshot(row)
        except Exception:
            m.error = traceback.format_exc()
            return True
        m.stopped_by = decision.stopped_by
        return m.stopped_by is not None or epoch == m.run.epochs

    for epoch in range(1, max(m.run.epochs for m in members) + 1):
        live = [row for row, m in enumerate(slots) if m is not None]
        if not live or context.stop_requested:
            return
        orders = torch.stack([torch.randperm(n, generator=m.gen, device=device)
                              if m is not None else arange for m in slots])
        lrs = lr_table[:, (epoch - 1) * spe:epoch * spe]
        epochs_left = max(slots[row].run.epochs for row in live) - epoch + 1
        peak = torch.zeros(len(slots), device=device)  # each member's largest batch loss
        total = torch.zeros(len(slots), device=device, dtype=torch.float64)  # and their sum
        with threads():
            for step in range(spe):
                idx = orders[:, step * batch:(step + 1) * batch]
                xb, yb = take_rows(x_train, idx), take_rows(y_train, idx)
                if augment is not None and plan.stochastic:  # randomness is the group's anyway
                    xb = augment(xb.flatten(0, 1)).reshape(xb.shape)
                elif augment is not None:  # each member draws from its own stream, as on local
                    xb = torch.stack([xb[i] if m is None else augment_as(m, augment, xb[i], device)
                                      for i, m in enumerate(slots)])
                full = idx.shape[1] == batch
                calls_left = epochs_left * (n // batch if full else 1)
                trace = calls_left >= TRACE_MIN_CALLS or (settings.compile and full)
                grads, losses = stacked.grads(xb, yb, trace=trace)
                peak = torch.maximum(peak, losses.detach().float().nan_to_num(nan=math.inf))
                total += losses.detach().double()
                optimizer.step(stacked.chunks, grads, lrs[:, step:step + 1])

        measured = clean_metrics(live)
        peaks, means = peak.tolist(), (total / spe).tolist()
        clock.charge([slots[row] for row in live])
        done = []
        for row, metrics in zip(live, measured, strict=True):
            m = slots[row]
            metrics = {"lr": m.lrs[epoch * spe - 1], **metrics}
            m.history.append({"epoch": epoch, **metrics, "max_batch_loss": peaks[row],
                              "batch_loss": means[row],
                              "wall_s": m.wall_s})
            if end_of_epoch(m, row, epoch, metrics):
                done.append(row)
        if not done:
            continue

        yield from finish([slots[r] for r in done], done, stacked, data, chunk, clock,
                          threads)
        index = torch.tensor(done, device=device)
        stacked.zero(index)
        optimizer.clear(index)
        lr_table[index] = 0
        for row in done:
            slots[row] = None
        finished = sum(m is None for m in slots)
        if finished * 4 >= len(slots) and finished < len(slots):
            keep = [row for row, m in enumerate(slots) if m is not None]
            index = torch.tensor(keep, device=device)
            stacked.select(index)
            optimizer.select(index)
            lr_table = lr_table[index]
            slots = [slots[row] for row in keep]


def rng_state(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The global RNG state(s) an augmentation on ``device`` draws from."""
    if device.type == "cuda":
        return torch.get_rng_state(), torch.cuda.get_rng_state(device)
    return (torch.get_rng_state(),)


def augment_as(m: Member, augment, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Augment one member's batch with its own random stream: the numbers the local
    executor would draw for that run (seeded, then advanced by its batches only)."""
    torch.set_rng_state(m.rng[0])
    if device.type == "cuda":
        torch.cuda.set_rng_state(m.rng[1], device)
    out = augment(x)
    m.rng = rng_state(device)
    return out


def finish(members: list[Member], rows: list[int], stacked: StackedModel, data, chunk: int,
           clock: Clock, threads) -> Iterator[Finished]:
    """Evaluate the test split for members that are done (at the restored epoch when the
    stopper restores) and hand back their outcomes."""
    tested = [(m, row) for m, row in zip(members, rows, strict=True) if not m.error]
    results: dict[int, tuple[float, float]] = {}
    if tested:
        params, buffers = stacked.take(torch.tensor([row for _, row in tested],
                                                    device=stacked.device))
        for i, (m, _) in enumerate(tested):
            m.restored = m.rule.restore_epoch(m.stopped_by)
            if m.restored is not None:  # the stopper's best epoch, as engine.train restores it
                for name, value in m.best.items():
                    params[name][i] = value
        with threads():
            losses, accs = stacked.evaluate(params, buffers, *data.test, chunk)
        for i, (m, _) in enumerate(tested):
            results[id(m)] = (losses[i], accs[i])
    clock.charge(members)
    for m in members:
        if m.error:
            yield Finished(m.run, None, m.wall_s, m.error)
            continue
        test_loss, test_acc = results[id(m)]
        yield Finished(m.run, Trained(m.history, test_loss, test_acc, m.restored, m.stopped_by),
                       m.wall_s)
