"""The run-failure sensor against a real failed run and a real webhook server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from assets.resources import FailureWebhookResource, StorageResource
from schedules.failures import run_failure_recorder

SECRET_PATH = "/hooks/T000/secret-token-123"


@dg.op
def fetch_prices():
    raise dg.Failure(description="provider refused AAPL: rate limit")


@dg.op
def fine():
    return 1


@dg.job
def failing_job():
    fine()
    fetch_prices()


@pytest.fixture
def webhook():
    """A real HTTP server recording every POST (path, headers, body)."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}", received
    server.shutdown()
    server.server_close()


def fail_and_sense(instance, data_dir, url):
    result = failing_job.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_recorder.name, dagster_event=result.get_run_failure_event(),
        dagster_instance=instance, dagster_run=result.dagster_run,
        resources={"storage": StorageResource(data_dir=str(data_dir)), "failure_webhook": FailureWebhookResource(url=url)},
    ).for_run_failure()
    run_failure_recorder(context)
    return result


def lines(data_dir):
    return [json.loads(line) for line in (data_dir / "run_failures.jsonl").read_text().splitlines()]


def test_a_failed_run_is_recorded_and_posted(tmp_path, webhook):
    url, received = webhook
    with dg.DagsterInstance.ephemeral() as instance:
        result = fail_and_sense(instance, tmp_path, url)
    [record] = lines(tmp_path)
    assert record["run_id"] == result.run_id
    assert record["job"] == "failing_job"
    assert record["step"] == "fetch_prices"
    assert record["error"] == "provider refused AAPL: rate limit"
    assert [s["step"] for s in record["failed_steps"]] == ["fetch_prices"]
    assert record["time"].endswith("+00:00")
    assert [(path, kind) for path, kind, _ in received] == [(SECRET_PATH, "application/json")]
    assert received[0][2] == record


def test_each_failure_appends_one_line(tmp_path, webhook):
    url, _ = webhook
    with dg.DagsterInstance.ephemeral() as instance:
        runs = [fail_and_sense(instance, tmp_path, url).run_id for _ in range(2)]
    assert [r["run_id"] for r in lines(tmp_path)] == runs


def test_an_unreachable_webhook_is_logged_without_its_url_and_the_line_is_kept(tmp_path, capfd):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    with dg.DagsterInstance.ephemeral() as instance:
        result = fail_and_sense(instance, tmp_path, url)
    assert [r["run_id"] for r in lines(tmp_path)] == [result.run_id]
    err = capfd.readouterr().err
    assert "failure webhook (ALPHATWIN_FAILURE_WEBHOOK) not reached" in err and "ConnectionRefusedError" in err
    assert SECRET_PATH not in err and "secret-token" not in err


def test_without_a_webhook_only_the_file_is_written(tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        result = fail_and_sense(instance, tmp_path, None)
    assert [r["run_id"] for r in lines(tmp_path)] == [result.run_id]
