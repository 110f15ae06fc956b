"""Evidence across seeds: confidence intervals of a mean, and of a difference of means.

Training is noisy (digits' validation split has 359 samples, about ±0.01 accuracy), so a
number aggregated over seeds comes with a 95% interval, and two configurations are
compared by the interval of their difference, paired by seed where the runs share one.

**The interval.** A percentile bootstrap of the mean (9999 resamples, a fixed seed so every
table is the same on every run; the resamples and quantiles of
:func:`scipy.stats.bootstrap`'s ``method="percentile"``, drawn here with numpy, which the
tests check against scipy to the last digit) that is then widened
about the mean by the small-sample factor

    c(n) = t(1 - a/2; n - 1) / z(1 - a/2) * sqrt(n / (n - 1))

for the two ways a plain bootstrap is too narrow with few samples: its spread is the
plug-in one (divisor n, not n - 1) and its tails are normal, not Student's. At the 2 to 5
seeds sweeps have, the plain percentile interval covers the true mean of normal data in
only 50%, 76%, 81% and 84% of samples (it can never reach past the data's range); the
widened one in 93%, 95%, 94% and 95%, like the t interval, while keeping the bootstrap's
asymmetry for skewed data; c(n) -> 1 as n grows, where the plain bootstrap is right
(Hesterberg 2015, "What teachers should know about the bootstrap", expands the percentile
interval for the same reason). BCa is no help here: its jackknife needs more points than
there are seeds. With one value there is no interval (NaN): ``--seeds 3`` gives one.

Two independent samples (:func:`difference_intervals`, "Welch-style") are resampled each
on its own and widened the same way with Welch-Satterthwaite's degrees of freedom.

Student's quantiles are computed here too (:func:`t_quantile`: the incomplete beta function
and Newton's method, to 1e-12 of scipy's): importing scipy.stats costs half a second, more
than a default sweep's report spends on its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

LEVEL = 0.95  # the confidence of every interval lrlab prints
RESAMPLES = 9999
SEED = 0  # the bootstrap's random state: the same data gives the same interval


@dataclass(frozen=True)
class Interval:
    """A mean (or a mean difference) over ``n`` values, its sd and its interval; ``lo`` and
    ``hi`` are NaN when there is none (fewer than two values)."""

    n: int
    mean: float
    sd: float
    lo: float
    hi: float

    @property
    def known(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def contains(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies inside (False when there is no interval)."""
        return self.known and self.lo <= value <= self.hi


NONE = Interval(0, math.nan, math.nan, math.nan, math.nan)


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """The regularized incomplete beta function I_x(a, b); ``y`` is 1 - x, given apart so
    that neither loses digits near 1."""
    if x <= 0 or y <= 0:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(a * math.log(x) + b * math.log(y)
                     + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, y) / b


def _t_upper(t: float, df: float) -> float:
    """P(T > t) for Student's T with ``df`` degrees of freedom, ``t >= 0``."""
    tt = t * t
    if tt < df:  # near the centre: 1/2 - P(0 < T < t), without cancelling
        return 0.5 - 0.5 * _betainc(0.5, df / 2, tt / (df + tt), df / (df + tt))
    return 0.5 * _betainc(df / 2, 0.5, df / (df + tt), tt / (df + tt))


@lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """Student's quantile function: ``scipy.stats.t.ppf(q, df)`` for ``q`` in (0, 1) and any
    ``df > 0`` (Welch's are not whole). Newton's method on log P(T > t) against log t, which
    is nearly linear in both the normal and the heavy tails, from the normal quantile."""
    if not 0 < q < 1 or not df > 0:
        return math.nan
    if q < 0.5:
        return -t_quantile(1 - q, df)
    if q == 0.5:
        return 0.0
    p = 1 - q
    log_p = math.log(p)
    norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    s = math.log(NormalDist().inv_cdf(q))  # s = log t
    for _ in range(100):
        t = math.exp(s)
        upper = _t_upper(t, df)
        density = math.exp(norm - (df + 1) / 2 * math.log1p(t * t / df))
        step = (math.log(upper) - log_p) / (t * density / upper)
        s += max(-2.0, min(2.0, step))  # d/ds log P(T > e^s) = -t f(t) / P(T > t)
        if abs(step) < 1e-14:
            break
    return math.exp(s)


