"""Alpha models: labels, models, predictions and their factor analysis (engine, no Dagster)."""
