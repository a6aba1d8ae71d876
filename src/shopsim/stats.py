"""Bootstrap intervals and paired differences: the one place every report takes them from.

All intervals are **percentile** bootstrap intervals at 95%: the 2.5th and 97.5th percentiles
(``np.percentile``, linear interpolation) of the replicates. Three resampling schemes:

* **i.i.d. units** (:func:`bootstrap_mean_ci`): units drawn with replacement, ``n`` per
  replicate, by :func:`scipy.stats.bootstrap` (``method="percentile"``, vectorised) with
  ``rng=np.random.default_rng(seed)`` — one ``(n_boot, n)`` call to ``rng.integers``;
* **clusters** (:func:`cluster_resamples`, :func:`grouped_bootstrap`,
  :func:`grouped_mean_ci`): whole groups (sessions) drawn with replacement, as many as there
  are groups, so correlated units of one group stay together; scipy has no cluster bootstrap;
* **multinomial counts** (:func:`boot_counts`): each replicate is a vector of how often each
  unit was drawn, for estimators written as weighted sums (off-policy evaluation), so
  self-normalised ratios are re-normalised in every replicate.

A **paired** difference (:func:`paired_difference_ci`) bootstraps the per-unit difference
``a - b`` with one set of resamples for both arms, which removes the variance the two arms
share (same episodes, same targets) and is far tighter than comparing two separate intervals.

scipy computes the interval itself with ``scipy.stats.quantile``, whose interpolation differs
from ``np.percentile`` in the last bit on about a third of inputs; the replicates it draws are
bit-identical to the historical code, so the interval is taken from
``BootstrapResult.bootstrap_distribution`` with ``np.percentile`` and every published interval
stays byte-identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _scipy_stats

CI_PERCENTILES = (2.5, 97.5)
"""Lower and upper percentiles of the replicates: a two-sided 95% percentile interval."""


def percentile_interval(replicates: ArrayLike, *, omit_nan: bool = False) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of bootstrap ``replicates`` (linear interpolation).

    :param omit_nan: ignore NaN replicates (``np.nanpercentile``), for statistics undefined on
        some resamples (an AUC of a resample with one class); otherwise a NaN propagates.
    """
    r = np.asarray(replicates)
    lo, hi = np.nanpercentile(r, CI_PERCENTILES) if omit_nan else np.percentile(r, CI_PERCENTILES)
    return float(lo), float(hi)


