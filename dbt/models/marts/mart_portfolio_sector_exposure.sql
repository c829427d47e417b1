-- The allocation's symbol rows summed per sector. The universe's sector wins over the one the
-- allocation carried (the universe is the reference); a symbol in neither is 'Unclassified'.
with symbols as (
    select
        allocations.allocation_version,
        allocations.as_of,
        allocations.name as symbol,
        allocations.weight,
        allocations.risk_contribution,
        coalesce(universe.sector, allocations.sector, 'Unclassified') as sector
    from {{ ref('stg_portfolio_allocations') }} as allocations
    left join {{ ref('stg_universe') }} as universe on universe.symbol = allocations.name
    where allocations.kind = 'symbol'
),

totals as (
    select allocation_version, sum(abs(weight)) as version_gross
    from symbols
    group by allocation_version
)

select
    symbols.allocation_version,
    symbols.as_of,
    symbols.sector,
    count(*) as symbols,
    sum(symbols.weight) as net_weight,
    sum(greatest(symbols.weight, 0)) as long_weight,
    sum(least(symbols.weight, 0)) as short_weight,
    sum(abs(symbols.weight)) as gross_weight,
    sum(abs(symbols.weight)) / nullif(totals.version_gross, 0) as share_of_gross,
    sum(symbols.risk_contribution) as risk_contribution
from symbols
join totals on totals.allocation_version = symbols.allocation_version
group by symbols.allocation_version, symbols.as_of, symbols.sector, totals.version_gross
