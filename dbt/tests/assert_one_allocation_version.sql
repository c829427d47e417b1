-- portfolio_allocations.parquet holds one allocation version; older ones live in
-- portfolio_allocations/<version>.parquet. Two versions here would double every exposure.
select count(distinct allocation_version) as versions
from {{ ref('stg_portfolio_allocations') }}
having count(distinct allocation_version) > 1
