"""The thin Dagster layer: one module per pipeline stage, over the `alphatwin_pipelines` engine."""
