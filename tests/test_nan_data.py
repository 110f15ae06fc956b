"""A dataset whose features hold NaN (issue 10, case 5), trained for real: every run is
diverged (non-finite), and no configuration is named best."""

import math

import torch
from sklearn.datasets import load_digits

import lrlab
from lrlab.configs import best_config
from lrlab.testing import run_tiny_sweep


class NanDigits:
    """digits with one pixel of every tenth image NaN."""

    @lrlab.hookimpl
    def lrlab_register_datasets(self, register):
        def nan_digits(root):
            """digits, some pixels NaN."""
            d = load_digits()
            x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
            x[::10, 0, 3, 3] = math.nan
            return lrlab.Data(x, torch.tensor(d.target), [str(c) for c in range(10)])

        register("nan_digits", nan_digits)


def test_nan_features_make_every_run_diverged_and_no_best(tmp_path):
    result = run_tiny_sweep(NanDigits(), out=tmp_path, dataset="nan_digits",
                            lr=[0.01, 0.1], epochs=3, executor="local")
    assert list(result.runs["verdict"]) == ["diverged", "diverged"], result.runs["flags"]
    assert set(result.runs["cause"]) == {"nonfinite"}
    assert best_config(result.configs) is None
    assert not result.configs["learned"].any()


def test_nan_features_are_not_mistaken_for_dropout_by_auto(tmp_path):
    result = run_tiny_sweep(NanDigits(), out=tmp_path, dataset="nan_digits", lr=[0.01, 0.1],
                            epochs=2)
    assert not any("dropout" in note for note in result.notes), result.notes
    assert any("trained vectorized" in note for note in result.notes), result.notes
