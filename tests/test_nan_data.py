"""A dataset whose features hold NaN (issue 10 case 5, issue 12 item 8): refused when it is
loaded, with the count, before anything is trained or written."""

import math

import pytest
import torch
from sklearn.datasets import load_digits

import lrlab
from lrlab.testing import run_tiny_sweep
from lrlab.vectorized.stacked import inspect_model


class NanDigits:
    """digits with one pixel of every tenth image NaN."""

    @lrlab.hookimpl
    def lrlab_register_datasets(self, register):
        def nan_digits(root):
            """digits, some pixels NaN."""
            d = load_digits()
            x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
            x[::10, 0, 3, 3] = math.nan
            x[5, 0, 0, 0] = math.inf
            return lrlab.Data(x, torch.tensor(d.target), [str(c) for c in range(10)])

        register("nan_digits", nan_digits)


def test_a_dataset_with_nan_features_is_refused_at_load_with_the_count(tmp_path):
    with pytest.raises(lrlab.UsageError, match=r"dataset 'nan_digits' has 181 non-finite "
                                               r"feature value\(s\) \(NaN or infinity\) in "
                                               r"181 sample\(s\)"):
        run_tiny_sweep(NanDigits(), out=tmp_path / "out", dataset="nan_digits")
    assert not (tmp_path / "out" / "nan_digits").exists()  # nothing written


def test_a_model_whose_output_is_nan_is_not_taken_for_dropout():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with torch.no_grad():
        model[1].bias.fill_(math.nan)
    updates, stochastic = inspect_model(model, torch.ones(3, 4))
    assert not updates and not stochastic
    dropout = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5))
    assert inspect_model(dropout, torch.ones(3, 4)) == (False, True)
