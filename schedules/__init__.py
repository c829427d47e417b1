"""Sensors and schedules that launch the code location's jobs."""
