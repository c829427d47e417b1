"""docker-compose.yml, .env.example, the Dockerfile and docker/workspace.yaml, checked without Docker.

No container is started anywhere in this suite (there is no Docker engine where it runs):
``docker-compose config`` (Debian's docker-compose package) validates and interpolates the
compose file, and the rest are static checks of what the files promise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKER_WORKSPACE = REPO_ROOT / "docker" / "workspace.yaml"

SERVICES = {"postgres", "minio", "minio-bucket", "user-code", "dagster-webserver", "dagster-daemon", "dask-scheduler",
            "dask-worker-1", "dask-worker-2", "mlflow"}
#: Services that read or write the data directory: all of them on the MinIO bucket, none through a volume.
DATA_SERVICES = {"user-code", "dagster-webserver", "dagster-daemon", "dask-worker-1", "dask-worker-2"}
DATA_DIR = "s3://alphatwin/data"
DUMMY_PASSWORD = "dummy-password-for-compose-config"
DUMMY_MINIO_PASSWORD = "dummy-minio-password"

# Names whose values are secrets: they may only be empty in .env.example and only `${...}` in compose.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE", re.IGNORECASE)
# Shapes of real credentials: provider key prefixes, private keys, URLs with a password.
SECRET_SHAPES = [
    re.compile(r"AKIA[0-9A-Z]{16}"),
    re.compile(r"\b(sk|pk|rk)_(live|test)_[0-9A-Za-z]{8,}"),
    re.compile(r"\bgh[pousr]_[0-9A-Za-z]{20,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@$]+@"),
]


def _looks_like_secret(value: str) -> bool:
    """A credential's shape, or a long random token (mixed case and digits, or long hex)."""
    if any(shape.search(value) for shape in SECRET_SHAPES):
        return True
    for token in re.findall(r"[A-Za-z0-9_+/=-]{24,}", value):
        mixed = re.search(r"[a-z]", token) and re.search(r"[A-Z]", token) and re.search(r"[0-9]", token)
        if mixed or re.fullmatch(r"[0-9a-fA-F]{32,}", token):
            return True
    return False

def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            pairs[key.strip()] = value
    return pairs


