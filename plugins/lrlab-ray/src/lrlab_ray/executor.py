"""The driver side of the ``ray`` executor: one Ray task per run, results as they arrive.

Ray is imported only in :meth:`RayExecutor.run`: lrlab loads every installed plugin on
every sweep, and a sweep that does not use this executor should not pay for Ray.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from lrlab import Context, PluginRecipe, Run, RunResult, UsageError
from lrlab_ray.worker import train_remote


class RayExecutor:
    """Sends each run to a Ray cluster as a task and yields each result as it finishes."""

    def __init__(self, *, address: str = "", num_cpus: int = 0, cpus_per_run: float = 1.0,
                 gpus_per_run: float = 0.0, retries: int = 0) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.retries = retries

    def _connect(self, ray) -> bool:
        """Start or join a cluster; True when this call did (and so must shut it down).

        A Ray already initialized in this process (``ray.init()`` by the caller) is used
        as it is and left running.
        """
        if ray.is_initialized():
            return False
        if self.address:
            try:
                ray.init(address=self.address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(f"ray: cannot join the Ray cluster at "
                                 f"{self.address!r}: {first}") from None
        else:
            ray.init(num_cpus=self.num_cpus or None, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        return True

    def _gpus(self, context: Context) -> float:
        if self.gpus_per_run <= 0 and context.config.device.startswith("cuda"):
            context.note("ray: --device cuda asks each Ray task for one GPU "
                         "(set ray(gpus_per_run=...) to share or to use more)")
            return 1.0
        return self.gpus_per_run

    def run(self, runs: list[Run], context: Context) -> Iterator[RunResult]:
        """Submit every run, then yield results in the order they finish.

        Under ``-x`` (``context.stop_requested``) the runs not yet finished are
        cancelled and nothing more is yielded. A task whose worker died (a crash, the
        out-of-memory killer, a lost node) becomes an ``error`` result for its run.
        """
        if not runs:
            return
        import ray

        recipe = PluginRecipe.of(context.plugins)
        registers = [n for n in recipe.unnamed if context.plugins.info[n].registered]
        if registers:
            context.note(f"ray: components of plugin objects given through the Python API "
                         f"({', '.join(registers)}) exist only in the driver; runs that "
                         f"use them fail on Ray workers (install them or load them with -p)")
        config = context.config
        if not Path(config.data_root).is_absolute():  # workers may start in other folders
            config = replace(config, values={**config.values,
                                             "data_root": str(Path(config.data_root).resolve())})
        gpus = self._gpus(context)
        started = self._connect(ray)
        pending: dict = {}
        try:
            task = ray.remote(num_cpus=self.cpus_per_run, num_gpus=gpus,
                              max_retries=self.retries)(train_remote)
            config_ref = ray.put(config)
            token = uuid.uuid4().hex
            for run in runs:
                ref = task.options(name=f"lrlab:{run.run_id}").remote(
                    token, config_ref, recipe, run, self.cpus_per_run, gpus)
                pending[ref] = run
            while pending and not context.stop_requested:
                [ref], _ = ray.wait(list(pending), num_returns=1)
                yield self._collect(ray, ref, pending.pop(ref), context)
        finally:
            for ref in pending:  # -x, or the driver stopped iterating
                with contextlib.suppress(Exception):  # already finished or gone
                    ray.cancel(ref)
            if started:
                ray.shutdown()

    @staticmethod
    def _collect(ray, ref, run: Run, context: Context) -> RunResult:
        """The finished task's result, or an ``error`` result saying why there is none."""
        try:
            result, notes = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # raised outside train_one
            return context.result(run, error=str(exc))
        except ray.exceptions.RayError as exc:
            return context.result(run, error=f"{type(exc).__name__}: {exc}\nthe Ray task "
                                             f"training this run died before it finished")
        for note in notes:
            context.note(note)
        # the worker's config names the data root by its absolute path; the resume key
        # is the driver's, as for the local executor
        result.summary["key"] = context.run_key(run)
        return result
