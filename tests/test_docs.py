"""The README's generated tables must match the code that generates them."""

from alphatwin_pipelines.docs import README, render


def test_readme_tables_are_up_to_date():
    text = README.read_text()
    assert render(text) == text, "README is stale: run `.venv/bin/python -m alphatwin_pipelines.docs`"


def test_readme_quick_start_has_exactly_the_two_commands():
    text = README.read_text()
    block = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make run", "make test"]
