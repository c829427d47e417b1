"""Pipeline stages: read upstream partitions, run the engine, write partitions whole.

Each stage is what one Dagster asset does, minus Dagster: the asset modules only translate
a stage's report into metadata and check results, so every stage can be run and tested
from plain Python.
"""
