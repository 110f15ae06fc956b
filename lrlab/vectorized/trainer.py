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

Checkpoints, one file per member (:mod:`lrlab.checkpoints`, under the member's run key,
so the driver's removal of a stored run's checkpoint needs nothing more). The group has
one clock (keyed by the sha1 of its members' sorted run keys); when a save is due at an
epoch boundary, every member that goes on is saved in its own file: its row of the
stacked parameters and buffers, its row of the batched optimizer's state, its end-of-
epoch rule (stopper), batch-order generator, random stream, history, best snapshot and
wall-time share, the global random state (the group's, which dropout draws from under
``vectorized``), its row, and the group's signature: an id (the clock's key), the epoch,
the step count, the evaluation chunk and the width the group started with (which set the
evaluation batches and the thread count), the rows the tensors had and the optimizer
state's names. Its learning rates are its schedule's, read again by the planner.

Resuming: members that finished were stored and their files removed, so the group is
planned again from fewer runs; the ``vectorized``/``auto`` executors therefore group the
runs to resume by signature first (:mod:`lrlab.builtin.vectorized`), and a group whose
members all have fitting checkpoints of one signature is rebuilt in the saved layout:
each member back in its row, the other rows zeroed as finished rows are, then compacted
as they would have been. The tensors then have the shapes, and the random draws the
order, of the run never interrupted, so a resumed member's history and test numbers are
its uninterrupted ones, bit for bit on CPU (a member that finished after the last
checkpoint and before the kill is the exception: its row is dead from the checkpoint on,
and a later compaction may come earlier; the members stay independent rows, so only
kernels whose rounding depends on the batch width could differ). A group whose
checkpoints do not fit (another format or device type, other code, several signatures, a
restore that raises) starts from scratch; the local executor never continues a member's
checkpoint (its format is not the local one) and overwrites it with its own.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lrlab.checkpoints import rng_state, set_rng_state
from lrlab.config import Run
from lrlab.data import take_rows
from lrlab.engine import Trained, Unresumable, build_augment, cpu_threads
from lrlab.epochs import EpochRule
from lrlab.vectorized.optim import BatchedOptimizer
from lrlab.vectorized.plan import Plan
from lrlab.vectorized.stacked import StackedModel

# a batch shape is traced into a graph (about 0.1-0.3 s) only when it will be stepped at
# least this often: each traced call saves about a millisecond of eager vmap overhead
TRACE_MIN_CALLS = 100

