-- `return` is an SQL keyword: the column is exposed as `daily_return`.
select
    cast(date as date) as date,
    strategy_id,
    "return" as daily_return
from {{ source('tables', 'strategy_returns') }}
