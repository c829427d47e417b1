"""Where failed runs are recorded: an append-only JSON-lines file, and optionally a webhook.

The file is the record an operator greps the morning after; the webhook is the page. Writing the
file must never be lost to a concurrent writer or a crash mid-line, and a webhook outage must
never hide the failure it was reporting, so posting returns its problem instead of raising.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

RUN_FAILURES_LOG = "run_failures.jsonl"


def append_line(path: Path, record: dict) -> None:
    """Append ``record`` as one JSON line with a single ``O_APPEND`` write, so concurrent writers
    interleave whole lines and a reader never sees half of one."""
    line = (json.dumps(record, sort_keys=True, default=str) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"short write to {path}: {written} of {len(line)} bytes (disk full?)")
        os.fsync(fd)
    finally:
        os.close(fd)


def post_json(url: str, payload: dict, *, timeout_s: float) -> str | None:
    """POST ``payload``; ``None`` on a 2xx answer, else what went wrong, with the URL never in it
    (webhook URLs often embed their secret token)."""
    request = urllib.request.Request(url, data=json.dumps(payload, default=str).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            response.read()
        return None
    except urllib.error.HTTPError as exc:
        problem = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        problem = f"{type(exc.reason).__name__}: {exc.reason}"
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        problem = f"{type(exc).__name__}: {exc}"
    return problem.replace(url, "<webhook url>")
