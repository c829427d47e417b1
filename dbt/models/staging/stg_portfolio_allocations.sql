select
    allocation_version,
    cast(as_of as timestamp) as as_of,
    method,
    kind,
    name,
    weight,
    sector,
    {{ nan_to_null("risk_contribution") }} as risk_contribution,  -- NaN on symbol rows
    spec_hashes,
    scanner_partition
from {{ source('tables', 'portfolio_allocations') }}
