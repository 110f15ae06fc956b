"""The worker side of the ``ray`` executor: rebuild the driver's plugin host, train one run.

A Ray worker is another Python process (maybe on another machine), so it cannot share the
driver's plugin manager. The driver records how its plugins were loaded in a
:class:`lrlab.PluginRecipe` (the same record a sweep's manifest keeps: ``-p`` modules,
local ``lrlab_plugins.py`` files with their text, blocked names, the entry points loaded)
and each worker loads it with :meth:`lrlab.PluginRecipe.load`, once per sweep and worker
process. A local plugin file missing on the worker's machine is written from its text.

Nothing here imports Ray: this module runs inside a Ray task, and the task is a plain
function.
"""

from __future__ import annotations

from lrlab import Context, PluginRecipe, Run, RunResult, UsageError


def worker_device(config, gpus: float):
    """The device a task trains on: ``auto`` is CUDA only when the task was given a GPU."""
    import torch

    if config.device == "auto":
        return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {config.device} was asked for, but torch sees no CUDA "
                         f"device on this Ray worker")
    return torch.device(config.device)


# token -> Context: the host and the data of the current sweep, kept while this worker
# process trains more of its runs (Ray reuses worker processes between tasks)
_CONTEXTS: dict[str, Context] = {}


def _context(token: str, config, recipe: PluginRecipe, cpus: float, gpus: float) -> Context:
    if token not in _CONTEXTS:
        import torch

        _CONTEXTS.clear()  # one sweep at a time per worker process
        torch.set_num_threads(max(1, int(cpus)))
        # no checkpoints in workers: their config (absolute paths) keys runs differently
        # from the driver, which removes a run's checkpoint once it is stored
        _CONTEXTS[token] = Context(config, recipe.load(), worker_device(config, gpus),
                                   checkpoints=None)
    return _CONTEXTS[token]


def train_remote(token: str, config, recipe: PluginRecipe, run: Run, cpus: float,
                 gpus: float) -> tuple[RunResult, list[str]]:
    """The Ray task: train one run here and hand back its result and the context's notes.

    :meth:`lrlab.Context.train_one` turns an exception in training into an ``error``
    result; an exception while loading the plugins propagates and the driver turns it
    into an ``error`` result.
    """
    context = _context(token, config, recipe, cpus, gpus)
    result = context.train_one(run)
    return result, list(context.notes)
