select
    cast(date as date) as date,
    symbol,
    sector,
    family,
    signal,
    cast(direction as integer) as direction,
    score,
    rank_family,
    rank_overall,
    evidence
from {{ source('sessions', 'scanner_results') }}
