select
    strategy_id, family, cast(level as integer) as level, complexity,
    spec_json, symbols_json,
    cast(start as timestamp) as start, cast("end" as timestamp) as "end",
    n_trials, n_complete, n_pruned, seed, study_name,
    is_sharpe, is_sortino, is_cagr, is_max_drawdown, is_trades,
    scanner_partition, record_json
from {{ source('tables', 'optimised_strategies') }}
