select
    symbol,
    cast(date as date) as date,
    open, high, low, close, volume, dividend, split_ratio, source,
    coalesce(flags, '') as flags,
    raw_row
from {{ source('sessions', 'validated_ohlcv') }}
