"""Bootstrap intervals and the paired bootstrap against distributions computed by hand."""
from __future__ import annotations

from math import factorial

import numpy as np
import pytest

from egoadapt.eval.stats import bootstrap_ci, paired_bootstrap, statistic

B = 20000


def exact_paired(n_gain: int, n_loss: int, n: int) -> dict[float, float]:
    """Exact bootstrap distribution of mean(b - a) when n_gain pairs differ by +1, n_loss by -1
    and the rest by 0: (X, Y) gains and losses drawn ~ Multinomial(n)."""
    p = (n_gain / n, n_loss / n, (n - n_gain - n_loss) / n)
    dist: dict[float, float] = {}
    for x in range(n + 1):
        for y in range(n + 1 - x):
            z = n - x - y
            pr = factorial(n) / (factorial(x) * factorial(y) * factorial(z)) * p[0] ** x * p[1] ** y * p[2] ** z
            key = round((x - y) / n, 9)
            dist[key] = dist.get(key, 0.0) + pr
    return dist


def quantile(dist: dict[float, float], q: float) -> float:
    acc = 0.0
    for k in sorted(dist):
        acc += dist[k]
        if acc >= q:
            return k
    return max(dist)


def test_paired_bootstrap_matches_the_exact_distribution():
    a = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]  # 3 gains (items 0-2), 1 loss (item 3), 6 ties
    b = [1, 1, 1, 0, 1, 1, 1, 0, 0, 0]
    res = paired_bootstrap(a, b, n_resamples=B, seed=0)
    dist = exact_paired(3, 1, 10)
    assert res.n == 10 and res.delta == pytest.approx(0.2)
    # the exact 2.5% / 97.5% points sit well inside an atom (CDF 0.0086 -> 0.0318, 0.9701 -> 0.9928)
    assert res.ci_low == pytest.approx(quantile(dist, 0.025)) == pytest.approx(-0.2)
    assert res.ci_high == pytest.approx(quantile(dist, 0.975)) == pytest.approx(0.6)
    p_exact = sum(v for k, v in dist.items() if abs(k - 0.2) >= 0.2 - 1e-9)
    assert p_exact == pytest.approx(0.4258, abs=1e-4)
    assert res.p_value == pytest.approx(p_exact, abs=0.015)


def test_paired_bootstrap_degenerate_cases():
    same = paired_bootstrap([1, 0, 1, 0], [1, 0, 1, 0], n_resamples=500)
    assert (same.delta, same.ci_low, same.ci_high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    flip = paired_bootstrap([0] * 6, [1] * 6, n_resamples=500)
    assert (flip.delta, flip.ci_low, flip.ci_high) == (1.0, 1.0, 1.0)
    assert flip.p_value == pytest.approx(1 / 501)  # never 0 from finitely many draws
    empty = paired_bootstrap([], [])
    assert empty.n == 0 and empty.delta is None and empty.p_value is None
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 0])


def test_macro_statistic_and_stratified_resampling():
    values = [1, 1, 1, 0, 0, 1]  # domain x: 3/4, domain y: 1/2
    strata = ["x", "x", "x", "x", "y", "y"]
    assert statistic(values) == pytest.approx(4 / 6)
    assert statistic(values, strata) == pytest.approx((0.75 + 0.5) / 2)
    # a stratum that is all correct stays all correct in every resample: the macro interval of
    # [x: all 1, y: all 0] is the single point 0.5 (an unstratified bootstrap would spread it)
    lo, hi = bootstrap_ci([1, 1, 1, 0], ["x", "x", "x", "y"], n_resamples=300)
    assert lo == hi == 0.5
    a, b = [0, 0, 1, 1, 0, 0], [1, 0, 1, 1, 1, 1]
    strata = ["x", "x", "x", "x", "y", "y"]
    assert paired_bootstrap(a, b, strata, n_resamples=300).delta == pytest.approx((0.25 + 1.0) / 2)


def test_intervals_are_seeded_per_key():
    values = list(np.random.default_rng(3).integers(0, 2, 40))
    one = bootstrap_ci(values, n_resamples=300, seed=1, key="close/all/all/micro")
    assert one == bootstrap_ci(values, n_resamples=300, seed=1, key="close/all/all/micro")
    assert one != bootstrap_ci(values, n_resamples=300, seed=2, key="close/all/all/micro")
    lo, hi = one
    assert lo <= statistic(values) <= hi
    assert bootstrap_ci([1, 1, 1], n_resamples=50) == (1.0, 1.0)
    assert bootstrap_ci([], n_resamples=50) == (None, None)


def test_mcnemar_exact_on_hand_computed_tables():
    from math import comb

    from egoadapt.eval.stats import mcnemar_exact

    # 2x2 table of (a correct?, b correct?): 5 both right, 2 only a (losses), 10 only b (gains), 3 both wrong
    a = [1] * 5 + [1] * 2 + [0] * 10 + [0] * 3
    b = [1] * 5 + [0] * 2 + [1] * 10 + [0] * 3
    res = mcnemar_exact(a, b)
    assert (res.gains, res.losses) == (10, 2)
    # two-sided exact: 2 * P(X <= 2), X ~ Binomial(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert res.p_value == pytest.approx(2 * sum(comb(12, k) for k in range(3)) / 2 ** 12) == pytest.approx(0.03857, abs=1e-5)
    # symmetric in which run gains; ties carry no information
    assert mcnemar_exact(b, a).p_value == pytest.approx(res.p_value)
    assert mcnemar_exact(a + [1] * 50, b + [1] * 50).p_value == pytest.approx(res.p_value)
    # 3 gains, 1 loss: P(X <= 1) + P(X >= 3) = (1 + 4 + 4 + 1) / 16
    assert mcnemar_exact([0, 0, 0, 1], [1, 1, 1, 0]).p_value == pytest.approx(10 / 16)
    assert mcnemar_exact([0] * 6, [1] * 6).p_value == pytest.approx(2 / 64)
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]).p_value == 1.0  # no discordant item
    assert mcnemar_exact([], []).p_value is None
    with pytest.raises(ValueError):
        mcnemar_exact([1], [1, 0])
