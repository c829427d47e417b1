"""Regenerate the README tables that are generated from code: ``python -m alphatwin_pipelines.docs``.

Each table sits between ``<!-- BEGIN name ... -->`` and ``<!-- END name -->`` markers. A test
fails when the README is stale, so the documentation cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _bar_schema() -> str:
    from alphatwin_pipelines.schema import BAR_ARROW_SCHEMA, BAR_COLUMN_DOCS

    lines = ["| column | type | meaning |", "|---|---|---|"]
    for field in BAR_ARROW_SCHEMA:
        lines.append(f"| `{field.name}` | {field.type} | {BAR_COLUMN_DOCS[field.name]} |")
    return "\n".join(lines)


def _rules() -> str:
    from alphatwin_pipelines.quality import rule_table_markdown

    return rule_table_markdown()


def _features() -> str:
    from alphatwin_pipelines.features import feature_table_markdown

    return feature_table_markdown()


GENERATORS: dict[str, Callable[[], str]] = {"bar-schema": _bar_schema, "rules": _rules, "features": _features}


def render(text: str) -> str:
    for name, generate in GENERATORS.items():
        pattern = re.compile(rf"(<!-- BEGIN {re.escape(name)}[^>]*-->\n).*?(<!-- END {re.escape(name)} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"README has no '<!-- BEGIN {name} -->' … '<!-- END {name} -->' block")
        text = pattern.sub(lambda m: m.group(1) + generate() + "\n" + m.group(2), text)
    return text


def main() -> int:
    text = README.read_text()
    updated = render(text)
    if updated != text:
        README.write_text(updated)
        print(f"updated {README}")
    else:
        print(f"{README} is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
