select symbol, sector, name
from {{ source('tables', 'universe') }}
