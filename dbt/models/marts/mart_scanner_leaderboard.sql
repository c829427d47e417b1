-- Which symbols the scanner keeps pointing at: one row per symbol over every stored session,
-- ranked by how often it made the day's top ten, then by hits, then by mean score.
with hits as (
    select * from {{ ref('stg_scanner_results') }}
),

signal_counts as (
    select
        symbol,
        signal,
        row_number() over (partition by symbol order by count(*) desc, signal) as popularity
    from hits
    group by symbol, signal
),

per_symbol as (
    select
        symbol,
        arg_max(sector, date) as sector,
        count(*) as hits,
        count(distinct date) as sessions_hit,
        count(*) filter (where direction > 0) as long_hits,
        count(*) filter (where direction < 0) as short_hits,
        count(distinct family) as families,
        avg(score) as mean_score,
        max(score) as max_score,
        min(rank_overall) as best_rank_overall,
        count(distinct date) filter (where rank_overall <= 10) as top10_sessions,
        min(date) as first_hit,
        max(date) as last_hit
    from hits
    group by symbol
)

select
    row_number() over (
        order by per_symbol.top10_sessions desc, per_symbol.hits desc, per_symbol.mean_score desc, per_symbol.symbol
    ) as leaderboard_rank,
    per_symbol.symbol,
    per_symbol.sector,
    per_symbol.hits,
    per_symbol.sessions_hit,
    per_symbol.long_hits,
    per_symbol.short_hits,
    per_symbol.families,
    per_symbol.mean_score,
    per_symbol.max_score,
    per_symbol.best_rank_overall,
    per_symbol.top10_sessions,
    per_symbol.first_hit,
    per_symbol.last_hit,
    signal_counts.signal as most_frequent_signal
from per_symbol
join signal_counts on signal_counts.symbol = per_symbol.symbol and signal_counts.popularity = 1
