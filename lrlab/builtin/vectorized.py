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
bits differently from a single run's).

Resuming a stopped sweep: the runs of a group whose members left checkpoints
(:mod:`lrlab.vectorized.trainer`) are grouped by the checkpoints' signature first, so the
members saved together are trained together again from where they were, in their saved
layout (a group of one included: ``auto`` does not send it to the local executor); a run
whose checkpoint is the local executor's continues on the local executor; the others are
grouped as usual. A resumed run's numbers are those it would have had uninterrupted on
the same executor, dropout under ``vectorized`` included.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator, Iterator

from lrlab.config import Run
from lrlab.engine import LOCAL_FORMAT
from lrlab.executors import Context, one_by_one
from lrlab.markers import hookimpl
from lrlab.results import RunResult
from lrlab.vectorized.plan import Plan, group_key, plan_group
from lrlab.vectorized.trainer import VECTORIZED_FORMAT, signature_of, train_group

RANDOM = ("{what} draws its random numbers for the whole group, so those runs are valid "
          "but not identical to the local executor's")
AUTO_RANDOM = "{what} would draw other random numbers under vmap"


class Resumed(list):
    """A group of runs continuing together from their checkpoints."""


class VectorizedExecutor:
    """Trains groups of compatible runs together; the rest one after another."""

    def __init__(self, auto: bool, max_group: int) -> None:
        self.auto = auto
        self.max_group = max(1, max_group)
        self.name = "auto" if auto else "vectorized"

    def groups(self, runs: list[Run], context: Context) -> list[list[Run] | tuple[str, Run]]:
        """Runs grouped by what they must share, in order of first appearance; a run that
        can never be vectorized comes as ``(reason, run)``, one that continues from a local
        checkpoint as ``("", run)``, members continuing from their checkpoints as a
        :class:`Resumed` group."""
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

    def plan(self, group: list[Run], context: Context, resumed: bool = False) -> Plan | str:
        """The group's plan, or why it is trained one run at a time (``resumed``: members
        continuing from their checkpoints, planned even alone)."""
        try:
            data = context.data(group[0])
            plan = plan_group(group, context.registry, data, group[0].batch_size,
                              context.device, single=resumed)
        except Exception as exc:  # the local executor turns it into each run's error
            return f"preparing them together failed ({type(exc).__name__}: {exc})"
        if isinstance(plan, str):
            return plan
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


def vectorized(*, max_group: int = 64) -> VectorizedExecutor:
    """Train runs of one architecture together with torch.func (vmap), up to `max_group` at once."""
    return VectorizedExecutor(auto=False, max_group=max_group)


def auto(*, max_group: int = 64) -> VectorizedExecutor:
    """Vectorized where that gives the local executor's answers, local otherwise."""
    return VectorizedExecutor(auto=True, max_group=max_group)


@hookimpl
def lrlab_register_executors(register):
    register("vectorized", vectorized)
    register("auto", auto)
