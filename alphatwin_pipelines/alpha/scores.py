"""Model scores for the ``ml_rank`` strategy family, point in time, in one place.

* In sample (optimisation, cards, allocations): the stored ``alpha_predictions``. The score of
  session t is the prediction made at t by the model current at t (``catalogue.current_models``),
  so it is as causal as a price.
* Walk-forward (validation): each window's test sessions are scored by a model trained with
  ``cutoff = the window's train end`` (labels known strictly before it), never by a model that
  saw a label of the test slice. :func:`window_scores` is that hook; :func:`walk_forward_scores`
  stitches it over the windows onto the stored scores, so the rest of the walk-forward (choosing
  on train slices, trading test slices) runs unchanged on ``market.with_scores(...)``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from alphatwin_pipelines.alpha.dataset import model_features, read_features, read_training_inputs
from alphatwin_pipelines.alpha.predict import read_score_matrix
from alphatwin_pipelines.alpha.training import AlphaTrainingConfig, train_version
from alphatwin_pipelines.storage import TableStore
from alphatwin_pipelines.strategies.family_params import ML_RANK_HORIZONS
from alphatwin_pipelines.strategies.market import MarketArrays
from alphatwin_pipelines.tables import ALPHA_PREDICTIONS


def stored_scores(store: TableStore, start, end, horizons=ML_RANK_HORIZONS) -> dict[int, pd.DataFrame]:
    """horizon -> (sessions x symbols) stored scores in [start, end]; horizons without any are left out."""
    if len(store.stored_sessions(ALPHA_PREDICTIONS)) == 0:
        return {}
    out = {}
    for h in horizons:
        frame = read_score_matrix(store, int(h), start, end)
        if not frame.empty:
            out[int(h)] = frame
    return out


#: Share of the in-sample sessions ml_rank needs scores on, else it is not optimised (a few scored
#: sessions would make a flat book whose Sharpe means nothing).
MIN_SCORED_SHARE = 0.5


def missing_horizons(store: TableStore, sessions: pd.DatetimeIndex) -> list[int]:
    """The ml_rank horizons with stored predictions on fewer than ``MIN_SCORED_SHARE`` of
    ``sessions`` (empty: ml_rank can run)."""
    have = stored_scores(store, sessions[0], sessions[-1])
    return [h for h in ML_RANK_HORIZONS
            if h not in have or have[h].index.isin(sessions).sum() < MIN_SCORED_SHARE * len(sessions)]


def attach_scores(store: TableStore, market: MarketArrays) -> MarketArrays:
    """``market`` carrying the stored scores of its sessions (no-op when none are stored)."""
    frames = stored_scores(store, market.dates[0], market.dates[-1])
    return market.with_scores(frames) if frames else market


def prediction_inputs(store: TableStore, sessions: pd.DatetimeIndex) -> dict[str, str]:
    """ml_rank's record also pins the alpha_predictions it ranked."""
    from alphatwin_pipelines.reproducibility import content_hash

    paths = [p for p in (store.partition_path(ALPHA_PREDICTIONS, s) for s in sessions) if p.exists()]
    return {f"{ALPHA_PREDICTIONS}[{sessions[0]:%Y-%m-%d}..{sessions[-1]:%Y-%m-%d}]": content_hash(paths)}


def with_ml_scores(store: TableStore, market: MarketArrays, planned: list, in_sample: pd.DatetimeIndex, logger):
    """ml_rank ranks the stored alpha_predictions: attach them, or drop its studies (logged) when
    a horizon it searches is scored on too few in-sample sessions, so a run without them succeeds."""
    missing = missing_horizons(store, in_sample)
    if missing:
        if logger is not None:
            logger.info(f"ml_rank skipped: alpha_predictions scores horizon(s) {missing} on fewer than "
                        f"{MIN_SCORED_SHARE:.0%} of the in-sample sessions {in_sample[0]:%Y-%m-%d}.."
                        f"{in_sample[-1]:%Y-%m-%d}; materialise alpha_models (weekly cutoffs) and "
                        "alpha_predictions over that range first")
        return market, [(f, lv) for f, lv in planned if f != "ml_rank"]
    return attach_scores(store, market), planned


@dataclass(frozen=True)
class WindowScores:
    scores: pd.DataFrame  # test sessions x symbols
    model_version: str
    cutoff: pd.Timestamp
    labels_known_through: pd.Timestamp


