"""Strategy cards: plain-language rules, an entry/exit chart, gate sentences and code exports.

No Dagster here. Exports render Jinja2 templates in ``templates/``; matplotlib is imported
only when a chart is drawn.
"""

from alphatwin_pipelines.cards.export import TARGETS, Export, ExportError, export
from alphatwin_pipelines.cards.rules import SECTIONS, rule_lines, rule_sections

__all__ = ["SECTIONS", "TARGETS", "Export", "ExportError", "export", "rule_lines", "rule_sections"]
