# AlphaTwin pipelines: `make run` and `make test` are the two commands a fresh clone needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

export DAGSTER_HOME ?= $(CURDIR)/.dagster
# The instance's storage class is assets/instance.py (dagster.yaml): every Dagster process, the UI's
# webserver and daemon included, imports it from the repository root.
export PYTHONPATH := $(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
# `local` (SQLite under DAGSTER_HOME) or `postgres` (DAGSTER_PG_* variables).
ALPHATWIN_INSTANCE ?= local

# The range `make run` materialises: two full years of sessions, enough for every lookback.
RUN_START ?= 2024-01-02
RUN_END ?= 2025-12-31
UI_PORT ?= 3000

.PHONY: help setup run ui test bench validate clean instance

help:
	@echo "make run    - install into .venv and materialise the whole asset graph ($(RUN_START)..$(RUN_END))"
	@echo "make test   - install if needed and run the test suite"
	@echo "make ui     - open the Dagster UI on http://127.0.0.1:$(UI_PORT)"
	@echo "make bench  - run the benchmarks in benchmarks/"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip uv
	$(VENV)/bin/uv pip install --python $(PY) -q -e ".[dagster,dev]"
	@# Precompile bytecode once: with PYTHONDONTWRITEBYTECODE set, every run step would
	@# otherwise recompile dagster, pandas and friends on import (about 2 s per process).
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	@touch $@

# The code location reads dbt's manifest at load (assets/marts.py): re-parse whenever dbt/ changes.
DBT_MANIFEST := dbt/target/manifest.json
DBT_SOURCES := $(shell find dbt/models dbt/tests dbt/macros -type f 2>/dev/null) dbt/dbt_project.yml dbt/profiles.yml

$(DBT_MANIFEST): $(STAMP) $(DBT_SOURCES)
	cd dbt && ../$(VENV)/bin/dbt parse --quiet --profiles-dir . --target-path target

setup: $(STAMP) instance $(DBT_MANIFEST)

instance:
	@mkdir -p $(DAGSTER_HOME)
	@if [ "$(ALPHATWIN_INSTANCE)" = "postgres" ]; then src=dagster.postgres.yaml; else src=dagster.yaml; fi; \
	  cp -f "$$src" $(DAGSTER_HOME)/dagster.yaml

DAGSTER := $(VENV)/bin/dagster
MATERIALIZE := $(DAGSTER) asset materialize -f definitions.py -d .

# Every session-partitioned asset, in one single-run backfill (upstream first).
DAILY_ASSETS := raw_ohlcv,validated_ohlcv,quarantined_ohlcv,adjustment_factors,cleaned_ohlcv,features,scanner_results,symbol_context,sector_rotation,top_pairs,alpha_labels

# Whole-table research stages on the latest scanner session, then the dbt marts over everything.
# `make run` passes a demo research budget (the asset defaults are the weekly research scale).
DEMO_RESEARCH_CONFIG ?= config/demo_research.yaml
RESEARCH_ASSETS := optimised_strategies,validation_reports,strategy_returns,strategy_positions,strategy_cards,portfolio_allocations

run: setup
	$(MATERIALIZE) --select universe
	$(MATERIALIZE) --select $(DAILY_ASSETS) --partition-range $(RUN_START)...$(RUN_END)
	@# The per-symbol history index of the daily tables rides along (no config; a few seconds).
	$(MATERIALIZE) --select $(RESEARCH_ASSETS),symbol_history_index -c $(DEMO_RESEARCH_CONFIG)
	@# Alpha models trained on the labels known before the last session, which they then score.
	$(MATERIALIZE) --select alpha_models
	$(MATERIALIZE) --select alpha_predictions --partition $(RUN_END)
	$(MATERIALIZE) --select 'group:marts'
	@$(PY) -m alphatwin_pipelines.inventory
	@echo ""
	@echo "Done. Next: 'make ui' and open http://127.0.0.1:$(UI_PORT) for lineage, partitions, runs and checks."

ui: setup
	@# The store's URI is not echoed when set: it may hold a password.
	@if [ -n "$$ALPHATWIN_MLFLOW_URI" ]; then store="the one ALPHATWIN_MLFLOW_URI names"; \
	  else store="sqlite:///$${ALPHATWIN_DATA_DIR:-$(CURDIR)/data}/mlflow.db"; fi; \
	  echo "MLflow (alpha model runs and registry) store: $$store"
	@echo "  Its UI needs the full mlflow package (the code location uses mlflow-skinny, which has no server):"
	@echo "  pipx run mlflow ui --backend-store-uri <that store> -p 5000, or 'docker-compose up -d mlflow' -> http://127.0.0.1:5000"
	$(DAGSTER) dev -h 127.0.0.1 -p $(UI_PORT) -w workspace.yaml

validate: setup
	$(DAGSTER) definitions validate -w workspace.yaml

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run_all.py

clean:
	@# The data directory is wherever storage.resolve_data_dir says (ALPHATWIN_DATA_DIR, else data/).
	rm -rf $(DAGSTER_HOME) "$$($(PY) -c 'from alphatwin_pipelines.storage import resolve_data_dir; print(resolve_data_dir())')" .pytest_cache dbt/target dbt/logs