def _docker_compose(*args, env_file: Path, cwd: Path):
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install -y docker-compose); "
                    "the compose file is only checked statically")
    # A clean environment: a developer's exported DAGSTER_PG_PASSWORD must not stand in for .env.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd)}
    return subprocess.run(
        [exe, "-f", str(COMPOSE), "--project-directory", str(REPO_ROOT), "--env-file", str(env_file), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )


def _env_file(tmp_path: Path, password: str, minio_password: str = DUMMY_MINIO_PASSWORD) -> Path:
    """.env.example with the two required secrets filled in (an empty value leaves one unset)."""
    text = ENV_EXAMPLE.read_text()
    for name, value in (("DAGSTER_PG_PASSWORD", password), ("MINIO_ROOT_PASSWORD", minio_password)):
        assert re.search(rf"^{name}=$", text, re.MULTILINE), f".env.example must leave {name} empty"
        text = re.sub(rf"^{name}=$", f"{name}={value}", text, flags=re.MULTILINE)
    path = tmp_path / ".env"
    path.write_text(text)
    return path


def test_compose_config_validates_with_env_example(tmp_path):
    proc = _docker_compose("config", "-q", env_file=_env_file(tmp_path, DUMMY_PASSWORD), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_compose_resolves_the_password_from_env_and_binds_loopback(tmp_path):
    proc = _docker_compose("config", env_file=_env_file(tmp_path, DUMMY_PASSWORD), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert set(resolved["services"]) == SERVICES
    for name in ("user-code", "dagster-webserver", "dagster-daemon"):
        env = resolved["services"][name]["environment"]
        assert env["DAGSTER_PG_PASSWORD"] == DUMMY_PASSWORD, name
        assert env["DAGSTER_PG_HOST"] == "postgres", name
    assert resolved["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == DUMMY_PASSWORD
    assert resolved["services"]["user-code"]["environment"]["ALPHATWIN_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    published = {
        name: [str(p) for p in svc.get("ports", [])] for name, svc in resolved["services"].items() if svc.get("ports")
    }
    assert published == {"dagster-webserver": ["127.0.0.1:3000:3000/tcp"], "mlflow": ["127.0.0.1:5000:5000/tcp"],
                         "minio": ["127.0.0.1:9000:9000/tcp", "127.0.0.1:9001:9001/tcp"]}
    mlflow = resolved["services"]["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"] == (
        f"postgresql+psycopg2://dagster:{DUMMY_PASSWORD}@postgres:5432/mlflow")
    assert resolved["services"]["user-code"]["environment"]["ALPHATWIN_MLFLOW_URI"] == "http://mlflow:5000"


def test_compose_refuses_to_start_without_a_password(tmp_path):
    proc = _docker_compose("config", "-q", env_file=_env_file(tmp_path, ""), cwd=tmp_path)
    assert proc.returncode != 0
    assert "DAGSTER_PG_PASSWORD" in proc.stderr and "set it in .env" in proc.stderr
    proc = _docker_compose("config", "-q", env_file=_env_file(tmp_path, DUMMY_PASSWORD, minio_password=""), cwd=tmp_path)
    assert proc.returncode != 0
    assert "MINIO_ROOT_PASSWORD" in proc.stderr and "set it in .env" in proc.stderr


def test_every_data_service_reads_the_minio_bucket_and_shares_no_data_volume(tmp_path):
    proc = _docker_compose("config", env_file=_env_file(tmp_path, DUMMY_PASSWORD), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio:") and minio["command"][:2] == ["server", "/data"]
    assert minio["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    credentials = (minio["environment"]["MINIO_ROOT_USER"], minio["environment"]["MINIO_ROOT_PASSWORD"])
    assert credentials == ("alphatwin", DUMMY_MINIO_PASSWORD)
    # The one-shot service creates the bucket the data directory names, once MinIO is healthy.
    bucket = services["minio-bucket"]
    assert bucket["image"].startswith("minio/mc:") and bucket["restart"] == "no"
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert f"mc mb --ignore-existing store/{DATA_DIR.split('/')[2]}" in bucket["entrypoint"][-1]
    for name in DATA_SERVICES:
        env = services[name]["environment"]
        assert (env["ALPHATWIN_DATA_DIR"], env["AWS_ENDPOINT_URL"]) == (DATA_DIR, "http://minio:9000"), name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == credentials, name
        assert env["AWS_DEFAULT_REGION"], name
    for name in ("user-code", "dask-worker-1", "dask-worker-2"):
        assert services[name]["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully", name
    # No data volume: the workers mount nothing, no application container mounts /data, and the only
    # volume two services share holds Dagster's compute logs (state, not tables).
    mounts = {name: [str(v) for v in svc.get("volumes", [])] for name, svc in services.items()}
    assert mounts["dask-worker-1"] == mounts["dask-worker-2"] == []
    assert not [m for name in DATA_SERVICES for m in mounts[name] if ":/data" in m]
    users: dict[str, set] = {}
    for name, volumes in mounts.items():
        for mount in volumes:
            users.setdefault(mount.split(":", 1)[0], set()).add(name)
    assert {volume for volume, names in users.items() if len(names) > 1} == {"dagster-storage"}
    # The code server's state directory (marts.duckdb, GX docs, numba's cache) is its own volume.
    state = services["user-code"]["environment"]["ALPHATWIN_STATE_DIR"]
    assert any(m.endswith(f":{state}:rw") or m.endswith(f":{state}") for m in mounts["user-code"])
    assert services["user-code"]["environment"]["ALPHATWIN_DROP_DIR"].startswith(state + "/")


def test_compose_declares_the_ten_services():
    services = _compose()["services"]
    assert set(services) == SERVICES
    assert services["user-code"]["environment"]["ALPHATWIN_DASK_SCHEDULER"] == "tcp://dask-scheduler:8786"
    for worker in ("dask-worker-1", "dask-worker-2"):
        assert "tcp://dask-scheduler:8786" in services[worker]["command"]
    # Healthchecks gate the start order: the database, then the code server, then webserver and daemon.
    assert "healthcheck" in services["postgres"] and "healthcheck" in services["user-code"]
    for name in ("dagster-webserver", "dagster-daemon"):
        assert services[name]["depends_on"]["user-code"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    # MLflow keeps its own database (it and Dagster both own an alembic_version table).
    init = REPO_ROOT / "docker" / "postgres-init" / "10-mlflow-database.sql"
    assert "CREATE DATABASE mlflow" in init.read_text()
    assert any(v.endswith(":/docker-entrypoint-initdb.d:ro") for v in services["postgres"]["volumes"])
    assert services["mlflow"]["image"].startswith("ghcr.io/mlflow/mlflow:")
    assert "/mlflow" in services["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]


def test_only_the_webserver_mlflow_and_minio_publish_and_only_on_loopback():
    services = _compose()["services"]
    assert services["dagster-webserver"]["ports"] == ["127.0.0.1:${DAGSTER_WEBSERVER_PORT:-3000}:3000"]
    assert services["mlflow"]["ports"] == ["127.0.0.1:${MLFLOW_PORT:-5000}:5000"]
    assert services["minio"]["ports"] == ["127.0.0.1:${MINIO_API_PORT:-9000}:9000", "127.0.0.1:${MINIO_CONSOLE_PORT:-9001}:9001"]
    assert [name for name, svc in services.items() if svc.get("ports")] == ["minio", "dagster-webserver", "mlflow"]


def _strings(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*path, str(i)))
    elif node is not None:
        yield path, str(node)


def test_no_secret_is_committed_in_compose_or_env_example():
    # Secret-named settings: empty in .env.example, only ${VAR} references in compose.
    env_example = _env_example()
    secret_keys = [k for k in env_example if SECRET_NAME.search(k)]
    assert {"DAGSTER_PG_PASSWORD", "POLYGON_API_KEY", "MINIO_ROOT_PASSWORD"} <= set(secret_keys)
    assert {k: env_example[k] for k in secret_keys if env_example[k]} == {}
    for path, value in _strings(_compose()):
        if SECRET_NAME.search(path[-1]):
            assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), f"{'/'.join(path)} is a literal: {value!r}"
    # No value in either file has the shape of a credential.
    assert not [(k, v) for k, v in env_example.items() if _looks_like_secret(v)]
    assert not [("/".join(p), v) for p, v in _strings(_compose()) if _looks_like_secret(v)]
    assert _looks_like_secret("ghp_" + "a1B2" * 9) and _looks_like_secret("Zq8" * 10)  # the detector works
    assert not _looks_like_secret("ALPHATWIN_SECONDARY_SOURCE_PATH")

def test_env_files_stay_out_of_git_and_the_image():
    gitignore = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in [line.strip() for line in gitignore]
    dockerignore = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    assert ".env" in dockerignore and ".env.*" in dockerignore


def test_image_serves_the_code_location_the_webserver_and_daemon_load():
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.MULTILINE)
    assert '".[dagster]"' in dockerfile
    # The Postgres instance file tested in test_postgres_instance.py is the one the image installs.
    assert "COPY dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml" in dockerfile
    assert "COPY docker/workspace.yaml /opt/dagster/workspace.yaml" in dockerfile
    cmd = re.search(r"^CMD (\[.*?\])\s*$", dockerfile, re.MULTILINE | re.DOTALL)
    assert cmd, "the Dockerfile has no exec-form CMD"
    args = yaml.safe_load(cmd.group(1).replace("\\\n", " "))
    assert args[:3] == ["dagster", "code-server", "start"]
    port = args[args.index("-p") + 1]
    location = args[args.index("--location-name") + 1]
    assert args[args.index("-h") + 1] == "0.0.0.0"
    assert args[args.index("-f") + 1] == "definitions.py"

    (entry,) = yaml.safe_load(DOCKER_WORKSPACE.read_text())["load_from"]
    grpc = entry["grpc_server"]
    assert (grpc["host"], str(grpc["port"]), grpc["location_name"]) == ("user-code", port, location)
    # The same location name as local development (workspace.yaml), so run history lines up.
    (local,) = yaml.safe_load((REPO_ROOT / "workspace.yaml").read_text())["load_from"]
    assert local["python_file"]["location_name"] == location
    assert "user-code" in _compose()["services"] and "build" in _compose()["services"]["user-code"]
