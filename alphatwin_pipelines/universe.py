"""The symbol universe: which symbols to ingest, and their sectors.

``ALPHATWIN_UNIVERSE`` is either a comma-separated list of symbols or the path of a CSV with
``Symbol`` and ``Sector`` columns (an optional ``Name`` column is kept). Unset, the universe
is whatever the source offers (the synthetic market's 1000 symbols by default).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

UNIVERSE_COLUMNS = ("symbol", "sector", "name")
UNKNOWN_SECTOR = "Unknown"
_SYMBOL_PATTERN = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.\-][A-Z0-9]{1,3})?$")


class UniverseError(ValueError):
    pass


def is_valid_symbol(symbol: str) -> bool:
    """Exchange-style tickers: 1-6 upper-case letters/digits, optional class suffix (BRK.B)."""
    return bool(_SYMBOL_PATTERN.match(symbol))


def parse_universe(spec: str) -> pd.DataFrame:
    """Parse a universe spec (symbol list or CSV path) into ``symbol, sector, name``."""
    spec = (spec or "").strip()
    if not spec:
        raise UniverseError("empty universe: give symbols like 'AAPL,MSFT' or a CSV path")
    looks_like_path = spec.lower().endswith(".csv") or ("," not in spec and ("/" in spec or Path(spec).exists()))
    if looks_like_path:
        return _read_universe_csv(Path(spec))
    symbols = [s.strip().upper() for s in spec.split(",") if s.strip()]
    return _finish(pd.DataFrame({"symbol": symbols, "sector": UNKNOWN_SECTOR, "name": symbols}), spec)


def _read_universe_csv(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise UniverseError(f"universe file {path} does not exist (ALPHATWIN_UNIVERSE)")
    raw = pd.read_csv(path, dtype=str)
    columns = {c.strip().lower(): c for c in raw.columns}
    missing = [c for c in ("symbol", "sector") if c not in columns]
    if missing:
        raise UniverseError(
            f"universe file {path} lacks column(s) {missing}: it needs 'Symbol' and 'Sector' "
            f"(found {list(raw.columns)})"
        )
    frame = pd.DataFrame(
        {
            "symbol": raw[columns["symbol"]].str.strip().str.upper(),
            "sector": raw[columns["sector"]].fillna(UNKNOWN_SECTOR).str.strip(),
            "name": raw[columns["name"]] if "name" in columns else raw[columns["symbol"]],
        }
    )
    return _finish(frame, str(path))


def _finish(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    bad = [s for s in frame["symbol"] if not is_valid_symbol(s)]
    if bad:
        raise UniverseError(f"universe {origin!r} has invalid symbol(s) {bad[:10]}: use tickers like AAPL or BRK.B")
    dupes = frame["symbol"][frame["symbol"].duplicated()].tolist()
    if dupes:
        raise UniverseError(f"universe {origin!r} lists symbol(s) {dupes[:10]} more than once")
    frame = frame.astype({"symbol": "string", "sector": "string", "name": "string"})
    return frame.sort_values("symbol", kind="stable").reset_index(drop=True)[list(UNIVERSE_COLUMNS)]


def resolve_universe(spec: str | None, source) -> pd.DataFrame:
    """The configured universe, else the source's own (the synthetic market has one)."""
    if spec:
        return parse_universe(spec)
    own = getattr(source, "universe", None)
    if callable(own):
        return _finish(own(), f"{source.describe()} universe")
    raise UniverseError(
        f"the {source.describe()} source has no built-in symbol list: set ALPHATWIN_UNIVERSE to "
        "symbols like 'AAPL,MSFT' or to a CSV with Symbol and Sector columns"
    )
