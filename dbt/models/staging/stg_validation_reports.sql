select
    strategy_id, family, cast(level as integer) as level, complexity,
    spec_json, symbols_json, n_trials,
    is_sharpe,
    {{ nan_to_null("oos_sharpe") }} as oos_sharpe,
    {{ nan_to_null("oos_sortino") }} as oos_sortino,
    oos_cagr, oos_max_drawdown,
    {{ nan_to_null("dsr") }} as dsr,
    {{ nan_to_null("pbo") }} as pbo,
    cast(passed as boolean) as passed,
    coalesce(reasons, '') as reasons,
    report_path, scanner_partition, record_json
from {{ source('tables', 'validation_reports') }}
