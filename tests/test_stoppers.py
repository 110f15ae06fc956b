"""Early stopping against the semantics it claims: Keras/Lightning EarlyStopping for
``patience``; Prechelt's definitions ("Early Stopping — But When?", 1998) for GL, PQ, UP,
each computed by hand here from the paper's formulas."""

from __future__ import annotations

import math
import random

import pytest

import lrlab
from lrlab.plugins import load_plugins
from lrlab.registry import parse_spec


@pytest.fixture(scope="module")
def registry():
    return load_plugins(use_entry_points=False).registry


def drive(stopper, val=None, train=None, acc=None):
    """Feed epochs 1.. to ``stopper``; return the epoch it stops after (None: never)."""
    n = len(val if val is not None else acc)
    for i in range(n):
        metrics = {"val_loss": val[i] if val is not None else 1.0,
                   "train_loss": train[i] if train is not None else 1.0,
                   "val_acc": acc[i] if acc is not None else 0.5,
                   "train_acc": 0.5, "lr": 0.1}
        if stopper.update(i + 1, metrics):
            return i + 1
    return None


def build(registry, text):
    return registry.build("stopper", parse_spec(text))


# -- patience: Keras/Lightning EarlyStopping -------------------------------------------


@pytest.mark.parametrize("text,val,acc,stop,best", [
    # min mode: improvements at 1, 2; two epochs without one -> stops after epoch 4
    ("patience(patience=2)", [1.0, 0.9, 0.95, 0.91, 0.8], None, 4, 2),
    # an equal value is no improvement (strict <)
    ("patience(patience=1)", [1.0, 1.0], None, 2, 1),
    # min_delta: 0.96 is not below 1.0 - 0.05, 0.94 is; then 0.93 and 0.935 are not
    ("patience(patience=2, min_delta=0.05)", [1.0, 0.96, 0.94, 0.93, 0.935, 0.1], None, 5, 3),
    # a negative min_delta counts as its absolute value (Keras: abs(min_delta))
    ("patience(patience=2, min_delta=-0.05)", [1.0, 0.96, 0.94, 0.93, 0.935], None, 5, 3),
    # the wait resets on each improvement: never stops while improving now and then
    ("patience(patience=2)", [1.0, 1.1, 0.9, 1.0, 0.8, 0.85, 0.7], None, None, 7),
    # patience=0 stops after the first epoch that does not improve, never after epoch 1
    ("patience(patience=0)", [1.0, 0.9, 0.95], None, 3, 2),
    # mode auto on an accuracy maximizes
    ("patience(monitor=val_acc, patience=2)", None, [0.5, 0.6, 0.6, 0.55, 0.9], 4, 2),
    # mode max with min_delta: 0.605 is not above 0.6 + 0.01
    ("patience(monitor=val_acc, mode=max, patience=1, min_delta=0.01)", None,
     [0.5, 0.6, 0.605], 3, 2),
    # mode min forced on an accuracy: the lowest is best
    ("patience(monitor=val_acc, mode=min, patience=1)", None, [0.5, 0.4, 0.6], 3, 2),
])
def test_patience_hand_cases(registry, text, val, acc, stop, best):
    stopper = build(registry, text)
    assert drive(stopper, val=val, acc=acc) == stop
    assert stopper.best_epoch == best


def keras_early_stopping(values, mode, min_delta, patience):
    """keras.callbacks.EarlyStopping.on_epoch_end (Keras 3), transcribed step by step:
    returns (stopped epoch counted from 1 or None, best epoch counted from 1)."""
    less = mode == "min"
    delta = -abs(min_delta) if less else abs(min_delta)
    best, best_epoch, wait = (math.inf if less else -math.inf), 0, 0
    for epoch, current in enumerate(values):  # Keras counts epochs from 0
        if best_epoch == 0 and epoch == 0:
            best_epoch = 0  # Keras keeps the first weights until one improves
        wait += 1
        improved = (current - delta < best) if less else (current - delta > best)
        if improved:
            best, best_epoch, wait = current, epoch, 0
            continue
        if wait >= patience and epoch > 0:
            return epoch + 1, best_epoch + 1
    return None, best_epoch + 1


@pytest.mark.parametrize("seed", range(40))
def test_patience_equals_keras_on_random_sequences(registry, seed):
    rng = random.Random(seed)
    mode = rng.choice(["min", "max"])
    patience, min_delta = rng.randint(0, 4), rng.choice([0.0, 0.01, 0.05])
    values = [round(rng.uniform(0, 1), 2) for _ in range(rng.randint(1, 25))]
    stopper = build(registry, f"patience(monitor=val_loss, mode={mode}, "
                              f"patience={patience}, min_delta={min_delta})")
    stop, best = keras_early_stopping(values, mode, min_delta, patience)
    assert drive(stopper, val=values) == stop
    assert stopper.best_epoch == best


