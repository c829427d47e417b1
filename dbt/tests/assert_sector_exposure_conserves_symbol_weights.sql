{{ config(meta={'dagster': {'ref': {'name': 'mart_portfolio_sector_exposure'}}}) }}
-- Summing per sector must neither lose nor duplicate a symbol (a duplicated universe row
-- would fan the join out): per version, symbol counts and net weight match the allocation.
with allocation as (
    select allocation_version, count(*) as symbols, sum(weight) as net_weight
    from {{ ref('stg_portfolio_allocations') }}
    where kind = 'symbol'
    group by allocation_version
),

exposure as (
    select allocation_version, sum(symbols) as symbols, sum(net_weight) as net_weight
    from {{ ref('mart_portfolio_sector_exposure') }}
    group by allocation_version
)

select allocation.*, exposure.symbols as exposure_symbols, exposure.net_weight as exposure_net_weight
from allocation
full outer join exposure on exposure.allocation_version = allocation.allocation_version
where exposure.symbols is distinct from allocation.symbols
   or abs(exposure.net_weight - allocation.net_weight) > 1e-9
   or exposure.net_weight is null
   or allocation.net_weight is null
