"""Compiled copies of Optuna's ``_log_ndtr`` and small ``erf`` for the TPE sampler: the same floats.

With integer parameters, TPE's acquisition evaluates the Gaussian mass of every candidate under
every kernel of its Parzen estimators; Optuna computes each log-CDF in Python
(``np.frompyfunc(_log_ndtr_single)``), which was about half of a sampler's time in a 500-trial study
(benchmarks/README.md, optimisation). :func:`log_ndtr` runs the same statements compiled with
numba (libm's ``erf``/``erfc``/``log`` as CPython's ``math`` calls them), so the values, and with
them the trials a seeded study draws, are the same to the bit; a test compares both on a grid.

:func:`install` replaces ``optuna.samplers._tpe._truncnorm._log_ndtr`` and ``erf`` (which maps
``math.erf`` in Python below 2,000 values: :func:`small_erf`) once per process after checking the
copies against the originals on probe values; if Optuna moved the function or a value
differs, it leaves Optuna alone (the study is then only slower).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math

import numpy as np
from numba import njit

_EPS = 2.220446049250313e-16  # sys.float_info.epsilon, as Optuna's loop compares
_LOG_2PI = math.log(2 * math.pi)
_SQRT2 = 2**0.5
_installed: list[bool] = []
ORIGINALS: dict = {}  # Optuna's functions replaced by install(), by name
# CPython's ``a**2`` on a float calls libm's pow, which may differ from ``a * a`` by an ulp; numba
# would rewrite a pow call to a multiplication, so the compiled copy calls libm through ctypes.
_libm_pow = ctypes.CDLL(ctypes.util.find_library("m")).pow
_libm_pow.restype, _libm_pow.argtypes = ctypes.c_double, (ctypes.c_double, ctypes.c_double)


@njit(cache=True, nogil=True)
def _ndtr_single(a):
    x = a / _SQRT2
    if x < -1 / _SQRT2:
        return 0.5 * math.erfc(-x)
    if x < 1 / _SQRT2:
        return 0.5 + 0.5 * math.erf(x)
    return 1.0 - 0.5 * math.erfc(x)


@njit(nogil=True)  # not cached: it holds a ctypes pointer (compiles in ~0.3 s)
def _log_ndtr_single(a):
    if a > 6:
        return -_ndtr_single(-a)
    if a > -20:
        return math.log(_ndtr_single(a))
    log_lhs = -0.5 * _libm_pow(a, 2.0) - math.log(-a) - 0.5 * _LOG_2PI
    last_total = 0.0
    right_hand_side = 1.0
    numerator = 1.0
    denom_factor = 1.0
    denom_cons = 1 / _libm_pow(a, 2.0)
    sign = 1
    i = 0
    while abs(last_total - right_hand_side) > _EPS:
        i += 1
        last_total = right_hand_side
        sign = -sign
        denom_factor *= denom_cons
        numerator *= 2 * i - 1
        right_hand_side += sign * numerator * denom_factor
    return log_lhs + math.log(right_hand_side)


@njit(nogil=True)
def _log_ndtr_flat(a, out):
    for i in range(a.shape[0]):
        out[i] = _log_ndtr_single(a[i])


@njit(cache=True, nogil=True)
def _erf_flat(a, out):
    for i in range(a.shape[0]):
        out[i] = math.erf(a[i])


def small_erf(x, original):
    """Optuna's ``_erf.erf``: below 2,000 values it maps ``math.erf`` in Python, which this does
    compiled (the same libm call); larger arrays go to Optuna's own NumPy approximation."""
    if x.size >= 2000:
        return original(x)
    flat = np.ascontiguousarray(x, dtype=np.float64).ravel()
    out = np.empty(flat.shape[0])
    _erf_flat(flat, out)
    return out.reshape(x.shape)


def log_ndtr(a) -> np.ndarray:
    """Optuna's ``_truncnorm._log_ndtr(a)``: the log of the standard normal CDF, elementwise."""
    a = np.asarray(a, dtype=np.float64)
    flat = np.ascontiguousarray(a).ravel()
    out = np.empty(flat.shape[0])
    _log_ndtr_flat(flat, out)
    return out.reshape(a.shape)


def probe_values() -> np.ndarray:
    """Values across every branch of the function (tails, centre, the asymptotic series)."""
    return np.concatenate([np.linspace(-60.0, 12.0, 4001), [-20.0, -19.999, 6.0, 6.001, 0.0, -0.0,
                                                             -1 / _SQRT2 * _SQRT2, 1.0, -38.5]])


def install() -> bool:
    """Use :func:`log_ndtr` inside Optuna's TPE (once per process); True when installed."""
    if _installed:
        return _installed[0]
    try:
        from optuna.samplers._tpe import _truncnorm

        original, original_erf = _truncnorm._log_ndtr, _truncnorm.erf
        probe = probe_values()
        erf = functools.partial(small_erf, original=original_erf)
        ok = np.array_equal(log_ndtr(probe), original(probe)) and np.array_equal(erf(probe[:1999]),
                                                                                    original_erf(probe[:1999]))
    except (ImportError, AttributeError):
        ok = False
    if ok:
        ORIGINALS.update(_log_ndtr=original, erf=original_erf)
        _truncnorm._log_ndtr, _truncnorm.erf = log_ndtr, erf
    _installed.append(ok)
    return ok
