"""The Dagster ``Definitions`` of planexe-dagster: the only place that knows all the pieces."""

from dagster import Definitions

from planexe_assets.assets import IO_MANAGER_KEY, build_step_assets
from planexe_assets.jobs import full_plan_job
from resources.dagster_resources import DatabaseResource, LLMResource
from resources.io_manager import PlanContentIOManager

database = DatabaseResource()

defs = Definitions(
    assets=build_step_assets(),
    jobs=[full_plan_job],
    resources={
        "database": database,
        "llm": LLMResource(),
        IO_MANAGER_KEY: PlanContentIOManager(database=database),
    },
)
