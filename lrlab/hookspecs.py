"""Every hook lrlab calls, in one module.

Plugins implement these with ``@lrlab.hookimpl`` (a function or method named
``lrlab_*`` is taken as an implementation even unmarked); a name that matches no spec
here, or an argument a spec does not offer, fails loading with the plugin named. An
implementation may take any subset of a spec's arguments. Arguments are only ever
added at the end, never renamed.

Order of calls in one sweep (the same on every executor)::

    lrlab_register_*          once per kind, when plugins are loaded (in load order)
    lrlab_configure           once, after loading, before the grid is expanded
    lrlab_sweep_start         once, with the runs about to be trained
      lrlab_run_start         per run, before its first epoch
        lrlab_epoch_end       per run and epoch, after the epoch's evaluation
      lrlab_diagnose          per run, after training, to add flags and verdicts
      lrlab_run_end           per run, with its final result and verdict
    lrlab_sweep_end           once, with the final tables
    lrlab_report_sections     when the HTML report is built

The local executor trains one run after another, so its calls nest exactly as drawn.
An executor that trains several runs at once (``vectorized``) interleaves the calls of
different runs, but each run's own calls keep this order.

An exception in ``lrlab_run_start``, ``lrlab_epoch_end``, ``lrlab_diagnose`` or
``lrlab_run_end`` makes that run's verdict ``error``, its flag naming the plugin and the
hook, and the sweep goes on; one in ``lrlab_report_sections`` is shown in the report in
place of that plugin's sections; one in any other hook stops the sweep with a
:class:`lrlab.PluginError` naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lrlab.markers import hookspec

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from lrlab.config import Run, SweepConfig
    from lrlab.registry import Register
    from lrlab.report.sections import Section
    from lrlab.results import RunResult
    from lrlab.verdicts import Flag

# -- registration --------------------------------------------------------------------
# Each is called once when plugins are loaded, once per plugin, with a ``register``
# callable bound to that plugin: ``register(name, factory, doc=None)``. The factory's
# keyword-only parameters are the component's parameters (``mlp(width=64)``); their
# annotations and defaults give their types. Registering a name twice is an error
# naming both plugins.


@hookspec
def lrlab_register_datasets(register: Register) -> None:
    """Register datasets.

    A dataset factory is called as ``factory(root, **params)``: ``root`` is the data
    root (``--data-root``), and it returns a :class:`lrlab.data.Data` (tensors in
    memory, class names, input shape; optionally its own test split). Raise
    :class:`lrlab.UsageError` when the files are missing, so the user gets one line.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_models(register: Register) -> None:
    """Register models.

    A model factory is called as ``factory(input_shape, num_classes, **params)`` with
    ``input_shape = (channels, height, width)`` and returns a ``torch.nn.Module`` that
    maps a batch of inputs to ``num_classes`` logits.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_losses(register: Register) -> None:
    """Register losses.

    A loss factory is called as ``factory(num_classes, **params)`` and returns a
    callable ``(logits, targets) -> scalar tensor`` where ``targets`` are class indices
    (a loss that wants one-hot targets makes them itself).

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_optimizers(register: Register) -> None:
    """Register optimizers.

    An optimizer factory is called as ``factory(params, lr, **params)`` and returns a
    ``torch.optim.Optimizer``.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_schedules(register: Register) -> None:
    """Register learning-rate schedules.

    A schedule factory is called as ``factory(optimizer, steps_per_epoch, epochs,
    **params)`` and returns a ``torch.optim.lr_scheduler.LRScheduler`` that lrlab steps
    once per batch. The learning rate the optimizer actually used is recorded in the
    history's ``lr`` column.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_augmentations(register: Register) -> None:
    """Register augmentations.

    An augmentation factory is called as ``factory(input_shape, **params)`` and returns
    a callable ``Tensor -> Tensor`` that transforms a whole batch ``(N, C, H, W)`` on
    its device, with fresh randomness per sample drawn from torch's global generator
    (which lrlab seeds per run). Augmentations combine with ``+``: ``flip+crop``.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_stoppers(register: Register) -> None:
    """Register early-stopping strategies.

    A stopper factory is called as ``factory(**params)`` and returns a
    :class:`lrlab.stopping.Stopper`: ``update(epoch, metrics) -> bool`` says stop,
    ``best_epoch`` is the epoch it would keep, and ``restore_best`` says whether the
    weights of that epoch are restored before the test split is evaluated.

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


@hookspec
def lrlab_register_executors(register: Register) -> None:
    """Register executors.

    An executor factory is called as ``factory(**params)`` and returns an object with
    ``run(runs, context) -> Iterator[RunResult]`` that trains the given runs and yields
    each result as it finishes (see :class:`lrlab.executors.Executor`).

    :param register: ``register(name, factory, doc=None)``, bound to this plugin.
    """


