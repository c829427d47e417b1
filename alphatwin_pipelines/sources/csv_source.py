"""Bars from a folder of files: Yahoo exports, AlphaVantage daily-adjusted CSVs, canonical CSV/Parquet.

The files come from people and providers, so none of them is trusted. Whatever does not convert
becomes a ``Rejection`` naming the file, line and raw text, and the rest of the file is still used.
Clean files take a fast path (the C reader parses the numbers); a file the fast path refuses is
read again as text to find exactly which cells are bad. Files are only ever read, never moved.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alphatwin_pipelines.schema import BAR_COLUMNS, arrow_to_frame, to_canonical
from alphatwin_pipelines.sources.base import (
    RULE_DUPLICATE_DATE, RULE_EMPTY_FILE, RULE_MALFORMED_ROW, RULE_MISSING_COLUMNS, RULE_NO_DATA,
    RULE_PROVIDER_ERROR, RULE_UNKNOWN_FORMAT, RULE_UNREADABLE_FILE, RULE_UNPARSABLE_DATE, RULE_UNPARSABLE_NUMBER, BarSource, FetchResult,
    Rejection, SourceConfigError, session_days, unique_symbols,
)
# The format table and parsers live in csv_formats; the public names are re-exported here so
# `from alphatwin_pipelines.sources.csv_source import YAHOO` (etc.) keeps working.
from alphatwin_pipelines.sources.csv_formats import (  # noqa: F401 (re-exports)
    ACCEPTED, ALPHAVANTAGE, CANONICAL, NUMERIC_COLUMNS, SOURCE_PATH_ENV, SUFFIXES, YAHOO,
    _dates, _detect, _numbers, _positions, _provider_message, _text,
)

_HEAD_BYTES = 1 << 16  # enough of a file to recognise an error body or read the header line


class CsvFolderSource(BarSource):
    """Every ``.csv``/``.parquet`` file in one folder (not recursive); see the module docstring."""

    name = "csv"

    def __init__(self, path: str | os.PathLike | None):
        if path is None or not str(path).strip():  # Path("") would silently mean the working directory
            raise SourceConfigError(f"the csv source needs a folder: set {SOURCE_PATH_ENV} to a folder of "
                                    ".csv/.parquet bar files")
        self.path = Path(path)
        self._check_folder()

    def _check_folder(self) -> None:
        if not self.path.is_dir():
            state = "is not a folder" if self.path.exists() else "does not exist"
            raise SourceConfigError(f"CSV source folder {self.path} {state}: set {SOURCE_PATH_ENV} to a folder "
                                    "of .csv/.parquet bar files")

    def describe(self) -> str:
        return f"csv folder {self.path}"

    def fetch(self, symbols: Sequence[str], sessions: pd.DatetimeIndex) -> FetchResult:
        self._check_folder()
        return _Fetch(self.path, symbols, sessions).run()


class _Fetch:
    """State of one ``fetch`` call, so nothing is cached from one call to the next."""

    def __init__(self, folder: Path, symbols: Sequence[str], sessions):
        self.folder = folder
        self.order = unique_symbols(symbols)
        self.wanted = set(self.order)
        self.sessions = session_days(sessions).to_numpy()  # sorted and unique, for searchsorted
        self.result = FetchResult()
        self.parts: list[pd.DataFrame] = []  # candidate rows; ``pending`` >= 0 points into self.pending
        self.pending: list[Rejection] = []  # number problems, reported unless the row is a duplicate
        self.seen: dict[str, set[str]] = defaultdict(set)  # symbol -> files with any row of it
        self.unreadable: list[str] = []  # unusable files that might have held a requested symbol
        self.multi: list[str] = []  # files with a `symbol` column
        self.files: dict[int, tuple[Path, bool]] = {}  # file id -> path, and whether it has lines (CSV)

    def reject(self, rule: str, reason: str, **where) -> None:
        self.result.rejections.append(Rejection(source="csv", rule=rule, reason=reason, **where))

    def row(self, rule, file_id, line, symbol, column, value, reason) -> Rejection:
        """A rejection of one row; Parquet has rows, not lines, so its row number is in the reason only."""
        path, is_csv = self.files[file_id]
        return Rejection(source="csv", rule=rule, reason=f"{path.name} {'line' if is_csv else 'row'} {line}: "
                         f"{reason}", symbol=symbol, file=str(path), line=int(line) if is_csv else None,
                         column=column, value=value)

    def run(self) -> FetchResult:
        paths = sorted(p for p in self.folder.iterdir()
                       if p.suffix.lower() in SUFFIXES and not p.name.startswith(".") and p.is_file())
        for file_id, path in enumerate(paths):
            stem = path.name[: -len(path.suffix)].strip().upper()
            try:
                self.read_file(file_id, path, stem)
            except (OSError, pa.ArrowException) as exc:  # permissions, corrupt Parquet
                self.file_problem(path, stem, None, RULE_UNREADABLE_FILE,
                                  f"could not be read ({exc}); replace it with a readable .csv/.parquet file")
        self.finish()
        return self.result

    def file_problem(self, path, stem, symbols, rule, reason, column=None, value=None) -> None:
        """Reject a whole file, once for each requested symbol it holds (by its `symbol` column or name)."""
        targets = sorted(self.wanted & set(symbols)) if symbols is not None else [stem] * (stem in self.wanted)
        if symbols is None and not targets:  # it may be a many-symbol file: name it if a symbol goes missing
            self.unreadable.append(f"{path.name} ({rule})")
        for symbol in targets:
            self.reject(rule, f"{path.name} {reason}", symbol=symbol, file=str(path), column=column, value=value)

    def read_file(self, file_id: int, path: Path, stem: str) -> None:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
            if not head.strip():
                what = "is empty (0 bytes)" if not head else "holds only blank lines"
                return self.file_problem(path, stem, None, RULE_EMPTY_FILE, f"{what}; export the data again")
            message = _provider_message(head)
            if message is not None:
                return self.file_problem(
                    path, stem, None, RULE_PROVIDER_ERROR, f'holds a provider error response, not bars: '
                    f'"{message[:300]}"; fix the request (API key, rate limit, symbol) and download it again',
                    value=message[:300])
            if path.suffix.lower() == ".parquet" and head.startswith(b"PAR1"):
                names = [str(n) for n in pq.read_schema(path).names]
                if "symbol" in _positions(names) or stem in self.wanted:
                    self.take(file_id, path, stem, arrow_to_frame(pq.read_table(path)), names, None)
                return
            names = next(csv.reader(head.decode("utf-8-sig", errors="replace").splitlines()[:1]), [])
            if not "".join(names).strip():
                return self.file_problem(path, stem, None, RULE_UNKNOWN_FORMAT, f"has no header on line 1; {ACCEPTED}")
            if "symbol" not in _positions(names) and stem not in self.wanted:
                return  # another symbol's file
            data = head + fh.read()
        frame, lines = self.read_csv(path, data, stem, names)
        self.take(file_id, path, stem, frame, names, lines)

    def read_csv(self, path, data, stem, names) -> tuple[pd.DataFrame, np.ndarray]:
        """Parse numbers in the C reader when every cell is clean, else read text to find the bad cells."""
        pos = _positions(names)
        fmt, attempts = _detect(set(pos)), [str]
        if fmt and all(h in pos for h in fmt.columns.values()) and len(set(names)) == len(names):
            typed = {names[pos[h]]: "int64" if k == "volume" else "float64" for k, h in fmt.columns.items()}
            attempts.insert(0, {**typed, **{names[pos[h]]: str for h in ("symbol", fmt.date) if h in pos}})
        for dtype in attempts:
            try:
                with warnings.catch_warnings():  # a first row longer than the header only warns
                    warnings.simplefilter("error", pd.errors.ParserWarning)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    frame = pd.read_csv(io.BytesIO(data), dtype=dtype, na_filter=False, skip_blank_lines=False,
                                        index_col=False, encoding="utf-8-sig", encoding_errors="replace")
                return frame, np.arange(2, len(frame) + 2)
            except (ValueError, pd.errors.ParserWarning):
                continue  # a cell the typed read refuses, or a row too long: try the next way
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
        next(reader, None)
        rows, lines, width = [], [], len(names)
        for row in reader:
            if len(row) <= width:
                rows.append(row + [""] * (width - len(row)))
                lines.append(reader.line_num)
                continue
            symbol = row[pos["symbol"]].strip().upper() if "symbol" in pos else stem
            if symbol in self.wanted:
                self.reject(RULE_MALFORMED_ROW, f"{path.name} line {reader.line_num} has {len(row)} fields but "
                            f"the header has {width}; remove the extra fields or quote values holding commas",
                            symbol=symbol, file=str(path), line=reader.line_num, value=",".join(row)[:300])
        return pd.DataFrame(rows, columns=range(width), dtype=str), np.asarray(lines, dtype=np.int64)

    def take(self, file_id, path, stem, frame, names, lines) -> None:
        """Check one file's columns, then turn its rows into candidate bars and row rejections."""
        self.files[file_id] = (path, lines is not None)
        lines = lines if lines is not None else np.arange(1, len(frame) + 1)
        pos = _positions(names)
        fmt = _detect(set(pos))
        need = {"date": fmt.date, **fmt.columns} if fmt else {}
        cols = {k: _text(frame.iloc[:, pos[h]]) for k, h in {**need, "symbol": "symbol"}.items() if h in pos}
        if self.files[file_id][1] and cols and all(isinstance(c.dtype, pd.StringDtype) for c in cols.values()):
            filled = np.logical_or.reduce([(c != "").to_numpy() for c in cols.values()])
            cols, lines = {k: c[filled] for k, c in cols.items()}, lines[filled]  # drop blank lines
        symbol = cols.pop("symbol").fillna("").str.upper() if "symbol" in cols else None
        if symbol is not None:
            self.multi.append(path.name)
        missing = [h for h in need.values() if h not in pos]
        if fmt is None or missing or not len(lines):
            symbols = None if symbol is None else symbol.unique()
            if fmt is None:
                return self.file_problem(path, stem, symbols, RULE_UNKNOWN_FORMAT,
                                         f"has an unrecognised header {','.join(names)[:200]!r}; {ACCEPTED}")
            if missing:
                return self.file_problem(path, stem, symbols, RULE_MISSING_COLUMNS, f"looks like a {fmt.label} "
                                         f"file but lacks column(s) {missing}: {fmt.hint}; {ACCEPTED}",
                                         column=",".join(missing))
            return self.file_problem(path, stem, symbols, RULE_EMPTY_FILE, "has a header but no rows; export it again")
        label = {k: names[pos[h]].strip() for k, h in need.items()}
        if symbol is None:
            code = np.full(len(lines), self.order.index(stem))
            self.seen[stem].add(path.name)
        else:
            blank = lines[(symbol == "").to_numpy()]
            if len(blank):
                self.result.warnings.append(f"{path.name}: skipped {len(blank)} rows with an empty symbol "
                                            f"(lines/rows {blank[:10].tolist()})")
            code = pd.Index(self.order).get_indexer(symbol).astype(np.int64)
            keep = code >= 0
            code, lines, cols = code[keep], lines[keep], {k: c[keep] for k, c in cols.items()}
            for c in np.unique(code):
                self.seen[self.order[c]].add(path.name)
        dates = _dates(cols["date"])
        bad = np.isnat(dates)
        for i in np.flatnonzero(bad):
            text = str(cols["date"].iloc[i])
            self.result.rejections.append(self.row(
                RULE_UNPARSABLE_DATE, file_id, lines[i], self.order[code[i]], label["date"], text,
                f"{label['date']} {text!r} is not a date (expected YYYY-MM-DD); fix or delete that row"))
        at = np.minimum(np.searchsorted(self.sessions, dates), max(len(self.sessions) - 1, 0))
        idx = np.flatnonzero(~bad & (self.sessions[at] == dates) if len(self.sessions) else [])
        out = {"code": code[idx], "date": dates[idx], "file": file_id, "line": lines[idx]}
        problems: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
        for key in NUMERIC_COLUMNS:
            if key not in cols:
                out[key] = float(fmt.constants[key])
                continue
            (values, unparsable), what = _numbers(cols[key]), "is not a number"
            if key == "volume" and values.dtype != np.int64:  # int64 cannot hold NaN or fractions
                whole = np.isfinite(values) & (np.abs(values) < 2.0**63)
                whole[whole] = values[whole] == np.floor(values[whole])
                unparsable, values = ~whole, np.where(whole, values, 0).astype(np.int64)
                what = "is not a whole number of shares"
            out[key] = values[idx]
            for i in np.flatnonzero(unparsable[idx]):
                cell = str(cols[key].iloc[idx[i]])
                problems[i].append((label[key], cell, "is empty" if cell == "" else what))
        out["pending"] = np.full(len(idx), -1, dtype=np.int64)
        for i, found in sorted(problems.items()):
            out["pending"][i] = len(self.pending)
            self.pending.append(self.row(
                RULE_UNPARSABLE_NUMBER, file_id, out["line"][i], self.order[out["code"][i]], found[0][0],
                found[0][1], "; ".join(f"{c} {v!r} {w}" for c, v, w in found) + "; fix or delete that row"))
        if len(idx):
            self.parts.append(pd.DataFrame(out))

    def finish(self) -> None:
        """Cross-file checks (duplicate dates), then the bars and the no-data report."""
        if self.parts:
            bars = pd.concat(self.parts, ignore_index=True)
            dup = bars.duplicated(["code", "date"], keep=False).to_numpy()
            for (code, date), group in bars[dup].groupby(["code", "date"], sort=True):
                at = list(zip(group["file"], group["line"]))
                places = ", ".join(f"{self.files[f][0].name} {'line' if self.files[f][1] else 'row'} {n}"
                                   for f, n in at)
                self.result.rejections.extend(self.row(
                    RULE_DUPLICATE_DATE, f, n, self.order[code], "date", f"{date:%Y-%m-%d}",
                    f"{self.order[code]} has {len(at)} rows dated {date:%Y-%m-%d} ({places}); all are rejected "
                    "because there is no telling which is right: keep one, delete the others") for f, n in at)
            pending = bars["pending"].to_numpy()
            self.result.rejections.extend(self.pending[i] for i in pending[~dup & (pending >= 0)])
            good = bars[~dup & (pending < 0)]
            symbols = pd.array(self.order, dtype="string").take(good["code"].to_numpy())
            self.result.bars = to_canonical(good.assign(symbol=symbols, source="csv")[list(BAR_COLUMNS)])
        self.result.rejections.sort(key=lambda r: (r.file or "", r.line or 0, r.symbol or ""))
        got, failed = set(self.result.bars["symbol"].unique()), self.result.failed_symbols()
        for symbol in self.order:
            if symbol not in got and symbol not in failed:
                self.reject(RULE_NO_DATA, self.no_data_reason(symbol), symbol=symbol, file=str(self.folder))

    def no_data_reason(self, symbol: str) -> str:
        parts = [f"no rows for {symbol} in {self.folder}"]
        if self.seen.get(symbol):
            days = pd.DatetimeIndex(self.sessions).strftime("%Y-%m-%d")
            span = f"{days.min()}..{days.max()}" if len(days) else "none"
            parts.append(f"{', '.join(sorted(self.seen[symbol]))} hold(s) {symbol} but on none of the "
                         f"{len(self.sessions)} requested sessions ({span})")
        else:
            multi = f" and in the `symbol` column of {', '.join(self.multi)}" if self.multi else ""
            parts.append(f"looked for a file named {symbol}.csv or {symbol}.parquet (any case){multi}")
        if self.unreadable:
            parts.append(f"these files could not be used and may hold it: {', '.join(self.unreadable[:20])}")
        return "; ".join(parts) + f"; add its data to the folder or drop {symbol} from the universe"
