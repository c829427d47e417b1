-- Per session and data-quality rule: how many raw rows the rule rejected (ERROR, the row went
-- to quarantined_ohlcv), whose corporate action it set aside (ERROR, `event_quarantined`: the bar
-- stayed validated, its event adjusts nothing) or flagged (WARNING, recorded in `flags`; the row
-- may still have been rejected by another rule). A quarantined row lists every ERROR rule it broke,
-- so one row can count under several rules. `raw_row` is the row's position in its session's raw
-- file, unique within the session across validated and quarantined rows.
with rows_in as (
    select date as session, count(*) as rows_in
    from {{ ref('stg_raw_ohlcv') }}
    group by date
),

rejected as (
    select session, raw_row, symbol, unnest(string_split(rule_id, ',')) as rule_id
    from {{ ref('stg_quarantined_ohlcv') }}
    where rule_id <> '' and action = 'rejected'
),

-- A validated bar whose event was set aside carries that ERROR rule in `flags` too: it is counted
-- once, here, not again as a WARNING below.
events as (
    select session, raw_row, symbol, unnest(string_split(rule_id, ',')) as rule_id
    from {{ ref('stg_quarantined_ohlcv') }}
    where rule_id <> '' and action = 'event_quarantined'
),

flagged as (
    select date as session, raw_row, symbol, unnest(string_split(flags, ',')) as rule_id
    from {{ ref('stg_validated_ohlcv') }}
    where flags <> ''
    union all
    select session, raw_row, symbol, unnest(string_split(flags, ',')) as rule_id
    from {{ ref('stg_quarantined_ohlcv') }}
    where flags <> '' and action = 'rejected'
),

warnings as (
    select flagged.* from flagged
    anti join events using (session, raw_row, rule_id)
),

hits as (
    select session, rule_id, 'ERROR' as severity, 'quarantined' as action, raw_row, symbol from rejected
    union all
    select session, rule_id, 'ERROR' as severity, 'event_quarantined' as action, raw_row, symbol from events
    union all
    select session, rule_id, 'WARNING' as severity, 'flagged' as action, raw_row, symbol from warnings
)

select
    hits.session,
    hits.rule_id,
    hits.severity,
    hits.action,
    count(distinct hits.raw_row) as affected_rows,
    count(distinct hits.symbol) as affected_symbols,
    rows_in.rows_in,
    count(distinct hits.raw_row) / rows_in.rows_in as affected_share
from hits
left join rows_in on rows_in.session = hits.session
group by hits.session, hits.rule_id, hits.severity, hits.action, rows_in.rows_in
