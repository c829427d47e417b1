select
    symbol,
    cast(date as date) as date,
    open, high, low, close, volume, dividend, split_ratio, source
from {{ source('sessions', 'raw_ohlcv') }}