def test_patience_rejects_negative_patience(registry):
    with pytest.raises(lrlab.UsageError, match="patience"):
        build(registry, "patience(patience=-1)")


def test_restore_best_tests_the_restored_epochs_weights(out):
    """Through real runs: the patience run stops after epoch 2 and restores epoch 1; its
    test metrics are exactly those of the same run trained for 1 epoch."""
    stopper = "patience(min_delta=1.0, patience=1, restore_best=True)"
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=[1, 5], stopper=["none", stopper],
                             augment="none", report=False)
    runs = result.runs.set_index(["stopper", "epochs"])
    stopped = runs.loc[(str(parse_spec(stopper)), 5)]
    one_epoch = runs.loc[("none", 1)]
    assert stopped["stopped_by"] == "stopper" and stopped["epochs_run"] == 2
    assert stopped["restored_epoch"] == 1
    assert stopped["test_loss"] == one_epoch["test_loss"]
    assert stopped["test_acc"] == one_epoch["test_acc"]
    # and the weights of epoch 2 would have scored differently on the test split
    hist = result.history.set_index(["run_id", "epoch"])
    rid = stopped["run_id"]
    assert hist.loc[(rid, 1), "val_loss"] == hist.loc[(one_epoch["run_id"], 1), "val_loss"]
    assert hist.loc[(rid, 2), "val_loss"] != hist.loc[(rid, 1), "val_loss"]


def test_without_restore_best_the_last_epoch_is_tested(out):
    stopper = "patience(min_delta=1.0, patience=1)"
    result = lrlab.run_sweep(out=out, lr=0.1, epochs=[2, 5], stopper=["none", stopper],
                             augment="none", report=False)
    runs = result.runs.set_index(["stopper", "epochs"])
    stopped = runs.loc[(str(parse_spec(stopper)), 5)]
    assert stopped["epochs_run"] == 2 and stopped["restored_epoch"] == 0
    assert stopped["test_loss"] == runs.loc[("none", 2), "test_loss"]


# -- Prechelt: hand computations from the paper's definitions --------------------------


def gl_by_hand(val, t):
    """GL(t) = 100 * (E_va(t) / E_opt(t) - 1), E_opt(t) = min_{t' <= t} E_va(t')."""
    return 100.0 * (val[t - 1] / min(val[:t]) - 1.0)


def p_by_hand(train, t, k):
    """P_k(t) = 1000 * (sum_{t'=t-k+1..t} E_tr(t') / (k * min_{same} E_tr(t')) - 1)."""
    strip = [train[i - 1] for i in range(t - k + 1, t + 1)]
    return 1000.0 * (sum(strip) / (k * min(strip)) - 1.0)


VAL = [1.0, 0.8, 0.7, 0.72, 0.75, 0.74, 0.9]


def test_gl_stops_at_the_first_epoch_over_alpha(registry):
    # GL(4) = 100 * (0.72 / 0.7 - 1) = 2.86 %, GL(5) = 100 * (0.75 / 0.7 - 1) = 7.14 %
    assert gl_by_hand(VAL, 4) == pytest.approx(2.857, abs=1e-3)
    assert gl_by_hand(VAL, 5) == pytest.approx(7.143, abs=1e-3)
    expected = next(t for t in range(1, len(VAL) + 1) if gl_by_hand(VAL, t) > 5.0)
    assert expected == 5
    stopper = build(registry, "gl(alpha=5)")
    assert drive(stopper, val=VAL) == 5
    assert stopper.best_epoch == 3 and stopper.restore_best
    assert drive(build(registry, "gl(alpha=20)"), val=VAL) == 7  # GL(7) = 28.6 %
    assert drive(build(registry, "gl(alpha=30)"), val=VAL) is None


PQ_TRAIN = [2.0, 1.0, 0.8, 0.7, 0.65, 0.64, 0.639, 0.638]
PQ_VAL = [2.0, 1.2, 1.0, 1.05, 1.02, 1.03, 1.04, 1.06]


