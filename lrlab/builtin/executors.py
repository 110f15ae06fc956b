"""Built-in executors: local (one run after another on one device)."""

from __future__ import annotations

from collections.abc import Iterator

from lrlab.config import Run
from lrlab.executors import Context, one_by_one
from lrlab.markers import hookimpl
from lrlab.results import RunResult


class LocalExecutor:
    """Trains the runs one after another on the sweep's device."""

    def run(self, runs: list[Run], context: Context) -> Iterator[RunResult]:
        return one_by_one(runs, context)


def local() -> LocalExecutor:
    """One run after another on the chosen device."""
    return LocalExecutor()


@hookimpl
def lrlab_register_executors(register):
    register("local", local)
