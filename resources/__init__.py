"""The plain layers both orchestrators share: configuration, plan ids, the database layer (models,
``DatabaseService``, the dual writer ``plan_store``, Alembic helpers) and the LLM layer (``llm/``).

Nothing here imports Dagster or Luigi (tests/test_architecture.py checks it);
``planexe_assets.dagster_defs.resources`` wraps these as Dagster resources.
"""
