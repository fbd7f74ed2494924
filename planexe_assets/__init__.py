"""planexe-dagster: PlanExe's plan pipeline as Dagster assets (one partition per plan)."""
