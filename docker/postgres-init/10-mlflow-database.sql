-- The MLflow tracking/registry store gets its own database: MLflow and Dagster both keep an
-- alembic_version table, which cannot be shared. Runs once, when the postgres volume is created.
CREATE DATABASE mlflow;