def window_scores(store: TableStore, horizon: int, train_end, test_sessions, storage_url: str,
                  settings: AlphaTrainingConfig | None = None, names: list[str] | None = None) -> WindowScores:
    """Train the model of ``horizon`` with cutoff ``train_end`` (only labels known before it, so
    only the window's training slice) and score every symbol of ``test_sessions`` with it.

    The model is not registered nor stored in ``alpha_models``: it exists for this window only.
    Its Optuna study (keyed by the training data) resumes, so re-running gives the same scores.
    """
    settings = settings or AlphaTrainingConfig()
    cutoff = pd.Timestamp(train_end)
    names = names or model_features()
    features, labels = read_training_inputs(store, cutoff, settings.train_sessions, (int(horizon),), names)
    version = train_version(features, labels, int(horizon), cutoff, names, settings, storage_url)
    sessions = pd.DatetimeIndex(test_sessions)
    test = read_features(store, sessions[0], sessions[-1], names)
    test = test[test["date"].isin(sessions)]
    scored = test[["date", "symbol"]].assign(score=version.model.predict(test[names].to_numpy(dtype=float)))
    frame = scored.pivot_table(index="date", columns="symbol", values="score", aggfunc="last").sort_index()
    return WindowScores(frame, version.version, cutoff, version.data.labels_known_through)


def production_settings(store: TableStore, horizon: int) -> tuple[AlphaTrainingConfig, list[str] | None]:
    """How the latest stored model of ``horizon`` was trained (window, folds, trials, trees, seed, features),
    so a window's model is trained the same way; the defaults when none is stored."""
    from alphatwin_pipelines.alpha.catalogue import read_models

    models = read_models(store)
    mine = models[models["horizon"] == int(horizon)] if len(models) else models
    if mine.empty or "record_json" not in mine.columns:
        return AlphaTrainingConfig(horizons=(int(horizon),)), None
    latest = mine.sort_values("cutoff", kind="stable").iloc[-1]
    rec = json.loads(latest["record_json"])
    cv = rec["cv"]
    settings = AlphaTrainingConfig(horizons=(int(horizon),), train_sessions=int(rec["train_sessions"]),
                                   n_trials=int(latest["n_trials"]),
                                   folds=int(cv["folds"]), embargo=int(cv["embargo"]),
                                   n_estimators=int(cv["n_estimators"]), seed=int(rec["seeds"]["model"]))
    return settings, list(rec["features"])


def walk_forward_market(store: TableStore, market: MarketArrays, windows, storage_url: str):
    """``market`` carrying, for every ml_rank horizon, :func:`walk_forward_scores` (each horizon's
    model trained as its latest stored one was), and the models used per horizon and window."""
    frames, used = {}, []
    for h in ML_RANK_HORIZONS:
        settings, names = production_settings(store, h)
        frames[h], mine = walk_forward_scores(store, market, h, windows, storage_url, settings, names)
        used += [{"horizon": int(h), **u} for u in mine]
    return market.with_scores(frames), used


def walk_forward_scores(store: TableStore, market: MarketArrays, horizon: int, windows, storage_url: str,
                        settings: AlphaTrainingConfig | None = None, names: list[str] | None = None):
    """(scores, used): the stored scores of ``market``'s sessions with every window's test rows
    replaced by :func:`window_scores` of that window; ``used`` lists per window its train end,
    test range, model version, cutoff and labels_known_through."""
    base = stored_scores(store, market.dates[0], market.dates[-1], (int(horizon),)).get(int(horizon))
    scores = (base if base is not None else pd.DataFrame()).reindex(index=market.dates, columns=list(market.symbols))
    used = []
    for w in windows:
        test = market.dates[w.test_positions]
        got = window_scores(store, horizon, w.train_end, test, storage_url, settings, names)
        block = got.scores.reindex(index=test, columns=list(market.symbols))
        scores.loc[test] = block.to_numpy(dtype=float)
        used.append({"window": int(w.index), "train_end": f"{w.train_end:%Y-%m-%d}",
                     "test_start": f"{w.test_start:%Y-%m-%d}", "test_end": f"{w.test_end:%Y-%m-%d}",
                     "model_version": got.model_version, "cutoff": f"{got.cutoff:%Y-%m-%d}",
                     "labels_known_through": f"{got.labels_known_through:%Y-%m-%d}"})
    return scores, used
