"""The Dagster adapter: assets, checks, jobs, sensors, schedules, the executor and Dagster's storage."""
