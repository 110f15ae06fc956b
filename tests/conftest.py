"""Shared fixtures: one CPU thread per test process, results under tmp_path."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def out(tmp_path):
    """A results folder (the sweep's ``out``) inside the test's tmp_path."""
    return tmp_path / "reports"


@pytest.fixture
def no_downloads(monkeypatch):
    """Any attempt to download a dataset fails the test (no network at run time)."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist
    import torchvision.datasets.utils as tvu

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download a dataset")

    for name in ("download_url", "download_and_extract_archive"):
        monkeypatch.setattr(tvu, name, refuse)
    monkeypatch.setattr(mnist, "download_and_extract_archive", refuse)
    monkeypatch.setattr(cifar, "download_and_extract_archive", refuse)
