-- A rejected row may hold anything in any column, so the bar columns stay text. `partition`
-- (the session file the row belongs to) becomes `session`; `rule_id` joins the ERROR rules the
-- row broke with ',' in catalogue order, `flags` the WARNING rules. `action` is `rejected` (the
-- bar is not in validated_ohlcv) or `event_quarantined` (the bar stayed validated and only its
-- split or dividend was set aside, so it adjusts nothing).
select
    try_cast("partition" as date) as session,
    raw_row,
    symbol,
    date as raw_date,
    open, high, low, close, volume, dividend, split_ratio, source,
    rule_id,
    rule_description,
    severity,
    offending_value,
    coalesce(flags, '') as flags,
    action
from {{ source('sessions', 'quarantined_ohlcv') }}
