"""Bootstrap intervals: one accuracy, and the paired difference of two evaluations; McNemar's
exact test for two classifiers scored on the same items.

Statistics are `micro` (mean over items) or `macro` (mean over strata, e.g. domains, of
each stratum's mean). Macro statistics resample within each stratum (a stratified
bootstrap), so no resample ever loses a domain. Every interval draws from its own stream
seeded by (seed, key): a cell's interval does not change when other cells are added.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
_EPS = 1e-12  # resampled means are rationals: compare them with a little slack


def rng_for(seed: int, key: str = "") -> np.random.Generator:
    digest = hashlib.sha256(f"egoadapt-bootstrap|{seed}|{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _groups(values: Sequence[float], strata: Sequence[str] | None) -> list[np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    if strata is None:
        return [v]
    if len(strata) != len(v):
        raise ValueError(f"{len(v)} values but {len(strata)} strata labels")
    labels = np.asarray(strata, dtype=object)
    return [v[labels == s] for s in sorted(set(strata))]


def statistic(values: Sequence[float], strata: Sequence[str] | None = None) -> float | None:
    """Micro mean (strata None) or macro mean over strata; None when there are no values."""
    groups = [g for g in _groups(values, strata) if len(g)]
    if not groups:
        return None
    return float(np.mean([g.mean() for g in groups]))


def resampled(values: Sequence[float], strata: Sequence[str] | None, n_resamples: int,
              rng: np.random.Generator) -> np.ndarray:
    """The statistic over `n_resamples` bootstrap resamples (within strata when given)."""
    groups = [g for g in _groups(values, strata) if len(g)]
    if not groups:
        return np.empty(0)
    means = [g[rng.integers(0, len(g), size=(n_resamples, len(g)))].mean(axis=1) for g in groups]
    return np.mean(means, axis=0)


def _interval(draws: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    if not len(draws):
        return None, None
    alpha = (1.0 - confidence) / 2
    lo, hi = np.quantile(draws, [alpha, 1.0 - alpha], method="inverted_cdf")  # observed values, no interpolation
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], strata: Sequence[str] | None = None, *,
                 n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, key: str = "",
                 confidence: float = DEFAULT_CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile interval of the micro (or, with strata, macro) mean."""
    return _interval(resampled(values, strata, n_resamples, rng_for(seed, key)), confidence)


@dataclass(frozen=True)
class PairedResult:
    n: int  # pairs
    delta: float | None  # statistic(b) - statistic(a) on the paired items
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # two-sided, H0: delta = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return {"n_paired": self.n, "delta": self.delta, "delta_ci_low": self.ci_low,
                "delta_ci_high": self.ci_high, "p_value": self.p_value}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], strata: Sequence[str] | None = None, *,
                     n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, key: str = "",
                     confidence: float = DEFAULT_CONFIDENCE) -> PairedResult:
    """Paired bootstrap of b - a over the same items (a[i] and b[i] score item i).

    Items are resampled as pairs, so the interval reflects per-item agreement and not two
    independent samples. The p-value is the share of resamples whose deviation from the
    observed delta is at least as large as the delta itself (the bootstrap distribution
    shifted to H0), with the usual +1 so it is never 0 from a finite number of draws.
    """
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs equal lengths, got {len(a)} and {len(b)}")
    if not len(a):
        return PairedResult(0, None, None, None, None)
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    delta = statistic(d, strata)
    draws = resampled(d, strata, n_resamples, rng_for(seed, key))
    lo, hi = _interval(draws, confidence)
    extreme = int(np.sum(np.abs(draws - delta) >= abs(delta) - _EPS))
    p = min(1.0, (extreme + 1) / (len(draws) + 1))
    return PairedResult(len(d), delta, lo, hi, p)


@dataclass(frozen=True)
class McNemarResult:
    gains: int  # items b answered correctly and a did not
    losses: int  # items a answered correctly and b did not
    p_value: float | None  # exact two-sided, H0: gains and losses equally likely; None without pairs

    def to_dict(self) -> dict[str, float | int | None]:
        return {"mcnemar_gains": self.gains, "mcnemar_losses": self.losses, "mcnemar_p": self.p_value}


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemarResult:
    """McNemar's exact test on paired correctness (a[i], b[i] truthy when item i is correct):
    under H0 the discordant items split Binomial(gains + losses, 1/2); two-sided p from
    scipy's binomtest. Concordant items carry no information; no discordant item gives p = 1."""
    from scipy.stats import binomtest

    if len(a) != len(b):
        raise ValueError(f"McNemar's test needs equal lengths, got {len(a)} and {len(b)}")
    if not len(a):
        return McNemarResult(0, 0, None)
    gains = sum(1 for x, y in zip(a, b) if not x and y)
    losses = sum(1 for x, y in zip(a, b) if x and not y)
    if gains + losses == 0:
        return McNemarResult(0, 0, 1.0)
    return McNemarResult(gains, losses, float(binomtest(gains, gains + losses, 0.5).pvalue))
