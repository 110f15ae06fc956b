"""Built-in executors: local (one run after another on one device).

The training code (:mod:`lrlab.executors`, torch) is imported when runs are run, not when
the plugin is loaded, so ``lrlab list`` and ``lrlab plugins`` start quickly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from lrlab.markers import hookimpl

if TYPE_CHECKING:  # pragma: no cover
    from lrlab.config import Run
    from lrlab.executors import Context
    from lrlab.results import RunResult


class LocalExecutor:
    """Trains the runs one after another on the sweep's device."""

    def run(self, runs: list[Run], context: Context) -> Iterator[RunResult]:
        from lrlab.executors import one_by_one

        return one_by_one(runs, context)


def local() -> LocalExecutor:
    """One run after another on the chosen device."""
    return LocalExecutor()


@hookimpl
def lrlab_register_executors(register):
    register("local", local)
