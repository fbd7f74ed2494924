"""The name ``dagster.yaml`` files give the pooled instance storage (``storage: custom: module:``).

``planexe_assets/deploy/*.yaml`` and every Dagster home they were installed into name this module; the
classes live in ``planexe_assets.dagster_defs.instance_storage``.
"""

from planexe_assets.dagster_defs.instance_storage import PlanexePostgresStorage, PlanexeSqliteStorage

__all__ = ["PlanexePostgresStorage", "PlanexeSqliteStorage"]