def test_pq_is_checked_at_ends_of_strips_only(registry):
    k, alpha = 2, 0.5
    pq = {t: gl_by_hand(PQ_VAL, t) / p_by_hand(PQ_TRAIN, t, k) for t in range(2, 9)}
    # by hand: t=4: GL 5 / P 71.4 = 0.07; t=6: 3 / 7.81 = 0.38; t=8: 6 / 0.784 = 7.66
    assert pq[4] == pytest.approx(5.0 / (1000 * (1.5 / 1.4 - 1)))
    assert pq[6] < alpha < pq[8]
    assert pq[7] > alpha  # epoch 7 would stop it, but it ends no strip
    expected = next(t for t in range(k, 9, k) if pq[t] > alpha)
    assert expected == 8
    stopper = build(registry, f"pq(alpha={alpha}, strip={k})")
    assert drive(stopper, val=PQ_VAL, train=PQ_TRAIN) == 8
    assert stopper.best_epoch == 3


def test_pq_default_strip_of_five(registry):
    train = [3.0, 2.0, 1.5, 1.2, 1.0, 0.99, 0.985, 0.982, 0.981, 0.9805]
    val = [3.0, 2.1, 1.6, 1.3, 1.1, 1.12, 1.13, 1.15, 1.16, 1.2]
    # t=5: GL 0 -> 0; t=10: GL = 100 * (1.2 / 1.1 - 1) = 9.09, P_5(10) = 1000 * (sum / (5 *
    # 0.9805) - 1) = 1.68 -> 5.4 > 0.5
    assert gl_by_hand(val, 5) == 0.0
    assert gl_by_hand(val, 10) / p_by_hand(train, 10, 5) > 0.5
    assert drive(build(registry, "pq"), val=val, train=train) == 10


def test_pq_progress_divides_by_the_strips_minimum(registry):
    # training loss goes up inside a strip: the minimum is not the last value
    train = [1.0, 0.5, 0.6, 0.55, 0.52, 0.58]
    val = [1.0, 0.9, 0.95, 0.97, 0.99, 1.0]
    # P_3(6) = 1000 * (1.65 / (3 * 0.52) - 1) = 57.7; GL(6) = 11.1; PQ = 0.193
    assert p_by_hand(train, 6, 3) == pytest.approx(57.69, abs=0.01)
    assert gl_by_hand(val, 3) / p_by_hand(train, 3, 3) < 0.1  # 5.56 / 400
    assert gl_by_hand(val, 6) / p_by_hand(train, 6, 3) == pytest.approx(0.1926, abs=1e-4)
    assert drive(build(registry, "pq(alpha=0.1, strip=3)"), val=val, train=train) == 6
    assert drive(build(registry, "pq(alpha=0.2, strip=3)"), val=val, train=train) is None


def up_by_definition(val, s, k):
    """The first end-of-strip epoch t with E_va(t - i*k) > E_va(t - (i+1)*k) for
    i = 0..s-1 (the validation error rose in s successive strips)."""
    for t in range(k, len(val) + 1, k):
        if t - s * k >= 1 and all(val[t - i * k - 1] > val[t - (i + 1) * k - 1]
                                  for i in range(s)):
            return t
    return None


# ends of strips (k=2): t=2 .8, 4 .7, 6 .72, 8 .65, 10 .68, 12 .71, 14 .73; rises at
# 6, 10, 12, 14. Odd epochs rise too (3, 5, 9, 11, 13) and must not count.
UP_VAL = [1.0, 0.8, 0.85, 0.7, 0.75, 0.72, 0.6, 0.65, 0.7, 0.68, 0.74, 0.71, 0.75, 0.73]


@pytest.mark.parametrize("s,stop", [(1, 6), (2, 12), (3, 14), (4, None)])
def test_up_counts_successive_rising_strips(registry, s, stop):
    assert up_by_definition(UP_VAL, s, 2) == stop
    stopper = build(registry, f"up(s={s}, strip=2)")
    assert drive(stopper, val=UP_VAL) == stop
    seen = UP_VAL[:stop] if stop else UP_VAL
    assert stopper.best_epoch == seen.index(min(seen)) + 1  # the lowest val loss seen


@pytest.mark.parametrize("seed", range(60))
def test_up_equals_its_definition_on_random_sequences(registry, seed):
    rng = random.Random(seed)
    s, k = rng.randint(1, 3), rng.randint(1, 4)
    val = [rng.uniform(0, 1) for _ in range(rng.randint(1, 30))]
    assert drive(build(registry, f"up(s={s}, strip={k})"), val=val) == \
        up_by_definition(val, s, k)


@pytest.mark.parametrize("text", ["up(s=0)", "up(strip=0)", "pq(strip=0)", "gl(alpha=-1)"])
def test_prechelt_rejects_bad_parameters(registry, text):
    with pytest.raises(lrlab.UsageError):
        build(registry, text)


def test_none_never_stops_and_tracks_the_lowest_val_loss(registry):
    stopper = build(registry, "none")
    assert drive(stopper, val=VAL) is None
    assert stopper.best_epoch == 3 and not stopper.restore_best
