"""The learning-rate range test: its numbers, its promises (restores what it touched,
detects divergence), its suggestions, `lrlab lr-find` and `lrlab sweep --lr auto`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

import lrlab
from lrlab.data import stratified_split
from lrlab.errors import UsageError
from lrlab.lrfind import (
    LRFindResult,
    Suggestion,
    grid_around,
    lr_find,
    lr_find_command,
    lr_schedule,
    minimum,
    range_test,
    steepest,
    suggest,
    valley,
)
from lrlab.lrfind.core import diverged_step, trimmed
from lrlab.plugins import load_plugins
from lrlab.registry import Spec, parse_spec


@pytest.fixture(scope="module")
def host():
    return load_plugins(use_entry_points=False)


@pytest.fixture(scope="module")
def digits(host):
    raw = host.registry.build("dataset", Spec("digits"), "data")
    return stratified_split(raw, (0.6, 0.2, 0.2), 0)


# -- a convex problem whose good learning rates follow from the data ---------------------


def least_squares(n: int = 256, d: int = 8):
    """Linear regression, MSE: full-batch gradient descent is stable iff lr < 2/lambda_max
    of the Hessian 2/n X^T X, and converges fastest at 2/(lambda_max + lambda_min)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g) * torch.logspace(0, 0.5, d)  # condition number ~10
    y = x @ torch.randn(d, generator=g) + 0.1 * torch.randn(n, generator=g)
    xb = torch.cat([x, torch.ones(n, 1)], 1)  # the bias is a parameter too
    eig = torch.linalg.eigvalsh(2 / n * xb.T @ xb)
    return x, y, eig.max().item(), eig.min().item()


def mse(out, target):
    return F.mse_loss(out.squeeze(1), target)


def convex_curve(start_lr=1e-7, end_lr=10.0, steps=100):
    x, y, lmax, lmin = least_squares()
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    curve = range_test(model, opt, mse, x, y, start_lr=start_lr, end_lr=end_lr, steps=steps,
                       batch_size=len(y))
    return curve, lmax, lmin


def test_suggestions_fall_in_the_known_good_range_of_a_convex_problem():
    curve, lmax, lmin = convex_curve()
    stable, best = 2 / lmax, 2 / (lmax + lmin)
    found = suggest(curve["lr"].to_numpy(), curve["smoothed"].to_numpy(), 100)
    for rule, lr in found.items():  # every rule's rate is stable
        assert 0 < lr < stable, (rule, lr, stable)
    # the rate --lr auto centres on is within a decade below the fastest rate, so its
    # sweep (a decade each side) contains that rate
    assert best / 10 <= found["minimum"] < stable
    assert found["steepest"] >= best / 10


def test_divergence_is_detected_past_the_stable_range():
    curve, lmax, _ = convex_curve()
    assert len(curve) < 100  # stopped early
    step = diverged_step(curve, 4.0)
    assert step == curve["step"].iloc[-1]
    assert curve["lr"].iloc[-1] > 2 / lmax  # only once gradient descent is unstable
    last, best = curve["smoothed"].iloc[-1], curve["smoothed"].iloc[:-1].min()
    assert not math.isfinite(last) or last > 4 * best


def test_a_curve_that_stays_stable_is_not_called_diverged():
    lmax = least_squares()[2]
    curve, _, _ = convex_curve(start_lr=1e-4, end_lr=0.5 / lmax, steps=20)
    assert len(curve) == 20 and diverged_step(curve, 4.0) is None


def test_a_nan_loss_stops_the_test():
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(logits, target):
        calls.append(1)
        loss = F.cross_entropy(logits, target)
        return loss * float("nan") if len(calls) == 5 else loss

    curve = range_test(model, opt, loss_fn, torch.randn(64, 4), torch.randint(0, 2, (64,)),
                       steps=50, batch_size=8)
    assert len(curve) == 5 and diverged_step(curve, 4.0) == 4


# -- it leaves the model and optimizer as they were ---------------------------------------


