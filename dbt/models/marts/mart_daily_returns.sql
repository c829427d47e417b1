-- Each symbol's total return from one cleaned session to its next, on the split- and
-- dividend-adjusted basis. A corporate action dated t multiplies every earlier price by its
-- price_factor, so adj_close[t] / adj_close[t-1] = close[t] / (close[t-1] * price_factor[t]).
-- Only the event dated t enters: no look-ahead, and a stored return never changes when a
-- later event arrives (unlike a ratio of closes re-adjusted as of today).
with bars as (
    select
        bars.symbol,
        bars.date,
        bars.close,
        bars.filled,
        coalesce(events.price_factor, 1.0) as price_factor,
        lag(bars.date) over by_symbol as previous_date,
        lag(bars.close) over by_symbol as previous_close
    from {{ ref('stg_cleaned_ohlcv') }} as bars
    left join {{ ref('stg_adjustment_factors') }} as events
        on events.symbol = bars.symbol and events.date = bars.date
    window by_symbol as (partition by bars.symbol order by bars.date)
)

select
    symbol,
    date,
    previous_date,
    close,
    previous_close,
    price_factor,
    filled,
    close / (previous_close * price_factor) - 1 as daily_return,
    ln(close / (previous_close * price_factor)) as log_return
from bars
