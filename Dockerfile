# One image for the whole stack (docker-compose.yml): the user-code gRPC server, the Dagster
# webserver and daemon, and the Dask scheduler and workers. They must share it: runs execute in
# the user-code container with the project installed, Dask workers unpickle its functions, and
# client, scheduler and workers must run the same dask/distributed versions.
FROM python:3.11-slim

# PYTHONPATH: the instance's storage class (assets/instance.py) is imported from the repository root
# by every Dagster process (code server, webserver, daemon, run workers).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home \
    ALPHATWIN_DATA_DIR=/data \
    NUMBA_CACHE_DIR=/tmp/numba_cache \
    PYTHONPATH=/opt/alphatwin

WORKDIR /opt/alphatwin

# Dependencies first, so editing assets/ or definitions.py does not reinstall them. The ta-lib
# manylinux wheel bundles the TA-Lib C library, so no compiler should be needed (this image has
# not been built yet: see docs/deployment.md). README.md is the package's readme, needed to build it.
COPY pyproject.toml README.md ./
COPY alphatwin_pipelines ./alphatwin_pipelines
RUN pip install ".[dagster]" \
    && (python -m compileall -q /usr/local/lib/python3.11/site-packages > /dev/null || true)

# The thin Dagster layer (definitions.py, assets/, and jobs/ or schedules/ once they hold files)
# is loaded from this folder, not from site-packages: copy the rest of the context (.dockerignore
# keeps tests, docs, data, local state and secrets out).
COPY . ./
# The code location reads dbt's manifest when it loads (assets/marts.py): parse the project now.
RUN cd dbt && dbt parse --quiet --profiles-dir . --target-path target

# The instance is the Postgres one tested in tests/test_postgres_instance.py; its connection comes
# from DAGSTER_PG_* at run time. The webserver and the daemon load the code location over gRPC.
COPY dagster.postgres.yaml ${DAGSTER_HOME}/dagster.yaml
COPY docker/workspace.yaml /opt/dagster/workspace.yaml

# /data: the data directory when it is a mounted folder (docker-compose sets s3:// instead);
# /state: the local state directory (ALPHATWIN_STATE_DIR) when the data is on an object store.
# dbt/: each marts run writes its target folder and logs there (assets/marts.py).
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin alphatwin \
    && mkdir -p /data /state ${DAGSTER_HOME}/storage \
    && chown -R alphatwin:alphatwin /data /state ${DAGSTER_HOME} /opt/alphatwin/dbt
USER alphatwin

EXPOSE 4000
# The user-code server: serves definitions.py and launches runs as subprocesses (DefaultRunLauncher).
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-f", "definitions.py", "-d", "/opt/alphatwin", "--location-name", "alphatwin_pipelines"]
