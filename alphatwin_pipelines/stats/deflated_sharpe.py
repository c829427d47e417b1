"""Probabilistic and Deflated Sharpe Ratios.

References
----------
* Bailey, D. H. and López de Prado, M. (2012), "The Sharpe Ratio Efficient Frontier",
  Journal of Risk 15(2): the Probabilistic Sharpe Ratio (PSR) and the standard error of an
  estimated Sharpe ratio under non-normal returns (after Mertens 2002 and Lo 2002).
* Bailey, D. H. and López de Prado, M. (2014), "The Deflated Sharpe Ratio: Correcting for
  Selection Bias, Backtest Overfitting and Non-Normality", Journal of Portfolio Management
  40(5), 94-107: the expected maximum of N Sharpe ratios under the null (built on the
  Euler-Mascheroni approximation of the expected maximum of N iid standard normals) and
  DSR = PSR evaluated at that expected maximum.

Equations are cited by their content below, not by number (the numbering differs between the
SSRN and journal versions and was not checked against the published text here).

The formulas, with SR^ the observed Sharpe ratio, T observations, g3 the skewness and g4 the
raw kurtosis of the returns, Z the standard normal CDF and gamma the Euler-Mascheroni constant:

    PSR(SR*) = Z[ (SR^ - SR*) sqrt(T - 1) / sqrt(1 - g3 SR^ + (g4 - 1) / 4 SR^2) ]
    SR0      = sqrt(V[SR_n]) ((1 - gamma) Z^-1[1 - 1/N] + gamma Z^-1[1 - 1/(N e)])
    DSR      = PSR(SR0)

Conventions (these matter; getting them wrong silently changes the answer):

* Every Sharpe ratio here is **per period** (not annualised): the PSR denominator is not
  scale-free. Divide an annualised SR by sqrt(periods per year) and an annualised SR
  variance by periods per year (``annual_to_per_period``).
* ``kurt`` is the **raw (Pearson) kurtosis**, 3 for normal returns, not the excess kurtosis.
  (``1 - g3 SR + (g4 - 1)/4 SR^2`` equals ``1 + SR^2/2 - g3 SR + (g4 - 3)/4 SR^2``.)
* ``V[SR_n]`` is the variance of the N trials' estimated (per-period) Sharpe ratios.

The module uses only the standard library's ``statistics.NormalDist`` for Z and Z^-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from alphatwin_pipelines.stats.metrics import (
    PERIODS_PER_YEAR, _as_2d, kurtosis, sharpe_ratio, skewness,
)

EULER_MASCHERONI = 0.5772156649015329
_Z = NormalDist()

__all__ = [
    "EULER_MASCHERONI", "DeflatedSharpe", "annual_to_per_period", "sharpe_ratio_std",
    "probabilistic_sharpe_ratio", "expected_max_sharpe", "deflated_sharpe_ratio",
    "deflated_sharpe_ratio_from_returns", "deflate_trials",
]


def annual_to_per_period(sr_annual: float, sr_variance_annual: float | None = None,
                         periods_per_year: float = PERIODS_PER_YEAR):
    """Per-period SR (and SR variance) from annualised ones: SR / sqrt(k), V / k."""
    sr = sr_annual / math.sqrt(periods_per_year)
    if sr_variance_annual is None:
        return sr
    return sr, sr_variance_annual / periods_per_year


def sharpe_ratio_std(sr: float, n_obs: float, skew: float = 0.0, kurt: float = 3.0) -> float:
    """Standard error of an estimated per-period Sharpe ratio under non-normal returns.

    sqrt((1 - g3 SR + (g4 - 1)/4 SR^2) / (T - 1)): the denominator of the PSR (Bailey & López
    de Prado 2012) and so of the DSR (2014). NaN if T < 2 or the radicand is not positive.
    """
    radicand = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not (n_obs >= 2 and radicand > 0):
        return math.nan
    return math.sqrt(radicand / (n_obs - 1.0))


def probabilistic_sharpe_ratio(sr: float, sr_benchmark: float, n_obs: float,
                               skew: float = 0.0, kurt: float = 3.0) -> float:
    """PSR: probability that the true Sharpe ratio exceeds ``sr_benchmark``.

    ``PSR(SR*) = Z[(SR^ - SR*) sqrt(T - 1) / sqrt(1 - g3 SR^ + (g4 - 1)/4 SR^2)]``.
    ``sr`` and ``sr_benchmark`` are per-period; ``kurt`` is raw kurtosis (3 = normal).
    PSR(SR^) is exactly 0.5 for any T. NaN when any input is NaN or T < 2.
    """
    se = sharpe_ratio_std(sr, n_obs, skew, kurt)
    if math.isnan(se) or math.isnan(sr_benchmark):
        return math.nan
    return _Z.cdf((sr - sr_benchmark) / se)


def expected_max_sharpe(n_trials: float, var_sr: float, mean_sr: float = 0.0) -> float:
    """Expected maximum of ``n_trials`` estimated Sharpe ratios whose true value is ``mean_sr``.

    ``E[max SR_n] ~ mean + sqrt(V) ((1 - gamma) Z^-1[1 - 1/N] + gamma Z^-1[1 - 1/(N e)])``
    (Bailey & López de Prado 2014, the SR0 of the DSR; the bracket is their approximation of
    the expected maximum of N iid standard normals). For N = 100, V = 1 it is 2.5306. With a
    single trial there is no selection, so the result is ``mean_sr`` (the formula itself would
    give -inf). ``n_trials`` may be fractional (an effective number of independent trials).
    """
    if not n_trials >= 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    if var_sr < 0:
        raise ValueError(f"var_sr must be >= 0, got {var_sr}")
    if n_trials == 1:
        return float(mean_sr)
    g = EULER_MASCHERONI
    z = (1 - g) * _Z.inv_cdf(1 - 1 / n_trials) + g * _Z.inv_cdf(1 - 1 / (n_trials * math.e))
    return float(mean_sr + math.sqrt(var_sr) * z)


def deflated_sharpe_ratio(sr: float, n_obs: float, n_trials: float, sr_variance: float,
                          skew: float = 0.0, kurt: float = 3.0) -> float:
    """DSR = PSR(SR0), SR0 = :func:`expected_max_sharpe` (n_trials, sr_variance).

    The probability that the selected strategy's true Sharpe ratio is positive once the
    selection among ``n_trials`` trials, the track-record length and non-normal returns are
    accounted for. ``sr`` / ``sr_variance`` are per-period; ``kurt`` is raw kurtosis.
    With ``n_trials = 1`` this is PSR(0).
    """
    sr0 = expected_max_sharpe(n_trials, sr_variance)
    return probabilistic_sharpe_ratio(sr, sr0, n_obs, skew, kurt)


def deflated_sharpe_ratio_from_returns(returns, n_trials: float, sr_variance: float) -> float:
    """DSR of a selected strategy's per-period returns; SR, T, skew and kurtosis are estimated
    from them (NaNs dropped). ``sr_variance`` is the per-period variance of the trials' SRs."""
    r = _as_2d(returns)[0]
    if r.shape[1] != 1:
        raise ValueError("pass the selected strategy's returns as one series")
    n = float((~np.isnan(r)).sum())
    sr = sharpe_ratio(r[:, 0], annualise=False)
    return deflated_sharpe_ratio(sr, n, n_trials, sr_variance, skewness(r[:, 0]),
                                 kurtosis(r[:, 0]))


