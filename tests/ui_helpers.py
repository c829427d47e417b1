"""What the UI end-to-end test drives: a `dagster dev` process group, its GraphQL API and a
headless Debian Chromium over the DevTools protocol.

Only the standard library and ``websockets`` (already installed as a dependency of yfinance,
polygon-api-client and alpaca-py) are used, so the test adds no package.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Flags the brief fixes for a quiet, sandbox-free browser inside CI containers.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--hide-scrollbars",
    "--no-first-run",
    "--mute-audio",
)


class ServerUnavailable(RuntimeError):
    """The server could not bind or never answered; the caller decides whether that is a skip."""


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it), or ServerUnavailable if binding fails."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]
    except OSError as exc:
        raise ServerUnavailable(f"cannot bind a TCP port on 127.0.0.1: {exc}") from exc


def start_process_group(args: list[str], *, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """Start ``args`` as the leader of a new process group, so teardown reaches every child."""
    handle = log.open("wb")
    try:
        return subprocess.Popen(args, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        handle.close()


def stop_process_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the group (dagster dev then stops its webserver, daemon and code servers), SIGKILL stragglers."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # Children may outlive the leader; the group id stays valid while any member lives.
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait(timeout=grace_s)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} was never written)"


class GraphQL:
    """POSTs queries to a webserver's ``/graphql`` and raises on GraphQL-level errors."""

    def __init__(self, base_url: str):
        self.base_url = base_url

    def __call__(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            f"{self.base_url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.load(response)
        if payload.get("errors"):
            raise AssertionError(f"GraphQL errors for {query.split('{')[0].strip() or 'query'}: {payload['errors']}")
        return payload["data"]

    def wait_until_up(self, proc: subprocess.Popen, log: Path, timeout_s: float) -> dict:
        """Poll ``/server_info`` until it answers; ServerUnavailable if the port was taken.

        `dagster dev` keeps running when its webserver cannot bind, so the log is the signal.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _bind_failed(log):
                raise ServerUnavailable(f"dagster could not bind its port:\n{tail(log)}")
            if proc.poll() is not None:
                raise AssertionError(f"dagster dev exited with {proc.returncode} before serving:\n{tail(log)}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/server_info", timeout=5) as response:
                    info = json.load(response)
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
                continue
            if _bind_failed(log):  # whatever answered is not our server
                raise ServerUnavailable(f"dagster could not bind its port:\n{tail(log)}")
            return info
        raise AssertionError(f"{self.base_url}/server_info did not answer within {timeout_s:.0f}s:\n{tail(log)}")


def _bind_failed(log: Path) -> bool:
    text = tail(log, chars=200_000).lower()
    return "address already in use" in text or "errno 98" in text


def find_chromium() -> str | None:
    return next(filter(None, (shutil.which(name) for name in ("chromium", "chromium-browser"))), None)


class Chromium:
    """One headless Chromium page driven over the DevTools protocol (a websocket of JSON messages)."""

    def __init__(self, binary: str, profile_dir: Path, width: int, height: int, log: Path):
        profile_dir.mkdir(parents=True, exist_ok=True)
        # A port file left by an earlier browser on this profile would point at a dead port.
        (profile_dir / "DevToolsActivePort").unlink(missing_ok=True)
        args = [binary, *CHROMIUM_FLAGS, f"--window-size={width},{height}", "--remote-debugging-port=0",
                f"--user-data-dir={profile_dir}", "about:blank"]
        self.proc = start_process_group(args, cwd=profile_dir, env=dict(os.environ), log=log)
        self._ids = itertools.count(1)
        self._closing = contextlib.ExitStack()
        self._closing.callback(stop_process_group, self.proc, 5)
        try:
            port = self._devtools_port(profile_dir / "DevToolsActivePort", log)
            self.socket = self._closing.enter_context(self._connect_to_page(port))
            self.call("Emulation.setDeviceMetricsOverride",
                      width=width, height=height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self._closing.close()
            raise

    def _devtools_port(self, port_file: Path, log: Path, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if port_file.exists() and port_file.read_text().strip():
                return int(port_file.read_text().splitlines()[0])
            if self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}:\n{tail(log)}")
            time.sleep(0.2)
        raise AssertionError(f"chromium wrote no {port_file.name} within {timeout_s}s:\n{tail(log)}")

    def _connect_to_page(self, port: int):
        from websockets.sync.client import connect

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        return connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=10)

    def call(self, method: str, **params) -> dict:
        """Send one command and wait for its reply, skipping the events sent in between."""
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.socket.recv(timeout=60))
            if reply.get("id") == message_id:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method} failed: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def wait_for(self, expression: str, timeout_s: float, what: str) -> None:
        """Poll ``expression`` until truthy; while a page loads it may throw (no body yet), which counts as not yet."""
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            try:
                if self.evaluate(expression):
                    return
            except AssertionError as exc:
                last_error = exc
            time.sleep(0.25)
        raise AssertionError(
            f"page never showed {what} within {timeout_s:.0f}s (at {self.evaluate('location.href')}; last error {last_error})"
        )

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        """Close the websocket, then stop the browser."""
        self._closing.close()


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise AssertionError(f"not a PNG: starts with {data[:16]!r}")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_crc_ok(data: bytes) -> bool:
    """Every chunk's CRC matches, i.e. the file was written whole."""
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind_and_body = data[offset + 4:offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length:offset + 12 + length])
        if zlib.crc32(kind_and_body) != crc:
            return False
        if kind_and_body[:4] == b"IEND":
            return offset + 12 + length == len(data)
        offset += 12 + length
    return False