# the format of a member's checkpoint (the local executor's is another)
VECTORIZED_FORMAT = "lrlab.vectorized/1"


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
    resumed: int | None = None  # the epoch of the checkpoint it continued from


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
    """Train the runs of ``plan`` together; yield each member's outcome as it finishes.
    Members continue from their checkpoints when all of them have one that fits."""
    settings = context.settings
    device = settings.device
    data = context.data(plan.runs[0])
    x_train, y_train = data.train
    n, batch, spe = len(y_train), plan.runs[0].batch_size, plan.steps_per_epoch
    clock = Clock()
    store = getattr(context, "checkpoints", None)
    keys = {run.run_id: context.run_key(run) for run in plan.runs} if store is not None \
        else {}
    codes = {run.run_id: code_of(context, run) for run in plan.runs} if store is not None \
        else {}
    saved = load_group(store, plan, keys, codes, device) if store is not None else None

    runs = []
    for run in plan.runs:
        try:
            context.run_start(run)
        except Exception:
            yield Finished(run, None, 0.0, traceback.format_exc())
            continue
        runs.append(run)
    if not runs:
        return
    try:
        slots, stacked, optimizer, signature = build_group(plan, context, runs, data, saved)
    except Unresumable:
        slots, stacked, optimizer, signature = build_group(plan, context, runs, data, None)
    del saved
    # row -> member (None: finished); members: the ones trained now
    members: list[Member] = [m for m in slots if m is not None]
    first = signature["epoch"] + 1  # the first epoch to train
    width = signature["width"]  # the members the group started with
    augment = build_augment(context.registry, plan.runs[0], data.input_shape)
    steps = max(len(m.lrs) for m in members)
    lr_table = torch.tensor([m.lrs + [0.0] * (steps - len(m.lrs)) if m is not None
                             else [0.0] * steps for m in slots],
                            dtype=torch.float64, device=device)
    chunk = signature["chunk"]
    arange = torch.arange(n, device=device)
    # the group's compute runs on the thread count engine.train would choose for a run
    # that steps all members' samples at once (not around the yields: the sweep stores
    # results between them)
    threads = functools.partial(cpu_threads, stacked.template, batch * width, device,
                                settings.threads)
    clock_key = "group-" + hashlib.sha1(
        " ".join(sorted(keys[m.run.run_id] for m in members)).encode()).hexdigest()[:16] \
        if store is not None else ""

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

    def member_states(rows: list[int], epoch: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """Each member's checkpoint, one at a time (copies of its rows only)."""
        group = {"id": clock_key, "epoch": epoch, "steps": optimizer.steps, "chunk": chunk,
                 "width": width, "rows": len(slots), "optim": sorted(optimizer.state)}
        for row in rows:
            m = slots[row]
            yield keys[m.run.run_id], {
                "header": {"format": VECTORIZED_FORMAT, "device": device.type,
                           "epoch": epoch, "run_id": m.run.run_id, "group": group,
                           "row": row, "code": codes[m.run.run_id]},
                "params": {k: v[row].clone() for k, v in stacked.params.items()},
                "buffers": {k: v[row].clone() for k, v in stacked.buffers.items()},
                "optim": optimizer.row_state(row), "rule": m.rule.state_dict(),
                "gen": m.gen.get_state(), "rng": m.rng, "group_rng": rng_state(device),
                "history": m.history, "best": m.best, "wall_s": m.wall_s}

    if first == 1:
        for m, metrics in zip(members, clean_metrics(list(range(len(members)))),
                              strict=True):
            m.history.append({"epoch": 0, "lr": m.lrs[0], **metrics,
                              "max_batch_loss": math.nan, "batch_loss": math.nan,
                              "wall_s": 0.0})
    else:  # the saved layout is the one before the members done at that epoch left
        slots, lr_table = compact(slots, stacked, optimizer, lr_table)
    clock.charge(members)
    if store is not None:
        store.begin(clock_key)

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

    for epoch in range(first, max(m.run.epochs for m in members) + 1):
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
        going = [row for row in live if row not in done]
        if store is not None and going:
            store.save_all_if_due(clock_key, functools.partial(member_states, going, epoch))
        if not done:
            continue

        yield from finish([slots[r] for r in done], done, stacked, data, chunk, clock,
                          threads, weights=settings.save != "none")
        index = torch.tensor(done, device=device)
        stacked.zero(index)
        optimizer.clear(index)
        lr_table[index] = 0
        for row in done:
            slots[row] = None
        slots, lr_table = compact(slots, stacked, optimizer, lr_table)


def compact(slots: list[Member | None], stacked: StackedModel, optimizer: BatchedOptimizer,
            lr_table: torch.Tensor) -> tuple[list[Member | None], torch.Tensor]:
    """Drop the finished rows once they are a quarter of the rows (not all of them)."""
    finished = sum(m is None for m in slots)
    if finished * 4 >= len(slots) and finished < len(slots):
        keep = [row for row, m in enumerate(slots) if m is not None]
        index = torch.tensor(keep, device=stacked.device)
        stacked.select(index)
        optimizer.select(index)
        return [slots[row] for row in keep], lr_table[index]
    return slots, lr_table


def build_group(plan: Plan, context, runs: list[Run], data,
                saved: dict[str, dict[str, Any]] | None
                ) -> tuple[list[Member | None], StackedModel, BatchedOptimizer, dict[str, Any]]:
    """The members of ``runs`` (started), seeded as engine.train seeds them, stacked, with
    their batched optimizer, and the group's signature. Continued from ``saved`` (their
    checkpoints) when given: each member back in its row of the saved layout, the rows of
    the members that finished (or are not here) zeroed as finished rows are (Unresumable
    when the checkpoints do not fit). Returns the rows (None: a finished row)."""
    settings, registry = context.settings, context.registry
    device = settings.device
    planned = {run.run_id: (table, hyper) for run, table, hyper
               in zip(plan.runs, plan.lr_tables, plan.hypers, strict=True)}
    members, models, hypers = [], [], []
    for run in runs:
        table, hyper = planned[run.run_id]
        torch.manual_seed(run.seed)  # initialization, as engine.train does
        gen = torch.Generator(device=device).manual_seed(run.seed)  # batch order
        models.append(registry.build("model", run.model, data.input_shape,
                                     data.num_classes).to(device))
        rule = EpochRule(run, registry.build("stopper", run.stopper), settings.thresholds,
                         context.epoch_end)
        members.append(Member(run, table, rule, gen, rng_state(device)))
        hypers.append(hyper)
    loss_fn = registry.build("loss", plan.runs[0].loss, data.num_classes)
    stacked = StackedModel(models, loss_fn, stochastic=plan.stochastic, amp=settings.amp,
                           compile=settings.compile)
    del models
    if saved is None:
        optimizer = BatchedOptimizer(plan.kind, hypers, stacked.sizes, device)
        signature = {"epoch": 0, "width": len(members),
                     "chunk": max(1, settings.eval_batch_size // len(members))}
        return list(members), stacked, optimizer, signature
    states = [saved[m.run.run_id] for m in members]
    try:
        signature = dict(states[0]["header"]["group"])
        rows = [int(state["header"]["row"]) for state in states]
        if len(set(rows)) != len(rows) or not 0 <= min(rows) <= max(rows) < signature["rows"]:
            raise ValueError(f"rows {rows} of {signature['rows']}")
        wide = [hypers[0]] * signature["rows"]  # a finished row's numbers do not matter
        for row, hyper in zip(rows, hypers, strict=True):
            wide[row] = hyper
        stacked.spread(rows, signature["rows"])
        optimizer = BatchedOptimizer(plan.kind, wide, stacked.sizes, device)
        restore(members, rows, stacked, optimizer, states, device)
    except Exception as exc:
        raise Unresumable(str(exc)) from exc
    slots: list[Member | None] = [None] * signature["rows"]
    for row, m in zip(rows, members, strict=True):
        slots[row] = m
    return slots, stacked, optimizer, signature


def restore(members: list[Member], rows: list[int], stacked: StackedModel,
            optimizer: BatchedOptimizer, states: list[dict[str, Any]],
            device: torch.device) -> None:
    """Set freshly built members (in ``rows``) to their checkpoints ``states``."""
    with torch.no_grad():
        for m, row, state in zip(members, rows, states, strict=True):
            for kind, tensors in (("params", stacked.params), ("buffers", stacked.buffers)):
                if set(state[kind]) != set(tensors):
                    raise ValueError(f"the checkpoint's {kind} are not the model's")
                for name, value in state[kind].items():
                    if value.shape != tensors[name].shape[1:]:
                        raise ValueError(f"{name}: shape {tuple(value.shape)} in the "
                                         f"checkpoint")
                    tensors[name][row].copy_(value)
            m.rule.load_state_dict(state["rule"])
            m.gen.set_state(state["gen"])
            m.rng = tuple(state["rng"])
            m.history = list(state["history"])
            m.best = None if state["best"] is None else \
                {k: v.to(device) for k, v in state["best"].items()}
            m.wall_s = float(state["wall_s"])
            m.resumed = int(state["header"]["epoch"])
    optimizer.load_rows([state["optim"] for state in states], rows,
                        states[0]["header"]["group"]["steps"])
    set_rng_state(states[0]["group_rng"], device)  # the group's (dropout under vectorized)


def code_of(context, run: Run) -> str:
    """The code record a member's checkpoint is saved under (see Context.code_record)."""
    record = getattr(context, "code_record", None)
    return record(run) if record is not None else ""


def fits(head: Any, run: Run, device: torch.device, code: str = "") -> bool:
    """Whether a checkpoint's header is a vectorized member's this run can continue."""
    return (isinstance(head, dict) and head.get("format") == VECTORIZED_FORMAT
            and head.get("device") == device.type and head.get("run_id") == run.run_id
            and head.get("code", "") == code
            and 0 < head.get("epoch", 0) < run.epochs and isinstance(head.get("group"), dict))


def signature_of(head: dict[str, Any]) -> tuple:
    """What the members restored together must share (the executor groups by it)."""
    group = head["group"]
    return (group["id"], group["epoch"], group["steps"], group["chunk"], group["width"],
            group["rows"], tuple(group["optim"]))


def load_group(store, plan: Plan, keys: dict[str, str], codes: dict[str, str],
               device: torch.device) -> dict[str, dict[str, Any]] | None:
    """Every member's checkpoint (run id -> state) when all of them have one that fits
    and they share one signature; else None (the group starts from scratch)."""
    saved = {}
    for run in plan.runs:
        state = store.load(keys[run.run_id], map_location="cpu")
        head = state.get("header") if state is not None else None
        if not fits(head, run, device, codes[run.run_id]):
            return None
        saved[run.run_id] = state
    try:
        signatures = {signature_of(s["header"]) for s in saved.values()}
    except (KeyError, TypeError):  # a header of another version
        return None
    if len(signatures) != 1:
        return None
    epoch, steps = next(iter(signatures))[1:3]
    if steps != epoch * plan.steps_per_epoch:
        return None
    return saved


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
           clock: Clock, threads, weights: bool = True) -> Iterator[Finished]:
    """Evaluate the test split for members that are done (at the restored epoch when the
    stopper restores) and hand back their outcomes, each with the weights its test split
    saw (its row of the parameters and buffers, the stopper's best when restored)."""
    tested = [(m, row) for m, row in zip(members, rows, strict=True) if not m.error]
    results: dict[int, tuple[float, float, dict[str, torch.Tensor]]] = {}
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
        # the weights the test split saw, each member's own (what --save writes)
        states = stacked.state_dicts(params, buffers) if weights else [None] * len(tested)
        for i, (m, _) in enumerate(tested):
            results[id(m)] = (losses[i], accs[i], states[i])
    clock.charge(members)
    for m in members:
        if m.error:
            yield Finished(m.run, None, m.wall_s, m.error)
            continue
        test_loss, test_acc, state = results[id(m)]
        yield Finished(m.run, Trained(m.history, test_loss, test_acc, m.restored, m.stopped_by,
                                      resumed_epoch=m.resumed, state_dict=state), m.wall_s)