# -- lifecycle -------------------------------------------------------------------------


@hookspec
def lrlab_configure(config: SweepConfig) -> None:
    """Called once after plugins are loaded and before the grid is expanded.

    :param config: the sweep's :class:`lrlab.config.SweepConfig`; a plugin may change
        its settings here (for example add an axis value or tighten a threshold).
    """


@hookspec
def lrlab_sweep_start(config: SweepConfig, runs: list[Run]) -> None:
    """Called once before the first run is trained.

    :param config: the sweep's configuration.
    :param runs: the runs that will be trained now (already-finished runs that a
        resumed sweep skips are not in it).
    """


@hookspec
def lrlab_run_start(run: Run) -> None:
    """Called before a run's first epoch, on whichever executor trains it.

    Its data is loaded by then; its model is not built yet. A run that continues from the
    checkpoint a killed or interrupted sweep left gets this call again when it resumes.

    :param run: the run about to be trained (its ``run_id`` and every axis value).
    """


@hookspec
def lrlab_epoch_end(run: Run, epoch: int, metrics: dict[str, float]) -> bool | None:
    """Called after each epoch's clean evaluation, on whichever executor trains the run.

    Not called for an epoch at which the run diverged beyond recovery (a mini-batch loss
    became non-finite, or the mean mini-batch loss stayed above ``diverge_factor`` times
    its start for ``diverge_patience`` epochs): the run stops there.
    When an implementation answers ``True``, the run stops after this epoch with
    ``stopped_by = "plugin"``; a stopper's ``restore_best`` still applies. If an executor
    gives up on a way of training a run midway (a vectorized group that fails is
    retrained one run at a time), the run starts over from epoch 1 and this hook sees
    those epochs again; ``lrlab_run_start`` does not fire twice. A run resumed from a
    checkpoint calls it only for the epochs trained after the checkpoint (an epoch trained
    after the last checkpoint, before the sweep was killed, is seen again).

    :param run: the run being trained.
    :param epoch: the epoch just finished, counted from 1.
    :param metrics: ``lr train_loss train_acc val_loss val_acc`` of this epoch.
    :return: ``True`` to stop the run after this epoch (as an early stopper would);
        ``None`` or ``False`` to go on.
    """


@hookspec
def lrlab_diagnose(run: Run, history: pd.DataFrame, summary: dict[str, Any],
                   thresholds: dict[str, float]) -> list[Flag] | None:
    """Called once per finished run to judge it.

    The built-in verdicts (diverged, unstable, underfit, overfit) are themselves an
    implementation of this hook. The run's verdict is the most severe verdict named by
    any flag (``ok < overfit < underfit < unstable < diverged < error``); its ``cause``
    column is the ``cause`` of the first flag naming that verdict (a plugin may give its
    own word, or one of :data:`lrlab.verdicts.CAUSES` so lrlab's hints apply).

    :param run: the run.
    :param history: the run's history rows (epoch 0 is the untrained model).
    :param summary: the run's row of the ``runs`` table so far (metrics, gaps, gl).
    :param thresholds: the sweep's verdict thresholds (plugins may read their own keys).
    :return: a list of :class:`lrlab.verdicts.Flag` (``verdict`` or ``None`` for a
        note, ``text`` with the numbers that triggered it, and an optional ``cause``),
        or ``None``.
    """


@hookspec
def lrlab_run_end(run: Run, result: RunResult) -> None:
    """Called when a run is finished and judged, before its row is stored.

    :param run: the run.
    :param result: its :class:`lrlab.results.RunResult`: ``summary`` (the runs row,
        verdict and flags included), ``history`` rows, ``error`` text if it raised.
    """


@hookspec
def lrlab_sweep_end(config: SweepConfig, runs: pd.DataFrame, history: pd.DataFrame) -> None:
    """Called once after the last run, with the sweep's final tables.

    :param config: the sweep's configuration.
    :param runs: the ``runs`` table, one row per run (resumed runs included).
    :param history: the ``history`` table, one row per run and epoch.
    """


@hookspec
def lrlab_report_sections(runs: pd.DataFrame, history: pd.DataFrame,
                          manifest: dict[str, Any]) -> list[Section] | None:
    """Called when the HTML report is built, to add sections to it.

    :param runs: the ``runs`` table.
    :param history: the ``history`` table.
    :param manifest: the sweep's manifest (config, command line, versions, device);
        its ``folder`` is the folder the report is written to, where the sweep's files
        are now.
    :return: a list of :class:`lrlab.Section` (``title``, ``html``), shown in
        order under the plugin's name; ``html`` is trusted markup the plugin built
        (escape what you interpolate), or ``None``.
    """
