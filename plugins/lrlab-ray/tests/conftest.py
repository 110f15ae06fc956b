"""Fixtures of the lrlab-ray tests: one Ray cluster per test module, a sweep folder."""

import shutil
from pathlib import Path

import pytest
import torch

SWEEPDIR = Path(__file__).parent / "sweepdir"


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # the local executor's reference runs use one thread, as each Ray task does
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-CPU Ray cluster in this process; the ``ray`` executor uses it as it is.

    Starting Ray costs seconds, so a module's tests share one. (That the executor starts
    and stops a cluster of its own is tested through the command line, in a subprocess.)
    """
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def sweepdir(tmp_path):
    """A copy of tests/sweepdir: sweep.toml beside a lrlab_plugins.py."""
    folder = tmp_path / "sweepdir"
    shutil.copytree(SWEEPDIR, folder)
    return folder
