select
    symbol,
    cast(date as date) as date,
    open, high, low, close, volume, dividend, split_ratio, source,
    coalesce(flags, '') as flags,
    filled
from {{ source('sessions', 'cleaned_ohlcv') }}
