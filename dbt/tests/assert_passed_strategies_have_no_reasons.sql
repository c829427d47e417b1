-- Contract (docs/contracts.md): `reasons` is empty exactly when the strategy passed.
select strategy_id, passed, reasons
from {{ ref('stg_validation_reports') }}
where passed <> (reasons = '')
