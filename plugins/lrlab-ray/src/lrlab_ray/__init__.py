"""lrlab plugin: the ``ray`` executor, which trains a sweep's runs as tasks on a Ray cluster.

    lrlab sweep --executor ray                       # a Ray cluster on this machine
    lrlab sweep --executor "ray(address=auto)"       # the cluster this machine belongs to

Each run is one Ray task. The worker rebuilds the driver's plugins, trains the run
(``lrlab_run_start`` and ``lrlab_epoch_end`` fire there) and sends the result back; the
driver judges and stores each result the moment it arrives. Importing this module does
not import Ray: lrlab loads it on every sweep.
"""

from __future__ import annotations

from lrlab import UsageError, hookimpl
from lrlab_ray.executor import RayExecutor

__version__ = "0.1.0"


def ray(*, address: str = "", num_cpus: int = 0, cpus_per_run: float = 1.0,
        gpus_per_run: float = 0.0, retries: int = 0) -> RayExecutor:
    """One Ray task per run, on a Ray cluster started here or the one at address.

    :param address: ``""`` starts a Ray cluster on this machine for the sweep (and
        stops it after); ``"auto"`` or ``"ray://host:port"`` joins a running one.
    :param num_cpus: CPUs of the local cluster (0: all of this machine's).
    :param cpus_per_run: CPUs Ray reserves for each run (also its torch threads).
    :param gpus_per_run: GPUs per run (fractions share one GPU); ``device=auto`` trains
        on CUDA only when this is above 0.
    :param retries: times Ray re-runs a run whose worker process died.
    """
    if num_cpus < 0 or cpus_per_run <= 0 or gpus_per_run < 0 or retries < 0:
        raise UsageError("ray: num_cpus, gpus_per_run and retries must be >= 0 and "
                         "cpus_per_run > 0")
    return RayExecutor(address=address, num_cpus=num_cpus, cpus_per_run=cpus_per_run,
                       gpus_per_run=gpus_per_run, retries=retries)


@hookimpl
def lrlab_register_executors(register):
    register("ray", ray)
