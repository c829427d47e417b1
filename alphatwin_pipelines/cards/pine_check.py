"""A structural check of the Pine Script v5 subset the card templates emit (there is no Pine
compiler here). It reports, as sentences:

* a missing ``//@version=5`` header or not exactly one ``strategy(...)`` declaration;
* unbalanced brackets or quotes on a line (the templates never continue a statement on the next line);
* blocks: indentation in steps of 4 spaces, every block header (``if``, ``for``, ``else``,
  a function ``name(args) =>`` with nothing after ``=>``) followed by a deeper line, and no
  line deeper than the block it could belong to;
* names: every identifier is a Pine built-in of the subset, a keyword, or declared earlier
  (assignment, ``var``/typed declaration, ``for`` variable, function or parameter); a name
  after ``.`` or a ``name=`` keyword argument is not a use;
* every ``input.*`` variable is used after its declaration.
"""

from __future__ import annotations

import re

KEYWORDS = {"if", "else", "for", "to", "by", "and", "or", "not", "var", "varip", "true", "false", "na",
            "int", "float", "bool", "string", "series", "simple", "const"}
BUILTINS = {"open", "high", "low", "close", "volume", "bar_index", "strategy", "ta", "math", "input",
            "plotshape", "plot", "shape", "location", "color", "na", "nz"}
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][-+]?\d+)?|:=|==|!=|<=|>=|=>|\+=|-=|\S')
_HEADER = re.compile(r"^(if|for|else)\b|=>\s*$")
_FUNC = re.compile(r"^([A-Za-z_]\w*)\(([^)]*)\)\s*=>")
_DECL = re.compile(r"^(?:(?:var|varip)\s+)?(?:(?:int|float|bool|string)\s+)?([A-Za-z_]\w*)\s*=(?!=)")


def _strip_comment(line: str) -> str:
    out, quoted = [], False
    for i, ch in enumerate(line):
        if ch == '"' and (i == 0 or line[i - 1] != "\\"):
            quoted = not quoted
        if not quoted and line.startswith("//", i):
            break
        out.append(ch)
    return "".join(out).rstrip()


def _balanced(code: str) -> str | None:
    if code.count('"') % 2:
        return "an unterminated string"
    depth = []
    pairs = {")": "(", "]": "["}
    for tok in _TOKEN.findall(code):
        if tok in "([":
            depth.append(tok)
        elif tok in ")]":
            if not depth or depth.pop() != pairs[tok]:
                return f"an unmatched {tok!r}"
    return f"an unclosed {depth[-1]!r}" if depth else None


def _uses(code: str) -> list[str]:
    """Identifiers used on a line (not member names, not keyword-argument names, not strings)."""
    toks = _TOKEN.findall(code)
    names, depth = [], 0
    for i, tok in enumerate(toks):
        if tok in "([":
            depth += 1
        elif tok in ")]":
            depth -= 1
        if not re.fullmatch(r"[A-Za-z_]\w*", tok):
            continue
        if i and toks[i - 1] == ".":
            continue
        if depth > 0 and i + 1 < len(toks) and toks[i + 1] == "=":
            continue
        names.append(tok)
    return names


def check_pine(text: str) -> list[str]:
    """Problems found in ``text`` (empty when the script passes)."""
    problems: list[str] = []
    lines = text.splitlines()
    if not lines or lines[0].strip() != "//@version=5":
        problems.append("the first line must be //@version=5")
    code_lines = [(n, _strip_comment(raw)) for n, raw in enumerate(lines, start=1)]
    code_lines = [(n, c) for n, c in code_lines if c.strip()]
    declarations = [n for n, c in code_lines if re.match(r"^strategy\(", c)]
    if len(declarations) != 1:
        problems.append(f"expected exactly one strategy(...) declaration, found {len(declarations)}")
    defined: set[str] = set()
    scopes: list[tuple[int, set[str]]] = []  # (indent of a block's body, names declared in it)
    inputs: dict[str, int] = {}
    used: set[str] = set()
    opened = None  # (indent, names) of the block header on the previous statement
    for n, code in code_lines:
        indent = len(code) - len(code.lstrip(" "))
        body = code.strip()
        if indent % 4:
            problems.append(f"line {n}: indentation must be a multiple of 4 spaces")
        while scopes and indent < scopes[-1][0]:
            scopes.pop()
        if opened is not None:
            if indent <= opened[0]:
                problems.append(f"line {n}: the block opened on the previous statement has no body")
            else:
                scopes.append((indent, set(opened[1])))
            opened = None
        elif indent > (scopes[-1][0] if scopes else 0):
            problems.append(f"line {n}: indented deeper than any open block")
        bad = _balanced(body)
        if bad:
            problems.append(f"line {n}: {bad}")
        known = KEYWORDS | BUILTINS | defined | set().union(*(names for _, names in scopes))
        func, decl = _FUNC.match(body), _DECL.match(body)
        loop = re.match(r"^for\s+([A-Za-z_]\w*)\s*=", body)
        new, params, expr = [], [], body
        if func:
            defined.add(func.group(1))
            params = [a.strip() for a in func.group(2).split(",") if a.strip()]
            expr = body[func.end():]
            known |= set(params)
        elif loop:
            params, expr = [loop.group(1)], body[loop.end():]
        elif decl:
            new, expr = [decl.group(1)], body[decl.end():]
        for name in _uses(expr):
            used.add(name)
            if name not in known:
                problems.append(f"line {n}: {name!r} is used but never defined")
        for name in new:
            (scopes[-1][1] if scopes else defined).add(name)
            if re.search(r"=\s*input\.\w+\(", body):
                inputs[name] = n
                used.discard(name)
        if (func and not expr.strip()) or re.match(r"^(if|for)\s|^else\b", body):
            opened = (indent, params)
    if opened is not None:
        problems.append("the last block has no body")
    for name, line in inputs.items():
        if name not in used:
            problems.append(f"input {name!r} (line {line}) is never used")
    return problems
