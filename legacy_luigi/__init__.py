"""PlanExe's Luigi pipeline, kept for parity: the same 61 tasks, class names, parameters,
``requires()`` keys and ``output()`` file names, plus the 2026 tasks added around them (each with
upstream's class name and requires() keys), calling the same step functions and the same dual writer
as the Dagster assets. ``python -m legacy_luigi --plan-id ID`` runs it."""
