"""A one-page picture of an allocation: weights beside risk contributions, and sector totals."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from alphatwin_pipelines.portfolio.allocate import Allocation
from alphatwin_pipelines.portfolio.cash import CashAllocation
from alphatwin_pipelines.atomic import atomic_write_bytes
from alphatwin_pipelines.objectstore import is_remote

MAX_BARS = 40


def render_allocation(allocation: Allocation | CashAllocation) -> bytes:
    """PNG bytes (matplotlib Agg; no timestamp in the file, so the same allocation gives the same bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(allocation, CashAllocation):  # replaces last week's picture: nothing is held now
        figure, axis = plt.subplots(figsize=(11, 2.5))
        axis.axis("off")
        axis.set_title(f"cash allocation {allocation.version} as of {allocation.as_of:%Y-%m-%d}: no strategy passed")
        axis.text(0.0, 0.5, textwrap.fill(allocation.reason, 120), fontsize=9, va="center")
        return _png(figure, plt)
    order = allocation.weights.sort_values(ascending=False).head(MAX_BARS).index
    weights = allocation.weights[order]
    share = allocation.risk_contribution[order] / max(allocation.expected_volatility, 1e-12)
    brake = allocation.brake
    rows = 2 if brake is None else 3
    figure, axes = plt.subplots(rows, 1, figsize=(11, 4 * rows), gridspec_kw={"height_ratios": [3, 2, 2][:rows]})
    top, bottom = axes[0], axes[1]
    positions = range(len(order))
    top.bar([p - 0.2 for p in positions], weights.to_numpy(), width=0.4, label="weight")
    top.bar([p + 0.2 for p in positions], share.to_numpy(), width=0.4, label="share of risk")
    top.set_xticks(list(positions), [name[:8] for name in order], rotation=90, fontsize=7)
    top.set_title(f"{allocation.policy.method} allocation {allocation.version} as of {allocation.as_of:%Y-%m-%d} — "
                  f"expected vol {allocation.expected_volatility:.1%}, return {allocation.expected_return:.1%}")
    top.legend()
    if len(allocation.weights) > MAX_BARS:
        top.set_xlabel(f"largest {MAX_BARS} of {len(allocation.weights)} strategies")
    sectors = allocation.symbol_sector_sums().sort_values(ascending=False)
    bottom.barh(list(sectors.index), sectors.to_numpy())
    cap = allocation.caps.sector_cap
    if cap is not None:
        bottom.axvline(cap, color="red", linestyle="--", label=f"sector cap {cap}")
        bottom.legend()
    bottom.set_xlabel("gross symbol weight per sector")
    if brake is not None:
        equity = axes[2]
        equity.plot(brake.returns.index, (1 + brake.returns).cumprod().to_numpy(), label="without brake")
        equity.plot(brake.braked.index, (1 + brake.braked).cumprod().to_numpy(), label="with drawdown brake")
        equity.set_title(f"the allocation over the strategies' out-of-sample returns; next session holds "
                         f"{brake.current_scale:.0%} of the book")
        equity.legend()
    return _png(figure, plt)


def _png(figure, plt) -> bytes:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def write_allocation_plot(allocation: Allocation | CashAllocation, path):
    """Write the plot to ``path`` (a local ``Path`` or an object-store ``UPath``) and return it."""
    png = render_allocation(allocation)
    path = path if is_remote(path) else Path(path)
    atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(png))
    return path
