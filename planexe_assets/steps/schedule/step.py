"""The ``schedule`` step: read the WBS, the estimates, the dependencies and the start time, build
the schedule, log what it left out and write the three exports."""

from __future__ import annotations

import logging

from planexe_assets.core import StepContext, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.doc_notes import log_notes
from planexe_assets.steps.durations import parse_dependencies, parse_task_durations
from planexe_assets.steps.schedule.exports import machai_csv
from planexe_assets.steps.schedule.model import ADJUSTMENTS_HEADING, build_schedule, parse_day_zero
from planexe_assets.steps.schedule.pages import render_interactive_page, render_overview_page
from planexe_assets.steps.wbs_tree import parse_project_title, parse_wbs_project


@register("schedule")
def run_schedule(ctx: StepContext, inputs: StepInputs) -> StepResult:
    day_zero = parse_day_zero(inputs["start_time"].text())
    title = parse_project_title(inputs["wbs_level1"].text("project_title"))
    mapping = parse_dependencies(inputs["dependencies"].json())
    estimates = parse_task_durations(inputs["durations"].json())
    root = parse_wbs_project(inputs["wbs_project123"].json("full"))

    schedule = build_schedule(root, estimates, mapping, day_zero, title)
    for heading, lines in schedule.report_lines():
        level = logging.INFO if heading == ADJUSTMENTS_HEADING else logging.WARNING
        log_notes(ctx.logger, "schedule", [(heading, lines)], level)

    outputs = ctx.step.outputs
    return StepResult(
        files={
            outputs["mermaid_html"]: render_overview_page(schedule),
            outputs["dhtmlx_html"]: render_interactive_page(schedule),
            outputs["machai_csv"]: machai_csv(schedule),
        },
        notes={
            **schedule.summary(),
            "dependencies_rejected": [
                {"dependent": v.dependent_id, "prerequisite": v.prerequisite_id, "reason": v.reason}
                for v in schedule.rejected_dependencies()
            ],
            "duration_issues": schedule.durations.issues,
            "duration_adjustments": len(schedule.durations.adjustments),
            "warnings": schedule.warnings,
        },
    )