class Recorder(torch.nn.Module):
    """BatchNorm, dropout, and a note of the mode each forward pass ran in."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32),
                                       torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                       torch.nn.Dropout(0.2), torch.nn.Linear(32, 10))
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        return self.net(x)


def test_model_and_optimizer_are_restored_bit_for_bit(digits):
    x, y = digits.train
    torch.manual_seed(0)
    model = Recorder()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(3):  # give the optimizer state and BatchNorm statistics to lose
        opt.zero_grad()
        F.cross_entropy(model(x[:64]), y[:64]).backward()
        opt.step()
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in s.items()}
             for i, s in enumerate(opt.state.values())}
    groups = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
    grads = [p.grad.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    model.modes.clear()

    curve = range_test(model, opt, F.cross_entropy, x, y, steps=30, batch_size=32)

    assert len(curve) == 30 and curve["loss"].nunique() > 1  # it did train
    assert model.modes and all(model.modes)  # train mode throughout the test
    assert not model.training  # and eval mode again, as before
    after = model.state_dict()
    assert after.keys() == weights.keys()
    for k, v in weights.items():
        assert torch.equal(after[k], v), k  # running_mean, num_batches_tracked included
    for i, s in enumerate(opt.state.values()):
        for k, v in s.items():
            assert torch.equal(v, state[i][k]) if torch.is_tensor(v) else v == state[i][k]
    assert [dict((k, v) for k, v in g.items() if k != "params")
            for g in opt.param_groups] == groups
    assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads, strict=True))
    assert all(p is q for p, q in zip(model.parameters(),
                                      [p for g in opt.param_groups for p in g["params"]],
                                      strict=True))  # the optimizer still owns the weights
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_model_is_restored_and_lr_find_runs(host, digits):
    dev = torch.device("cuda")
    data = digits.to(dev)
    model = Recorder().to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    range_test(model, opt, F.cross_entropy, *data.train, steps=20)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    result = lr_find(steps=20, device="cuda", host=host, data=data)
    assert result.settings["device"] == "cuda" and len(result.curve) > 0


# -- the rules ------------------------------------------------------------------------------


def test_schedule_spans_start_to_end_evenly_in_log_or_linearly():
    exp = lr_schedule(1e-6, 1.0, 7, "exp")
    assert exp[0] == pytest.approx(1e-6) and exp[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(exp)), 1.0)
    lin = lr_schedule(0.1, 1.0, 10, "linear")
    assert np.allclose(np.diff(lin), 0.1)


def test_rules_on_a_hand_made_curve():
    lrs = np.logspace(-4, 0, 9)  # 1e-4, 3.2e-4, 1e-3, ... 1
    losses = np.array([2.0, 2.0, 1.9, 1.5, 0.8, 0.5, 0.4, 0.6, 3.0])
    assert steepest(lrs, losses) == pytest.approx(lrs[3])  # 1.9 -> 0.8 is the steepest
    # fastai's valley: the longest decreasing run is 2.0 .. 0.4 (6 points ending at
    # index 6); start = 6 - 6 = 0; idx = 0 + int(2) + int(1) = 3
    assert valley(lrs, losses) == pytest.approx(lrs[3])
    assert minimum(lrs, losses) == pytest.approx(lrs[6] / 10)


def test_trimming_drops_the_warm_up_and_the_blow_up_but_keeps_short_curves():
    lrs, losses = np.arange(1.0, 101.0), np.linspace(2.0, 1.0, 100)
    kept, _ = trimmed(lrs, losses, 100)
    assert kept[0] == 11.0 and kept[-1] == 95.0  # first 10 and last 5 dropped
    kept, _ = trimmed(lrs[:4], losses[:4], 100)
    assert len(kept) == 3
    losses[50] = np.inf
    kept, _ = trimmed(lrs, losses, 100)
    assert kept[-1] < 51.0  # nothing from the first non-finite value on


def test_median_and_spread_over_seeds():
    s = Suggestion("valley", {0: 0.01, 1: 0.04, 2: 0.02})
    assert s.lr == pytest.approx(0.02) and s.spread == pytest.approx(4.0)
    assert Suggestion("valley", {0: 0.01, 1: 0.04}).lr == pytest.approx(0.02)  # geometric
    assert math.isnan(Suggestion("valley", {0: math.nan}).lr)


def test_grid_around_spans_a_decade_each_side():
    assert grid_around(0.01, 5) == [0.001, 0.00316, 0.01, 0.0316, 0.1]
    assert grid_around(0.0123, 1) == [0.0123]


# -- lr_find on registered components ------------------------------------------------------


def test_digits_default_suggestion_neighbourhood_holds_the_best_swept_lr(host, digits):
    # A dense sweep of the default (mlp, sgd(momentum=0.9), batch 32, 40 epochs, 3 seeds)
    # found the lowest validation loss at lr 0.07-0.11 (see the README); each rule's sweep
    # neighbourhood (a decade each side) must hold that band.
    result = lr_find(host=host, data=digits, seeds=3)
    for rule, sug in result.suggestions.items():
        assert sug.lr / 10 <= 0.07 and 0.113 <= sug.lr * 10, (rule, sug.lr)


@pytest.mark.parametrize("axis,value", [
    ("model", "linear"), ("model", "cnn"), ("model", "resnet18"),
    ("model", "mlp(width=16,dropout=0.1)"), ("loss", "mse"), ("loss", "label_smoothing"),
    ("optimizer", "sgd"), ("optimizer", "adam"), ("optimizer", "adamw"),
    ("optimizer", "radam")])
def test_every_builtin_component_works(host, digits, axis, value):
    result = lr_find(**{axis: value}, steps=6, batch_size=16, host=host, data=digits)
    assert result.settings[axis] == str(parse_spec(value))
    assert list(result.curve.columns) == ["seed", "step", "lr", "loss", "smoothed"]
    assert len(result.curve) in range(1, 7) and math.isfinite(result.curve["loss"].iloc[0])
    assert set(result.suggestions) == {"steepest", "minimum", "valley"}


class TinyBN:
    """A plugin model with BatchNorm: it must work with no code for the LR finder."""

    @lrlab.hookimpl
    def lrlab_register_models(self, register):
        def tiny_bn(input_shape, num_classes, *, width: int = 8):
            return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, width),
                                       torch.nn.BatchNorm1d(width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, num_classes))

        register("tiny_bn", tiny_bn)


def test_a_plugin_model_works_and_seeds_give_medians(digits):
    host = load_plugins(plugins=[TinyBN()], use_entry_points=False)
    result = lr_find("tiny_bn(width=12)", host=host, steps=20, seeds=3, data=digits)
    assert sorted(result.curve["seed"].unique()) == [0, 1, 2]
    for sug in result.suggestions.values():
        assert sorted(sug.per_seed) == [0, 1, 2]
        assert sug.low <= sug.lr <= sug.high


def test_files_are_written_and_read_back(host, digits, tmp_path):
    result = lr_find(steps=30, seeds=2, host=host, data=digits)
    files = result.save(tmp_path / "lf")
    assert {p.name for p in files.values()} == {"lrfind.parquet", "lrfind.json", "lrfind.png"}
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pd.testing.assert_frame_equal(pd.read_parquet(files["curve"]), result.curve)
    back = LRFindResult.load(tmp_path / "lf")
    assert back.key == result.key
    for rule in result.suggestions:
        assert back.suggestions[rule].per_seed == pytest.approx(result.suggestions[rule].per_seed)
    info = json.loads(files["summary"].read_text())
    assert set(info["suggestions"]["valley"]) >= {"lr", "low", "high", "spread", "explanation"}


@pytest.mark.parametrize("kwargs,words", [
    ({"start_lr": 1.0, "end_lr": 0.1}, "must be below --end-lr"),
    ({"start_lr": 1.0, "end_lr": 1.0}, "must be below --end-lr"),
    ({"steps": 1}, "--steps must be an integer >= 2"),
    ({"start_lr": 0.0}, "--start-lr must be a positive"),
    ({"end_lr": -1.0}, "--end-lr must be a positive"),
    ({"mode": "cosine"}, "--mode must be exp or linear"),
    ({"diverge": 1.0}, "--diverge must be"),
    ({"beta": 1.0}, "--smooth must be in [0, 1)"),
    ({"seeds": 0}, "--seeds must be >= 1")])
def test_bad_settings_are_usage_errors(kwargs, words):
    with pytest.raises(UsageError) as err:
        lr_find(**kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def cli():
    app = typer.Typer()
    app.command("lr-find")(lr_find_command)
    app.command("other")(lambda: None)  # two commands: "lr-find" is then a subcommand
    return app


@pytest.mark.parametrize("args,words", [
    (["--start-lr", "1", "--end-lr", "0.1"], "must be below --end-lr"),
    (["--end-lr", "1e300"], "--end-lr must be at most 1e+06"),
    (["--steps", "1"], "--steps must be an integer >= 2"),
    (["--start-lr", "0"], "--start-lr must be a positive"),
    (["--start-lr", "-1e-3"], "--start-lr must be a positive"),
    (["--model", "mlp,cnn"], "one model at a time"),
    (["--model", "mpl"], "did you mean 'mlp'")])
def test_cli_bad_arguments_give_one_line_and_exit_2(cli, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lr-find", *args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert not (tmp_path / "reports").exists()


def test_cli_prints_the_suggestions_and_writes_the_files(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lr-find", "--steps", "40", "--seeds", "2", "--name",
                                      "mine", "-p", "no:builtin.vectorized", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for words in ("steepest", "minimum ÷ 10", "valley", "range over seeds", "lrfind.png"):
        assert words in result.output
    folder = tmp_path / "reports" / "mine"
    assert {p.name for p in folder.iterdir()} == {"lrfind.parquet", "lrfind.json",
                                                  "lrfind.png"}
    info = json.loads((folder / "lrfind.json").read_text())
    assert info["settings"]["steps"] == 40 and info["settings"]["seeds"] == [0, 1]


def test_cli_next_command_repeats_every_non_default_setting(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["lr-find", "--steps", "30", "--loss", "mse",
                                      "--batch-size", "64", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("next: "))
    assert "--loss 'mse'" in line and "--batch-size 64" in line and "--lr auto" in line
    assert "--dataset" not in line  # the default is left out


# -- lrlab sweep --lr auto -----------------------------------------------------------------


def test_sweep_lr_auto_centres_its_grid_on_the_finder_and_reports_it(out):
    from lrlab.builtin.lrfind import lrlab_report_sections

    result = lrlab.run_sweep(out=out, lr="auto:3", epochs=1, augment="none", report=False)
    folder = out / result.config.name
    stored = LRFindResult.load(folder)
    centre = stored.suggestions["minimum"].lr
    assert sorted(result.runs["lr"]) == grid_around(centre, 3)
    assert stored.auto["lrs"] == grid_around(centre, 3)
    assert any("--lr auto" in n and "one decade each side" in n for n in result.notes)
    runs, history, manifest = lrlab.load_results(folder)
    sections = lrlab_report_sections(runs, history, manifest)
    assert sections and sections[0].title == "Learning-rate finder"
    assert "data:image/png;base64," in sections[0].html and "minimum" in sections[0].html

    again = lrlab.run_sweep(out=out, lr="auto:3", epochs=1, augment="none", report=False)
    assert again.ran == [] and len(again.skipped) == 3  # same grid: resumed


def test_sweep_lr_auto_writes_nothing_when_the_input_is_bad(out):
    with pytest.raises(UsageError):
        lrlab.run_sweep(out=out, lr="auto", epochs=1, keyword="no-such-run")
    assert not out.exists()


def test_the_finder_section_is_found_after_the_folder_moved(out, tmp_path):
    import shutil

    from lrlab.report import write_report

    lrlab.run_sweep(out=out, name="m", lr="auto:2", epochs=1, augment="none", report=False)
    moved = tmp_path / "elsewhere" / "m"
    shutil.move(out / "m", moved)
    html = write_report(moved).read_text(encoding="utf-8")
    assert "Learning-rate finder" in html


def test_report_section_skips_a_stale_finder_file(out):
    from lrlab.builtin.lrfind import lrlab_report_sections

    lrlab.run_sweep(out=out, name="s", lr="auto:2", epochs=1, augment="none", report=False)
    runs, history, manifest = lrlab.load_results(out / "s")
    manifest["config"]["grid"]["lr"] = [0.5]  # a later sweep of other rates, same folder
    assert lrlab_report_sections(runs, history, manifest) is None


class NaNLoss:
    """A loss that is NaN from the first step: no rule can suggest anything."""

    @lrlab.hookimpl
    def lrlab_register_losses(self, register):
        def nan_loss(num_classes):
            return lambda logits, target: logits.sum() * float("nan")

        register("nan_loss", nan_loss)


def test_no_suggestion_is_stored_as_null_and_stops_lr_auto(digits, tmp_path, out):
    host = load_plugins(plugins=[NaNLoss()], use_entry_points=False)
    result = lr_find(loss="nan_loss", host=host, data=digits)
    assert len(result.curve) == 1 and result.diverged_at == {0: 0}
    assert all(math.isnan(s.lr) for s in result.suggestions.values())
    result.save(tmp_path / "nan")
    info = json.loads((tmp_path / "nan" / "lrfind.json").read_text())  # strict JSON
    assert info["suggestions"]["valley"]["lr"] is None
    assert math.isnan(LRFindResult.load(tmp_path / "nan").suggestions["valley"].lr)
    with pytest.raises(UsageError, match="found no learning rate"):
        lrlab.run_sweep(out=out, lr="auto", loss="nan_loss", plugins=[NaNLoss()], epochs=1)
    assert not out.exists()