def bootstrap_mean_ci(x: ArrayLike, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the mean of i.i.d. units ``x`` (1-D).

    Resampling: ``n_boot`` replicates of ``len(x)`` units drawn with replacement by
    ``scipy.stats.bootstrap`` from ``np.random.default_rng(seed)``; interval: 2.5th/97.5th
    ``np.percentile`` of the replicate means.
    """
    x = np.asarray(x)
    if x.ndim != 1 or len(x) == 0:
        # ValueError, as numpy raised before: this layer sits beside shopsim.errors, not above it.
        raise ValueError(f"bootstrap: need a non-empty 1-D array of units, got shape {x.shape}")
    if len(x) == 1:
        # scipy refuses one observation; every resample of one unit is that unit.
        return float(x[0]), float(x[0])
    res = _scipy_stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_boot,
        vectorized=True,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return percentile_interval(res.bootstrap_distribution)


def cluster_resamples(groups: ArrayLike, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Unit indices of ``n_boot`` cluster-bootstrap resamples of the units labelled ``groups``.

    Each resample draws as many groups as there are, with replacement
    (``rng.integers(0, G, G)`` per resample from ``np.random.default_rng(seed)``), and yields the
    indices of their units: group by group in the order drawn, ascending within a group.
    """
    inv = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_groups = int(inv.max()) + 1 if len(inv) else 0
    order = np.argsort(inv, kind="stable")
    sizes = np.bincount(inv, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        if n_groups == 0:
            yield np.zeros(0, np.int64)
            continue
        pick = rng.integers(0, n_groups, n_groups)
        lens = sizes[pick]
        # Position of each drawn unit in ``order``: its group's start plus its rank in the group.
        out_starts = np.cumsum(lens) - lens
        yield order[np.repeat(starts[pick] - out_starts, lens) + np.arange(lens.sum())]


def grouped_bootstrap(
    statistic: Callable[[np.ndarray], float], groups: ArrayLike, *, n_boot: int, seed: int
) -> np.ndarray:
    """(n_boot,) replicates ``statistic(indices)`` over the :func:`cluster_resamples` of ``groups``.

    ``statistic`` receives the unit indices of one resample and indexes its own arrays, so a
    paired statistic (``auc(y[i], a[i]) - auc(y[i], b[i])``) sees the same resample in both arms.
    """
    # No dtype: float32 statistics keep float32 percentiles, as the per-site copies did.
    return np.array([statistic(idx) for idx in cluster_resamples(groups, n_boot, seed)])


def grouped_mean_ci(
    values: ArrayLike, groups: ArrayLike, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-unit ``values`` and its 95% cluster-bootstrap interval over ``groups``.

    Resampling: :func:`cluster_resamples`; interval: 2.5th/97.5th ``np.percentile`` of the
    replicate means. All NaN when there are no units.
    """
    v = np.asarray(values)
    if len(v) == 0:
        return (float("nan"), float("nan"), float("nan"))
    lo, hi = percentile_interval(grouped_bootstrap(lambda i: v[i].mean(), groups, n_boot=n_boot, seed=seed))
    return float(v.mean()), lo, hi


def paired_difference_ci(
    a: ArrayLike, b: ArrayLike, groups: ArrayLike | None = None, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same units, with its 95% paired bootstrap interval.

    The per-unit differences are bootstrapped as one sample: i.i.d. units
    (:func:`bootstrap_mean_ci`) when ``groups`` is None, else whole groups
    (:func:`grouped_mean_ci`).
    """
    d = np.asarray(a) - np.asarray(b)
    if groups is not None:
        return grouped_mean_ci(d, groups, n_boot=n_boot, seed=seed)
    lo, hi = bootstrap_mean_ci(d, n_boot=n_boot, seed=seed)
    return float(d.mean()), lo, hi


def boot_counts(n: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) float counts of how often each of ``n`` units is drawn in each replicate.

    Multinomial resampling (``rng.multinomial(n, [1/n]*n, size=n_boot)`` from
    ``np.random.default_rng(seed)``), the count form of the i.i.d. bootstrap: an estimator
    :math:`\\sum_t c_t a_t / \\sum_t c_t` evaluated on row ``c`` is its value on that resample.
    Take the interval of the replicates with :func:`percentile_interval`.
    """
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def bootstrap_ratio_ci(
    num: ArrayLike, den: ArrayLike, *, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Ratio of sums :math:`\\sum_i a_i / \\sum_i b_i` over i.i.d. units (clicks per shown item
    over sessions) and its 95% percentile interval, resampling whole units (:func:`boot_counts`)
    so numerator and denominator of one unit stay together. NaN when the denominator is 0."""
    a, b = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"ratio bootstrap: need two non-empty 1-D arrays of one shape, got {a.shape}, {b.shape}"
        )
    if b.sum() <= 0:
        return float("nan"), float("nan"), float("nan")
    c = boot_counts(len(a), n_boot, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = (c @ a) / (c @ b)
    lo, hi = percentile_interval(reps, omit_nan=True)
    return float(a.sum() / b.sum()), lo, hi


def t_mean_ci(x: ArrayLike, *, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a few independent replicates (one value per seed) and its Student-t interval
    with ``n − 1`` degrees of freedom. With one replicate the interval is undefined (NaN)."""
    v = np.asarray(x, np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError(f"t interval: need a non-empty 1-D array, got shape {v.shape}")
    m = float(v.mean())
    if len(v) == 1:
        return m, float("nan"), float("nan")
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half
