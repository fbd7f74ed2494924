"""Shared resources: configuration, the database layer, the LLM layer and the IO manager.

The database and LLM modules are plain Python (no Dagster import) so Luigi tasks and the CLI use
them too; ``resources.dagster`` wraps them as Dagster resources.
"""
