select
    symbol,
    cast(date as date) as date,
    dividend,
    split_ratio,
    prev_close,
    dividend_factor,
    split_factor,
    dividend_factor * split_factor as price_factor,
    flag
from {{ source('sessions', 'adjustment_factors') }}
