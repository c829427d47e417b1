"""Corporate-action corrections: the user's overrides of provider events, versioned by content.

Providers get some events wrong (a spin-off's distribution garbled, a reverse split left out).
As in zipline's and LEAN's adjustment files, a user states the right event in a small table
that lives with the data, ``<data_dir>/corrections/corporate_actions.csv``:

    symbol,ex_date,kind,value,reason,source
    KSU,2000-07-13,split,0.5,"1-for-2 reverse split with the Stilwell spin-off, missing",KCSI 10-Q 2000-Q3

``kind`` is ``split`` (``value`` = new shares per old share, 0.5 for 1-for-2) or ``dividend`` /
``distribution`` (``value`` = cash or cash-equivalent per share on the ex-date; ``distribution``
names a spin-off or special payment). A correction replaces that part of the provider's event
on the ex-date row; ``dividend`` 0 or ``split`` 1 removes it. The provider's raw bars are never
touched: corrections are applied when the adjustment factors are built, and each corrected
event names the version it came from.

Versioned: the version is the sha256 of the file's bytes (first 16 hex digits), and every
version used is kept as ``corrections/versions/<version>.csv``, so a factors partition (and any
reproducibility record hashing it) names exactly the overrides it was built with. None ship
by default: with no file, provider events are used as they are.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.data_dir import resolve_data_dir

CORRECTIONS_PATH = Path("corrections") / "corporate_actions.csv"
VERSIONS_DIR = Path("corrections") / "versions"
COLUMNS: tuple[str, ...] = ("symbol", "ex_date", "kind", "value", "reason", "source")
#: Which bar column each kind overrides.
KINDS: dict[str, str] = {"split": "split_ratio", "dividend": "dividend", "distribution": "dividend"}
APPLIED_COLUMNS: tuple[str, ...] = (*COLUMNS, "provider_value", "applied")


class CorrectionsError(ValueError):
    """The corrections file cannot be used as it is; the message names the file, line and column."""


@dataclass(frozen=True)
class Corrections:
    """The parsed table (``ex_date`` as datetime64[ns], ``value`` as float64) and its version."""

    table: pd.DataFrame
    version: str | None = None
    path: Path | None = None  # a UPath when the data directory is on an object store

    @property
    def empty(self) -> bool:
        return self.table.empty


def no_corrections() -> Corrections:
    return Corrections(pd.DataFrame({c: pd.Series(dtype="string") for c in COLUMNS})
                       .astype({"ex_date": "datetime64[ns]", "value": "float64"}))


def corrections_file(data_dir: str | os.PathLike):
    """The corrections file of ``data_dir`` (a local ``Path`` or an object-store ``UPath``)."""
    return resolve_data_dir(data_dir) / CORRECTIONS_PATH.as_posix()


def load_corrections(data_dir: str | os.PathLike) -> Corrections:
    """Read and check ``<data_dir>/corrections/corporate_actions.csv``; no file means no corrections.

    The version used is archived under ``corrections/versions/`` (written once, atomically).
    """
    path = corrections_file(data_dir)
    if not path.exists():
        return no_corrections()
    data = path.read_bytes()
    table = parse_corrections(data, path)
    version = hashlib.sha256(data).hexdigest()[:16]
    archived = resolve_data_dir(data_dir) / VERSIONS_DIR.as_posix() / f"{version}.csv"
    if not archived.exists():
        atomic_write_bytes(archived, lambda tmp: Path(tmp).write_bytes(data))
    return Corrections(table, version, path)


def parse_corrections(data: bytes, path: Path) -> pd.DataFrame:
    """The checked table; a bad file raises ``CorrectionsError`` naming its line and column."""
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CorrectionsError(f"{path}: not a readable CSV file ({exc})") from exc
    missing = [c for c in COLUMNS if c not in raw.columns]
    extra = [c for c in raw.columns if c not in COLUMNS]
    if missing or extra:
        raise CorrectionsError(f"{path}: columns must be {', '.join(COLUMNS)}; missing {missing}, unknown {extra}")
    raw = raw.apply(lambda column: column.str.strip())
    line = np.arange(len(raw)) + 2  # the header is line 1

    def fail(mask, column: str, why: str) -> None:
        if np.any(mask):
            i = int(np.flatnonzero(mask)[0])
            raise CorrectionsError(f"{path}, line {line[i]}, column {column} = {raw[column].iloc[i]!r}: {why}")

    for column in COLUMNS:
        fail(raw[column] == "", column, "must not be empty (every correction says what, why and on whose authority)")
    symbol = raw["symbol"].str.upper()
    ex_date = pd.to_datetime(raw["ex_date"], format="%Y-%m-%d", errors="coerce")
    fail(ex_date.isna().to_numpy(), "ex_date", "must be a date written YYYY-MM-DD")
    kind = raw["kind"].str.lower()
    fail(~kind.isin(list(KINDS)).to_numpy(), "kind", f"must be one of {', '.join(KINDS)}")
    value = pd.to_numeric(raw["value"], errors="coerce").to_numpy(dtype=np.float64)
    fail(~np.isfinite(value), "value", "must be a finite number")
    is_split = (kind == "split").to_numpy()
    fail(is_split & (value <= 0), "value", "a split ratio is new shares per old share and must be > 0")
    fail(~is_split & (value < 0), "value", "a dividend or distribution must be >= 0")
    table = pd.DataFrame({"symbol": symbol, "ex_date": ex_date.astype("datetime64[ns]"), "kind": kind,
                          "value": value, "reason": raw["reason"], "source": raw["source"]})
    target = table["kind"].map(KINDS)
    fail(pd.DataFrame({"s": symbol, "d": ex_date, "t": target}).duplicated().to_numpy(), "ex_date",
         "a second correction of the same symbol, ex-date and column (dividend and distribution share one)")
    return table.astype({c: "string" for c in ("symbol", "kind", "reason", "source")})


def apply_corrections(bars: pd.DataFrame, corrections: Corrections) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``bars`` with the corrected dividend/split on matching (symbol, ex-date) rows, and the
    corrections in the bars' date range with the provider's value and whether a bar took them.

    Corrected rows get ``correction = <version>`` (NA elsewhere). A correction whose ex-date
    has no bar (the bar was quarantined or never delivered) is listed with ``applied=False``
    rather than silently dropped.
    """
    out = bars.assign(correction=pd.array([None] * len(bars), dtype="string"))
    table = corrections.table
    if len(bars) and len(table):
        dates = pd.to_datetime(bars["date"])
        table = table[(table["ex_date"] >= dates.min()) & (table["ex_date"] <= dates.max())]
    else:
        table = table.iloc[0:0]
    if table.empty:
        return out, pd.DataFrame({c: pd.Series(dtype="object") for c in APPLIED_COLUMNS})
    keys = pd.MultiIndex.from_arrays([out["symbol"].astype(str).str.upper().to_numpy(),
                                      pd.to_datetime(out["date"]).to_numpy(dtype="datetime64[ns]")])
    position = keys.get_indexer(pd.MultiIndex.from_arrays([table["symbol"].astype(str).to_numpy(),
                                                           table["ex_date"].to_numpy()]))
    applied = position >= 0
    provider = np.full(len(table), np.nan)
    for kind, column in KINDS.items():
        mine = applied & (table["kind"] == kind).to_numpy()
        rows = position[mine]
        provider[mine] = out[column].to_numpy(dtype=np.float64)[rows]
        values = out[column].to_numpy(dtype=np.float64).copy()
        values[rows] = table["value"].to_numpy()[mine]
        out[column] = values
    out.loc[out.index[position[applied]], "correction"] = corrections.version
    report = table.assign(provider_value=provider, applied=applied)
    return out, report[list(APPLIED_COLUMNS)].reset_index(drop=True)