@dataclass(frozen=True)
class DeflatedSharpe:
    """Everything :func:`deflate_trials` used and found; Sharpe ratios are per period."""

    selected: object
    sr: float
    sr_annualised: float
    n_obs: int
    skew: float
    kurt: float
    n_trials: int
    sr_variance: float
    sr0: float
    sr0_annualised: float
    psr: float  # PSR against 0: ignores the selection among the trials
    dsr: float  # PSR against SR0: accounts for it


def deflate_trials(trial_returns, selected=None,
                   periods_per_year: float = PERIODS_PER_YEAR) -> DeflatedSharpe:
    """DSR of the best (or ``selected``) column of a (T, N) table of every trial's returns.

    N is the number of columns and V[SR_n] the sample variance (ddof=1) of their per-period
    Sharpe ratios. Record *every* configuration tried, failures included, or N and V are
    understated and the DSR is too generous. A column without a defined SR (too short or
    constant, e.g. it never traded) still counts in N but not in V[SR_n].
    """
    r, columns = _as_2d(trial_returns)
    srs = np.asarray(sharpe_ratio(r, annualise=False), dtype=float).reshape(-1)
    ok = ~np.isnan(srs)
    if ok.sum() < 1:
        raise ValueError("no trial has a defined Sharpe ratio (too short or constant)")
    labels = list(columns) if columns is not None and not isinstance(columns, str) else list(
        range(r.shape[1]))
    if selected is None:
        pos = int(np.nanargmax(srs))
    else:
        pos = labels.index(selected)
    col = r[:, pos]
    n_trials = r.shape[1]
    var = float(np.var(srs[ok], ddof=1)) if ok.sum() > 1 else 0.0
    sr, k = float(srs[pos]), math.sqrt(periods_per_year)
    sr0 = expected_max_sharpe(n_trials, var)
    n_obs, g3, g4 = int((~np.isnan(col)).sum()), skewness(col), kurtosis(col)
    return DeflatedSharpe(
        selected=labels[pos], sr=sr, sr_annualised=sr * k, n_obs=n_obs, skew=g3, kurt=g4,
        n_trials=n_trials, sr_variance=var, sr0=sr0, sr0_annualised=sr0 * k,
        psr=probabilistic_sharpe_ratio(sr, 0.0, n_obs, g3, g4),
        dsr=probabilistic_sharpe_ratio(sr, sr0, n_obs, g3, g4),
    )
