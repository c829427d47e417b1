"""The execution ledger: orders, fills, positions, cash, equity marks and an append-only audit log.

One SQL database (SQLite by default, Postgres through ``ALPHATWIN_LEDGER_URL``). Every state
change of the paper account happens in one transaction together with its audit row, so a
crash leaves either both or neither. The audit log is append-only in the database itself
(triggers), not merely by convention: an UPDATE or DELETE on it aborts.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import sqlalchemy as sa

from alphatwin_pipelines.data_dir import state_dir

LEDGER_FILE = "paper_ledger.db"
ACCOUNT = "paper"

metadata = sa.MetaData()

orders = sa.Table(
    "orders", metadata,
    sa.Column("order_id", sa.String(64), primary_key=True),
    sa.Column("allocation_version", sa.String(128), nullable=False, index=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("reference_price", sa.Float, nullable=False),
    sa.Column("target_weight", sa.Float, nullable=False),
    sa.Column("session", sa.String(10), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | filled | cancelled
    sa.Column("spec_hashes", sa.Text, nullable=False),
    sa.Column("scanner_partition", sa.String(32), nullable=False),
)

fills = sa.Table(
    "fills", metadata,
    sa.Column("fill_id", sa.String(64), primary_key=True),
    sa.Column("order_id", sa.String(64), sa.ForeignKey("orders.order_id"), nullable=False, unique=True),
    sa.Column("symbol", sa.String(32), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("qty", sa.Integer, nullable=False),
    sa.Column("price", sa.Float, nullable=False),
    sa.Column("reference_open", sa.Float),
    sa.Column("fees", sa.Float, nullable=False),
    sa.Column("session", sa.String(10), nullable=False),
)

positions = sa.Table(
    "positions", metadata,
    sa.Column("symbol", sa.String(32), primary_key=True),
    sa.Column("qty", sa.Integer, nullable=False),
)

cash = sa.Table(
    "cash", metadata,
    sa.Column("account", sa.String(16), primary_key=True),
    sa.Column("amount", sa.Float, nullable=False),
)

equity_marks = sa.Table(
    "equity_marks", metadata,
    sa.Column("session", sa.String(10), primary_key=True),
    sa.Column("equity", sa.Float, nullable=False),
)

audit_log = sa.Table(
    "audit_log", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recorded_at", sa.String(32), nullable=False),
    sa.Column("event", sa.String(24), nullable=False),
    sa.Column("order_id", sa.String(64)),
    sa.Column("allocation_version", sa.String(128)),
    sa.Column("symbol", sa.String(32)),
    sa.Column("detail", sa.Text, nullable=False),
)

AUDIT_EVENTS = (
    "opened", "submitted", "rejected", "duplicate_skipped", "dust_skipped", "cancelled",
    "filled", "settled", "divergence", "run", "borrow",
)

_SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused'); END",
]
_POSTGRES_GUARDS = [
    "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP; END $$",
    "CREATE OR REPLACE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log "
    "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    "CREATE OR REPLACE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()",
]


def default_ledger_url(data_dir) -> str:
    return f"sqlite:///{state_dir(data_dir) / LEDGER_FILE}"


def open_ledger(url: str, initial_cash: float = 100_000.0) -> sa.Engine:
    """Create the tables and guards if missing; a new ledger starts with ``initial_cash``."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    metadata.create_all(engine)
    guards = _SQLITE_GUARDS if engine.dialect.name == "sqlite" else _POSTGRES_GUARDS
    with engine.begin() as conn:
        for statement in guards:
            conn.execute(sa.text(statement))
        if conn.execute(sa.select(cash.c.amount).where(cash.c.account == ACCOUNT)).first() is None:
            conn.execute(cash.insert().values(account=ACCOUNT, amount=float(initial_cash)))
            audit(conn, "opened", detail={"initial_cash": float(initial_cash)})
    return engine


def audit(conn: sa.Connection, event: str, *, order_id=None, allocation_version=None, symbol=None,
          detail=None) -> None:
    """Append one decision to the audit log inside the caller's transaction."""
    if event not in AUDIT_EVENTS:
        raise ValueError(f"unknown audit event {event!r}; known: {AUDIT_EVENTS}")
    conn.execute(audit_log.insert().values(
        recorded_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds"),
        event=event, order_id=order_id, allocation_version=allocation_version, symbol=symbol,
        detail=detail if isinstance(detail, str) else json.dumps(detail or {}, sort_keys=True, default=str),
    ))


def read_audit(engine: sa.Engine, event: str | None = None) -> list[dict]:
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if event is not None:
        query = query.where(audit_log.c.event == event)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def record_mark(engine: sa.Engine, session: str, equity: float) -> float | None:
    """Store the equity at ``session``'s close (first mark wins) and return the previous session's mark."""
    with engine.begin() as conn:
        if conn.execute(sa.select(equity_marks.c.session).where(equity_marks.c.session == session)).first() is None:
            conn.execute(equity_marks.insert().values(session=session, equity=float(equity)))
        previous = conn.execute(
            sa.select(equity_marks.c.equity).where(equity_marks.c.session < session)
            .order_by(equity_marks.c.session.desc()).limit(1)
        ).first()
    return None if previous is None else float(previous[0])
