"""A feature panel with a planted signal, and its labels, for the alpha engine tests.

The synthetic market plants no predictable cross-sectional return (its per-company drift is
about 1% of a day's idiosyncratic noise), so the engine's no-leakage and noise-band tests use
this panel: ``signal`` is the correlation of ``f0`` with the next 1-session return.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphatwin_pipelines.calendar import all_sessions, sessions_between

NAMES = [f"f{k}" for k in range(5)]


def planted_panel(n_symbols: int = 40, start: str = "2022-01-03", sessions: int = 160, signal: float = 0.3,
                  seed: int = 0, horizons=(1,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    days = sessions_between(start, all_sessions()[all_sessions().searchsorted(pd.Timestamp(start)) + sessions - 1])
    symbols = [f"S{i:03d}" for i in range(n_symbols)]
    x = rng.standard_normal((len(days), n_symbols, len(NAMES)))
    features = pd.DataFrame({"date": np.repeat(days, n_symbols), "symbol": pd.array(symbols * len(days), dtype="string")})
    for k, name in enumerate(NAMES):
        features[name] = x[:, :, k].ravel()
    frames = []
    calendar = all_sessions()
    for h in horizons:
        noise = rng.standard_normal((len(days), n_symbols))
        ret = 0.01 * (signal * x[:, :, 0] + np.sqrt(1 - signal**2) * noise)
        pos = calendar.get_indexer(days) + 1 + h
        frames.append(pd.DataFrame({"date": np.repeat(days, n_symbols), "symbol": pd.array(symbols * len(days), dtype="string"),
                                    "horizon": h, "fwd_return": ret.ravel(),
                                    "available": np.repeat(calendar[pos], n_symbols)}))
    return features, pd.concat(frames, ignore_index=True)


def write_panel(store, features: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Store the panel as the ``features`` table (one partition per date) and ``alpha_labels``
    (one partition per availability session), as the stages do."""
    from alphatwin_pipelines.tables import ALPHA_LABELS, FEATURES

    store.write_sessions(FEATURES, features, pd.DatetimeIndex(features["date"].unique()))
    store.write_sessions(ALPHA_LABELS, labels, pd.DatetimeIndex(labels["available"].unique()), key="available")


def train_and_store(store, cutoff, settings, storage_url: str, names=NAMES):
    """Train the models of ``settings`` with ``cutoff`` from ``store`` and add them to ``alpha_models``
    (without a registry: these tests are about the data a model sees)."""
    from alphatwin_pipelines.alpha.catalogue import model_row, upsert_models, write_artifact
    from alphatwin_pipelines.alpha.dataset import read_training_inputs
    from alphatwin_pipelines.alpha.training import train_version

    features, labels = read_training_inputs(store, cutoff, settings.train_sessions, settings.horizons, names)
    rows = []
    for h in settings.horizons:
        version = train_version(features, labels, h, cutoff, names, settings, storage_url)
        artifact = write_artifact(store, version.version, version.artifact_bytes())
        rows.append(model_row(store, version, artifact, "no-run", "0", f"test-h{h}"))
    return upsert_models(store, rows)
