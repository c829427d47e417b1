"""A real S3-compatible server on 127.0.0.1 for the object-storage tests: moto in server mode, started
with its command-line tool (``moto_server``, from the package index) as a subprocess, and the
``AWS_*`` variables pointing at it, as docker-compose points every service at MinIO.

``s3_server`` starts one server per test session; ``s3_data_dir`` gives each test a fresh bucket
and returns ``s3://<bucket>/data`` with ``ALPHATWIN_DATA_DIR`` set to it. ``RefusingProxy`` sits
between a client and the server and, while ``refusing`` is set, drops every connection it accepts:
a store that refuses requests for a while.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres_support import BIN, _free_port, _process

MOTO_SERVER = BIN / "moto_server"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "alphatwin-test", "AWS_SECRET_ACCESS_KEY": "alphatwin-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass
class S3Server:
    endpoint: str
    log: Path

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {**AWS_ENV, "AWS_ENDPOINT_URL": endpoint or self.endpoint}


def _wait_listening(port: int, proc, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto_server did not listen on 127.0.0.1:{port} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    if not MOTO_SERVER.exists():
        pytest.skip(f"{MOTO_SERVER} not installed (moto[server] is a dev dependency)")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with _process([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)], None, log) as proc:
        _wait_listening(port, proc, log)
        yield S3Server(f"http://127.0.0.1:{port}", log)


def make_bucket(server: S3Server) -> str:
    import boto3

    bucket = f"alphatwin-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=server.endpoint, **{k.lower(): v for k, v in AWS_ENV.items()
                                                         if k != "AWS_DEFAULT_REGION"},
                 region_name=AWS_ENV["AWS_DEFAULT_REGION"]).create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture
def s3_data_dir(s3_server, monkeypatch) -> str:
    """``s3://<fresh bucket>/data``, exported as ALPHATWIN_DATA_DIR with the server's AWS_* variables."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    url = f"s3://{make_bucket(s3_server)}/data"
    monkeypatch.setenv("ALPHATWIN_DATA_DIR", url)
    return url


class RefusingProxy:
    """A TCP proxy on 127.0.0.1 to ``target_port``; while ``refusing``, each new connection is closed
    at once (and open ones are cut), as a store that is down or overloaded does to a client. With
    ``refuse(writes_only=True)`` it passes reads and cuts a connection when a PUT request starts."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.refusing = False
        self.refusing_writes = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def refuse(self, on: bool = True, writes_only: bool = False) -> None:
        self.refusing, self.refusing_writes = on and not writes_only, on and writes_only
        if on:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()
            self._open.clear()

    def close(self) -> None:
        self._stop = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                client.close()  # a reset, not an orderly close
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, upstream]
            for a, b, requests in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, requests), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and self.refusing_writes and data.startswith(b"PUT "):
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.close()