def _t_over_z(df: float, level: float) -> float:
    """Student's two-sided quantile over the normal one, at ``df`` degrees of freedom."""
    q = 1 - (1 - level) / 2
    return t_quantile(q, df) / NormalDist().inv_cdf(q)


def expansion(n: int, level: float = LEVEL) -> float:
    """The small-sample factor c(n) of the module's docstring (NaN for n < 2)."""
    return _t_over_z(n - 1, level) * math.sqrt(n / (n - 1)) if n > 1 else math.nan


def clip(value: float, bounds: tuple[float, float]) -> float:
    """``value`` within ``bounds``; NaN stays NaN."""
    return value if math.isnan(value) else min(bounds[1], max(bounds[0], value))


def _finite(values: Sequence[float]) -> np.ndarray:
    """The finite values, sorted: an interval does not depend on the order of the runs."""
    arr = np.asarray(values, dtype=float).ravel()
    return np.sort(arr[np.isfinite(arr)])


def _percentile(data: tuple[np.ndarray, ...], statistic, level: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap along the last axis of a batch of samples: what
    ``scipy.stats.bootstrap(data, statistic, n_resamples=RESAMPLES, vectorized=True,
    axis=-1, method="percentile", rng=np.random.default_rng(SEED))`` computes (the same
    draws, in the same order, and the same linear quantiles)."""
    rng = np.random.default_rng(SEED)
    resampled = [s[..., rng.integers(0, s.shape[-1], (RESAMPLES, s.shape[-1]))]
                 for s in data]
    alpha = (1 - level) / 2
    lo, hi = np.quantile(statistic(*resampled, axis=-1), [alpha, 1 - alpha], axis=-1)
    return np.atleast_1d(lo), np.atleast_1d(hi)


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(b, axis=axis) - np.mean(a, axis=axis)


def mean_intervals(samples: Sequence[Sequence[float]], level: float = LEVEL,
                   bounds: tuple[float, float] = (-math.inf, math.inf)) -> list[Interval]:
    """The interval of the mean of each sample (non-finite values left out), one
    bootstrap call per distinct sample size, so a table of configurations costs a few
    milliseconds; each result depends only on its own sample. The widened interval is
    clipped to ``bounds``, the range the metric can take (an accuracy's mean is never
    above 1)."""
    clean = [_finite(s) for s in samples]
    out: list[Interval] = [NONE] * len(clean)
    by_size: dict[int, list[int]] = {}
    for i, s in enumerate(clean):
        if len(s) == 0:
            continue
        if len(s) == 1:
            out[i] = Interval(1, float(s[0]), math.nan, math.nan, math.nan)
        else:
            by_size.setdefault(len(s), []).append(i)
    for n, idx in by_size.items():
        batch = np.stack([clean[i] for i in idx])
        means, sds = batch.mean(axis=1), batch.std(axis=1, ddof=1)
        lo, hi = _percentile((batch,), _mean, level)
        c = expansion(n, level)
        for k, i in enumerate(idx):
            m = float(means[k])
            out[i] = Interval(n, m, float(sds[k]), clip(m - c * (m - float(lo[k])), bounds),
                              clip(m + c * (float(hi[k]) - m), bounds))
    return out


def mean_interval(values: Sequence[float], level: float = LEVEL,
                  bounds: tuple[float, float] = (-math.inf, math.inf)) -> Interval:
    """The interval of the mean of ``values`` (see the module's docstring)."""
    return mean_intervals([values], level, bounds)[0]


def difference_intervals(pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
                         level: float = LEVEL,
                         bounds: tuple[float, float] = (-math.inf, math.inf)
                         ) -> list[Interval]:
    """For each ``(a, b)`` of independent samples, the interval of ``mean(b) - mean(a)``:
    each resampled on its own, widened by c(df + 1) with Welch-Satterthwaite's df and the
    plug-in to unbiased variance ratio. ``sd`` is the standard error of the difference.
    No interval unless both samples hold two values or more."""
    clean = [(_finite(a), _finite(b)) for a, b in pairs]
    out: list[Interval] = [NONE] * len(clean)
    by_size: dict[tuple[int, int], list[int]] = {}
    for i, (a, b) in enumerate(clean):
        if len(a) == 0 or len(b) == 0:
            continue
        if len(a) < 2 or len(b) < 2:
            out[i] = Interval(min(len(a), len(b)), float(b.mean() - a.mean()), math.nan,
                              math.nan, math.nan)
        else:
            by_size.setdefault((len(a), len(b)), []).append(i)
    for (na, nb), idx in by_size.items():
        a = np.stack([clean[i][0] for i in idx])
        b = np.stack([clean[i][1] for i in idx])
        lo, hi = _percentile((a, b), _mean_difference, level)
        va, vb = a.var(axis=1, ddof=1) / na, b.var(axis=1, ddof=1) / nb
        for k, i in enumerate(idx):
            m = float(b[k].mean() - a[k].mean())
            se2 = float(va[k] + vb[k])
            if se2 <= 0:  # no spread at all: the difference is what it is
                out[i] = Interval(min(na, nb), m, 0.0, m, m)
                continue
            df = se2 ** 2 / (va[k] ** 2 / (na - 1) + vb[k] ** 2 / (nb - 1))
            plugin = float(va[k] * (na - 1) / na + vb[k] * (nb - 1) / nb)
            c = _t_over_z(df, level) * math.sqrt(se2 / plugin)
            out[i] = Interval(min(na, nb), m, math.sqrt(se2),
                              clip(m - c * (m - float(lo[k])), bounds),
                              clip(m + c * (float(hi[k]) - m), bounds))
    return out


def bonferroni(k: int, level: float = LEVEL) -> float:
    """The per-comparison confidence that makes ``k`` intervals hold together at ``level``."""
    return 1 - (1 - level) / max(1, k)


def _t_ratio(df: float, level: float) -> float:
    """Student's two-sided quantile at ``level`` over the one at :data:`LEVEL`."""
    return t_quantile(1 - (1 - level) / 2, df) / t_quantile(1 - (1 - LEVEL) / 2, df)


def simultaneous_intervals(samples: Sequence[Sequence[float]], k: int,
                           bounds: tuple[float, float] = (-math.inf, math.inf)
                           ) -> list[Interval]:
    """Intervals of the means of ``samples`` that hold together at 95% over ``k``
    comparisons (Bonferroni): each sample's 95% interval (:func:`mean_intervals`), each
    side stretched by Student's quantile at ``1 - 0.05 / 2k`` over the one at 0.975 (n − 1
    degrees of freedom). The calibrated 95% interval is stretched rather than the
    bootstrap's far tails read: 3 values have only 10 distinct bootstrap means, so every
    quantile below 3.7% is the sample's minimum, whatever the level asked."""
    level = bonferroni(k)
    out = []
    for iv in mean_intervals(samples):
        if not iv.known or k <= 1:
            out.append(iv)
            continue
        r = _t_ratio(iv.n - 1, level)
        out.append(Interval(iv.n, iv.mean, iv.sd, clip(iv.mean - r * (iv.mean - iv.lo), bounds),
                            clip(iv.mean + r * (iv.hi - iv.mean), bounds)))
    return out


def seaborn_interval(values: Sequence[float],
                     bounds: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """``errorbar=`` for seaborn: the 95% interval of the mean (NaN with one value),
    clipped to ``bounds`` (``functools.partial`` it for accuracies)."""
    iv = mean_interval(values, bounds=bounds)
    return iv.lo, iv.hi


class Bands:
    """seaborn's ``errorbar=`` with every interval computed ahead in one batch (one
    bootstrap per sample size, not one per point): give it the samples the plot will
    aggregate; a sample it was not given is computed when asked. ``log``: the interval of
    the mean of the logarithm (a loss on a log axis, with :func:`geometric_mean`)."""

    def __init__(self, samples: Sequence[Sequence[float]], bounds: tuple[float, float] =
                 (-math.inf, math.inf), log: bool = False) -> None:
        self.bounds, self.log = bounds, log
        keys = list(dict.fromkeys(self._key(s) for s in samples))
        found = mean_intervals([np.log(k) if log else k for k in keys], bounds=self._inner())
        self.cache = {k: self._out(iv) for k, iv in zip(keys, found, strict=True)}

    def _key(self, values: Sequence[float]) -> tuple[float, ...]:
        arr = _finite(values)
        return tuple(arr[arr > 0] if self.log else arr)

    def _inner(self) -> tuple[float, float]:
        return (-math.inf, math.inf) if self.log else self.bounds

    def _out(self, iv: Interval) -> tuple[float, float]:
        return (float(np.exp(iv.lo)), float(np.exp(iv.hi))) if self.log else (iv.lo, iv.hi)

    def __call__(self, values: Sequence[float]) -> tuple[float, float]:
        key = self._key(values)
        if key not in self.cache:
            sample = np.log(key) if self.log else key
            self.cache[key] = self._out(mean_interval(sample, bounds=self._inner()))
        return self.cache[key]


def geometric_mean(values: Sequence[float]) -> float:
    """``estimator=`` for seaborn on a log axis: the mean of the logarithms, back."""
    arr = _finite(values)
    arr = arr[arr > 0]
    return float(np.exp(np.log(arr).mean())) if len(arr) else math.nan


def bounds_of(metric: str) -> tuple[float, float]:
    """The range a metric's mean can take (``val_acc``: 0 to 1), to clip its interval."""
    if metric.endswith("_acc") and not metric.startswith("gap"):
        return 0.0, 1.0
    if metric.startswith("gap"):
        return -1.0, 1.0
    return 0.0, math.inf  # losses and GL


def difference_bounds(metric: str) -> tuple[float, float]:
    """The range of a difference of two means of ``metric``."""
    lo, hi = bounds_of(metric)
    return lo - hi, hi - lo


def signed(x: float, scale: float = 1.0, digits: int = 1) -> str:
    """``+0.4`` / ``−2.1`` (a true minus sign), ``x`` times ``scale``; NaN is a dash."""
    if x is None or not math.isfinite(x):
        return "—"
    v = x * scale
    v = 0.0 if v == 0 else v  # no "−0.0" for an exact zero; a small negative keeps its sign
    return f"{v:+.{digits}f}".replace("-", "−")


def interval_text(mean: float, lo: float, hi: float, scale: float = 1.0, digits: int = 1,
                  sign: bool = True) -> str:
    """``+0.4 [−0.2, +1.0]`` (``sign=False``: ``0.967 [0.961, 0.972]``), or the mean alone
    when there is no interval."""
    def show(v: float) -> str:
        if sign:
            return signed(v, scale, digits)
        return "—" if v is None or not math.isfinite(v) else f"{v * scale:.{digits}f}"

    known = all(v is not None and math.isfinite(v) for v in (lo, hi))
    return f"{show(mean)} [{show(lo)}, {show(hi)}]" if known else show(mean)


def points_text(mean: float, lo: float, hi: float, unit: str = " points") -> str:
    """``−2.1 points [−3.0, −1.2]``: an accuracy difference in percentage points (``unit``
    after the mean; ``""`` for none)."""
    head, _, rest = interval_text(mean, lo, hi, 100, 1).partition(" ")
    return f"{head}{unit}" + (f" {rest}" if rest else "")


# -- pairing ------------------------------------------------------------------------------


def pair_keys(runs: pd.DataFrame) -> list[str]:
    """The columns that make two runs a pair: ``seed``, and ``split_seed`` where the runs
    table has one (runs with the same seeds share initialisation, batch order and split)."""
    return [c for c in ("seed", "split_seed") if c in runs]


def covers(runs: pd.DataFrame) -> str:
    """Which variance an interval over the runs holds: ``seeds``, or ``seeds and splits``
    when the split seed varies (repeated splits)."""
    if "split_seed" in runs and runs["split_seed"].nunique(dropna=True) > 1:
        return "seeds and splits"
    return "seeds"


def paired_differences(frame: pd.DataFrame, axis: str, value: str, units: list[str],
                       base: Any, others: Sequence[Any]) -> dict[Any, np.ndarray]:
    """For each ``v`` in ``others``, the differences ``value(axis=v) − value(axis=base)``
    of the runs that agree on every column of ``units`` (the unit: the other axes and the
    seed), one per unit where both are finite."""
    if frame.empty:
        return {v: np.array([]) for v in others}
    keys = [u for u in units if u != axis]
    wide = (frame.groupby([*keys, axis], dropna=False, sort=False)[value].mean()
            .unstack(axis)) if keys else frame.groupby(axis)[value].mean().to_frame().T
    out = {}
    for v in others:
        if v not in wide or base not in wide:
            out[v] = np.array([])
            continue
        d = (wide[v] - wide[base]).to_numpy(dtype=float)
        out[v] = d[np.isfinite(d)]
    return out
