-- One row per validated strategy: the out-of-sample verdict (Sharpe, deflated Sharpe, PBO,
-- passed), how far the Sharpe decayed from in-sample, what its walk-forward return stream
-- actually delivered, and its weight in the current allocation.
with reports as (
    select * from {{ ref('stg_validation_reports') }}
),

streams as (
    select
        strategy_id,
        count(*) as oos_days,
        min(date) as oos_start,
        max(date) as oos_end,
        product(1 + daily_return) - 1 as oos_total_return,
        avg(daily_return) / nullif(stddev_samp(daily_return), 0) * sqrt(252) as realised_sharpe
    from {{ ref('stg_strategy_returns') }}
    group by strategy_id
),

allocated as (
    select name as strategy_id, sum(weight) as portfolio_weight
    from {{ ref('stg_portfolio_allocations') }}
    where kind = 'strategy'
    group by name
)

select
    row_number() over (
        order by reports.passed desc, reports.dsr desc nulls last, reports.oos_sharpe desc nulls last, reports.strategy_id
    ) as scorecard_rank,
    reports.strategy_id,
    reports.family,
    reports.level,
    reports.complexity,
    reports.n_trials,
    reports.is_sharpe,
    reports.oos_sharpe,
    reports.is_sharpe - reports.oos_sharpe as sharpe_decay,
    reports.oos_sortino,
    reports.oos_cagr,
    reports.oos_max_drawdown,
    reports.dsr,
    reports.pbo,
    reports.passed,
    reports.reasons,
    coalesce(streams.oos_days, 0) as oos_days,
    streams.oos_start,
    streams.oos_end,
    streams.oos_total_return,
    streams.realised_sharpe,
    allocated.strategy_id is not null as in_portfolio,
    coalesce(allocated.portfolio_weight, 0.0) as portfolio_weight,
    reports.scanner_partition,
    reports.report_path
from reports
left join streams on streams.strategy_id = reports.strategy_id
left join allocated on allocated.strategy_id = reports.strategy_id
