select
    symbol,
    cast(date as date) as date,
    * exclude (symbol, date)
from {{ source('sessions', 'features') }}
