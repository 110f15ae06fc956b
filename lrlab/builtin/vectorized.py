"""Built-in executors `vectorized` and `auto`: many runs of one architecture trained at
once with torch.func (stacked parameters, ``functional_call``, ``vmap``).

Runs that share dataset, model, loss, batch size, augmentation and optimizer structure
form a group (see :mod:`lrlab.vectorized.plan`); each member keeps its own learning rate,
seed, optimizer numbers, schedule, stopper and epochs, and gets the history the local
executor would give it. A group vmap cannot serve (a BatchNorm model, a plugin
optimizer, a single run) is trained one run at a time, and the user is told once why.

Augmentation draws from each member's own random stream, as the local executor's run
would. ``vectorized`` also vectorizes runs whose model draws randomness in training
(dropout): those numbers are drawn for the whole group, so the results are valid but not
the local executor's. ``auto`` keeps those on the local executor, so it changes how fast a
sweep runs, not its numbers (up to float rounding: batched kernels may round the last
bits differently from a single run's). ``auto`` also trains a group locally when it is
too small to repay vectorizing (see MIN_SPARED_STEPS), without a note: it is never much
slower than ``local``. ``vectorized`` vectorizes every group vmap can serve.

Resuming a stopped sweep: the runs of a group whose members left checkpoints
(:mod:`lrlab.vectorized.trainer`) are grouped by the checkpoints' signature first, so the
members saved together are trained together again from where they were, in their saved
layout (a group of one included: ``auto`` does not send it to the local executor); a run
whose checkpoint is the local executor's continues on the local executor; the others are
grouped as usual. A resumed run's numbers are those it would have had uninterrupted on
the same executor, dropout under ``vectorized`` included.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

from lrlab.config import Run
from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.executors import Context
    from lrlab.results import RunResult
    from lrlab.vectorized.plan import Plan

# The training code (torch) is imported when runs are run, not when the plugin is loaded,
# so ``lrlab list`` and ``lrlab plugins`` start quickly.

# When ``auto`` vectorizes a group: when the single-run steps it spares repay its set-up.
# A group costs a fixed set-up the local executor does not pay (planning: a probe model
# and one eager vmap step; tracing the step with make_fx, 0.1-0.3 s; the stacking), and
# then saves, at each of its steps, the per-step overhead (Python, dispatch, small
# kernels) of the single-run steps it replaces: W members stepping together take one
# step where the local executor takes W. So what pays is the steps spared, the members'
# steps less the group's own (W - 1 runs' steps when the members train equally long), at
# least MIN_SPARED_STEPS of them. A step that is mostly compute (a forward pass of more
# than COMPUTE_BOUND multiply-adds per batch, counted by torch's flop counter; for an MLP
# that is parameters x batch size) spares less per step and costs more to set up, so on
# CPU it needs proportionally more.
# Measured with benchmarks/auto_vs_local.py: CPU seconds of run_sweep on one thread, min
# of 2 reps, local vs vectorized, W runs x E epochs, batch 32, on a shared 2-core machine
# (load 4, then 8: a rep varies by up to 0.1-0.2 s; two runs given as "run 1 / run 2"):
#   digits, mlp (0.83M multiply-adds a step, 34 steps an epoch):
#     2 x 5 (170 spared)  0.36 vs 0.40 / 0.31 vs 0.37
#     4 x 3 (306)         0.44 vs 0.56 / 0.43 vs 0.40
#     8 x 1 (238)         0.35 vs 0.36 / 0.35 vs 0.28
#     4 x 5 (510)         0.67 vs 0.59 / 0.55 vs 0.41
#     16 x 1 (510)        0.65 vs 0.46 / 0.63 vs 0.50
#     8 x 3 (714)         0.75 vs 0.74 / 0.66 vs 0.49
#     16 x 5 (2550)       2.09 vs 0.97 / 1.90 vs 0.94
#   digits, mlp(width=512) (9.6M, needs 1,200): 8 x 3 (714) 1.67 vs 1.78 / 1.84 vs 2.25
#   digits, cnn(channels=16) (7.4M, needs 923): 8 x 3 (714) 3.11 vs 2.64 / 2.57 vs 2.75
#   12,000 16x16 samples, mlp(width=256) (4.3M, needs 535; 225 steps an epoch):
#     2 x 2 (450) 1.04 vs 1.20 / 0.94 vs 1.10    4 x 1 (675) 1.39 vs 1.29 / 1.17 vs 1.12
# Break-even lies at 250-500 spared steps for small models; from 500 on every group
# measured was faster vectorized, below 250 every one faster local, so with 500 ``auto``
# is never slower than ``local`` (and at worst ~20% slower than ``vectorized``, between
# the two). The default sweep's groups (6 runs x 40 epochs) spare 6,800. Calibrated on
# CPU; on a GPU the per-step overhead vmap saves is larger, so the same count is a
# conservative bar there, and the compute scaling is not applied (unmeasured).
MIN_SPARED_STEPS = 500
COMPUTE_BOUND = 4_000_000

RANDOM = ("{what} draws its random numbers for the whole group, so those runs are valid "
          "but not identical to the local executor's")
AUTO_RANDOM = "{what} would draw other random numbers under vmap"


class Resumed(list):
    """A group of runs continuing together from their checkpoints."""


class VectorizedExecutor:
    """Trains groups of compatible runs together; the rest one after another."""

    def __init__(self, auto: bool, max_group: int,
                 min_spared_steps: int = MIN_SPARED_STEPS) -> None:
        self.auto = auto
        self.max_group = max(1, max_group)
        self.min_spared_steps = max(0, min_spared_steps)  # auto only: see MIN_SPARED_STEPS
        self.name = "auto" if auto else "vectorized"
        # vmap needs the data in memory; auto trains streamed datasets one run at a time
        self.cannot_stream = "" if auto else "needs the data in memory (vmap)"

    def groups(self, runs: list[Run], context: Context) -> list[list[Run] | tuple[str, Run]]:
        """Runs grouped by what they must share, in order of first appearance; a run that
        can never be vectorized comes as ``(reason, run)``, one that continues from a local
        checkpoint as ``("", run)``, members continuing from their checkpoints as a
        :class:`Resumed` group."""
        from lrlab.vectorized.plan import group_key

        keyed: dict[object, list[Run]] = {}
        out: list[list[Run] | tuple[str, Run]] = []
        for run in runs:
            key = group_key(context.registry, run)
            if isinstance(key, str):
                out.append((key, run))
                continue
            if key not in keyed:
                keyed[key] = []
                out.append(keyed[key])
            keyed[key].append(run)
        chunks: list[list[Run] | tuple[str, Run]] = []
        for item in out:
            if isinstance(item, tuple):
                chunks.append(item)
                continue
            for part in by_checkpoint(item, context):
                if isinstance(part, tuple):
                    chunks.append(part)
                else:
                    chunks += [type(part)(part[i:i + self.max_group])
                               for i in range(0, len(part), self.max_group)]
        return chunks

    def run(self, runs: list[Run], context: Context) -> Iterator[RunResult]:
        from lrlab.executors import one_by_one

        tally: Counter = Counter()
        for item in self.groups(runs, context):
            if context.stop_requested:
                return
            group = [item[1]] if isinstance(item, tuple) else list(item)
            resumed = isinstance(item, Resumed)
            quiet = isinstance(item, tuple) and not item[0]  # a local checkpoint goes on
            if quiet or (len(group) == 1 and self.auto and not isinstance(item, tuple)
                         and not resumed):
                tally["local"] += 1  # a group of one gains nothing from vmap: no news
                yield from one_by_one(group, context)
                continue
            plan = item[0] if isinstance(item, tuple) else self.plan(group, context, resumed)
            if plan is None:  # auto: too small to repay vectorizing, no news either
                tally["local"] += len(group)
                yield from one_by_one(group, context)
                continue
            if isinstance(plan, str):
                self.say(context, f"the {group[0].model} runs were trained one at a time: "
                                  f"{plan}")
                tally["local"] += len(group)
                yield from one_by_one(group, context)
                continue
            if (yield from self.together(plan, context)):
                tally["vectorized"] += len(group)
                tally["groups"] += 1
            else:
                tally["local"] += len(group)
        if self.auto and tally["vectorized"]:
            context.note(f"auto: {tally['vectorized']} run(s) trained vectorized in "
                         f"{tally['groups']} group(s), {tally['local']} one at a time")

    def plan(self, group: list[Run], context: Context,
             resumed: bool = False) -> Plan | str | None:
        """The group's plan, or why it is trained one run at a time, or None where ``auto``
        finds it too small to repay vectorizing (``resumed``: members continuing from
        their checkpoints, planned even alone, and never too small)."""
        from lrlab.vectorized.plan import plan_group

        weigh = self.auto and not resumed
        try:
            data = context.data(group[0])
            if data.streaming:
                return "their dataset is streamed from disk, and vmap needs it in memory"
            spared = spared_steps(group, math.ceil(len(data.train[1]) / group[0].batch_size))
            if weigh and not pays(spared, 0, context.device.type, self.min_spared_steps):
                return None  # decided before the planning, which is part of the set-up
            plan = plan_group(group, context.registry, data, group[0].batch_size,
                              context.device, single=resumed)
        except Exception as exc:  # the local executor turns it into each run's error
            return f"preparing them together failed ({type(exc).__name__}: {exc})"
        if isinstance(plan, str):
            return plan
        if weigh and not pays(spared, plan.step_size, context.device.type,
                              self.min_spared_steps):
            return None
        # augmentation draws from each member's own stream (the local executor's numbers);
        # dropout inside a vmapped forward cannot, so its numbers are the group's
        if plan.stochastic and self.auto:
            return AUTO_RANDOM.format(what="the model's dropout")
        if plan.stochastic:
            what = "the model's dropout" + (" and augmentation" if plan.augmented else "")
            self.say(context, RANDOM.format(what=what))
        if self.auto and context.settings.amp and context.device.type == "cuda":
            return "bfloat16 autocast rounds batched and single matmuls differently"
        return plan

    def say(self, context: Context, text: str) -> None:
        """Tell the user once (notes are deduplicated)."""
        context.note(f"{self.name}: {text}")

    def together(self, plan: Plan, context: Context) -> Generator[RunResult, None, bool]:
        """Train a group together; if that fails, train its unfinished runs one by one.
        Returns whether the group was trained together to the end."""
        from lrlab.executors import one_by_one
        from lrlab.vectorized.trainer import train_group

        handed: set[str] = set()
        try:
            for done in train_group(plan, context):
                handed.add(done.run.run_id)
                yield context.result(done.run, done.trained, wall_s=done.wall_s,
                                     error=done.error)
        except Exception as exc:
            self.say(context, f"training a group together failed ({type(exc).__name__}: "
                              f"{exc}); its runs were trained one at a time")
            # lrlab_run_start already fired for these runs when the group started
            yield from one_by_one([r for r in plan.runs if r.run_id not in handed], context,
                                  started=True)
            return False
        return True


def by_checkpoint(runs: list[Run], context: Context) -> list[list[Run] | tuple[str, Run]]:
    """``runs`` (of one group key) split by their checkpoints: a :class:`Resumed` group per
    signature of vectorized members' checkpoints, ``("", run)`` per run continuing a local
    checkpoint, and the rest (no checkpoint, or one that does not fit) as one group."""
    from lrlab.engine import LOCAL_FORMAT
    from lrlab.vectorized.trainer import VECTORIZED_FORMAT, signature_of

    store = getattr(context, "checkpoints", None)
    if store is None:
        return [runs]
    device = getattr(context, "device", None)
    resumed: dict[tuple, Resumed] = {}
    local: list[tuple[str, Run]] = []
    rest: list[Run] = []
    for run in runs:
        head = store.peek(context.run_key(run))
        if head is None or device is None or head.get("device") != device.type \
                or head.get("code", "") != context.code_record(run):
            rest.append(run)  # none, or one that does not fit: trained from scratch
        elif head.get("format") == LOCAL_FORMAT:
            local.append(("", run))
        elif head.get("format") == VECTORIZED_FORMAT and isinstance(head.get("group"), dict):
            try:
                resumed.setdefault(signature_of(head), Resumed()).append(run)
            except (KeyError, TypeError):  # a header of another version
                rest.append(run)
        else:
            rest.append(run)
    return [*resumed.values(), *local, *([rest] if rest else [])]


def spared_steps(runs: list[Run], steps_per_epoch: int) -> int:
    """The single-run steps training ``runs`` together spares: the members' steps less
    the group's own (its longest member's)."""
    epochs = [run.epochs for run in runs]
    return (sum(epochs) - max(epochs)) * steps_per_epoch


def pays(spared: int, step_size: int, device_type: str,
         minimum: int = MIN_SPARED_STEPS) -> bool:
    """Whether sparing ``spared`` single-run steps whose forward pass is ``step_size``
    multiply-adds (0: not known yet) repays vectorizing a group (see MIN_SPARED_STEPS)."""
    needed = float(minimum)
    if device_type == "cpu":
        needed *= max(1.0, step_size / COMPUTE_BOUND)
    return spared >= needed


def vectorized(*, max_group: int = 64) -> VectorizedExecutor:
    """Train runs of one architecture together with torch.func (vmap), up to `max_group` at once."""
    return VectorizedExecutor(auto=False, max_group=max_group)


def auto(*, max_group: int = 64, min_spared_steps: int = MIN_SPARED_STEPS) -> VectorizedExecutor:
    """Vectorized where that gives the local executor's answers and sparing `min_spared_steps` single-run steps repays it, local otherwise."""
    return VectorizedExecutor(auto=True, max_group=max_group, min_spared_steps=min_spared_steps)


@hookimpl
def lrlab_register_executors(register):
    register("vectorized", vectorized)
    register("auto", auto)
