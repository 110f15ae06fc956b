"""Shared fixtures: one CPU thread per test process, results under tmp_path."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def out(tmp_path):
    """A results folder (the sweep's ``out``) inside the test's tmp_path."""
    return tmp_path / "reports"
