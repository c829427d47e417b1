"""Data-quality rule engine for raw daily bars (no Dagster imports: assets wrap it).

``validate`` splits a partition into validated rows (with WARNING flags) and quarantined
rows (with the ERROR rules they broke); ``rule_catalogue`` lists every rule.
"""

from alphatwin_pipelines.quality.pandera_schema import raw_bar_schema
from alphatwin_pipelines.quality.rules import Rule, RuleContext, rule_catalogue, rule_table_markdown
from alphatwin_pipelines.quality.validate import ValidationResult, missing_sessions, validate

__all__ = [
    "Rule",
    "RuleContext",
    "ValidationResult",
    "missing_sessions",
    "raw_bar_schema",
    "rule_catalogue",
    "rule_table_markdown",
    "validate",
]
