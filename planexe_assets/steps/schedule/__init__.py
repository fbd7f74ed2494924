"""The project schedule: a Gantt chart built from the WBS, the duration estimates and the dependencies.

No LLM. The step reads the full level 1-3 WBS, the per-task ``days_realistic`` estimates, the model's
task dependencies and the plan's start time, and writes three exports:

- ``026-1-schedule_gantt_mermaid.html``: a static overview, drawn here as inline SVG (one bar per task,
  sorted by start) with the equivalent Mermaid ``gantt`` source kept in a ``<pre>`` block;
- ``026-2-schedule_gantt_dhtmlx.html``: an interactive Gantt (collapsible WBS tree, tooltips,
  zoom) driven by our own small script, with the ``{tasks, links}`` data embedded as JSON;
- ``026-3-schedule_gantt_machai.csv``: one row per task in PlanExe's "machai" import format.

Every page works offline: no CDN, no network request. Both pages extend the shared page template
(``steps/pages.py``); inside the report's frame they report their height so the frame shows the whole
chart (``static/frame_height.js``).

How the schedule is made (durations, links, critical path) is told once, in ``schedule/model.py``.

Everything left out or adjusted is logged, listed in the step notes and in the closed "Notes" block
at the end of both HTML pages (``doc_notes``), never above the chart.

The package: ``model`` (durations, links, the critical-path schedule), ``exports`` (CSV, Mermaid,
the interactive chart's data), ``pages`` (the two HTML pages and the SVG overview) and ``step`` (the
registered step function). Every public name is importable from here.
"""

from planexe_assets.steps.schedule.exports import (
    DHTMLX_LINK_TYPES,
    MACHAI_COLUMNS,
    MERMAID_SECTION_SIZE,
    gantt_data,
    machai_csv,
    mermaid_gantt,
    tasks_by_start,
    tooltip_html,
)
from planexe_assets.steps.schedule.model import (
    ADJUSTMENTS_HEADING,
    DependencyVerdict,
    DurationPlan,
    PlannedLink,
    ProjectSchedule,
    ScheduledTask,
    _containment_warnings,
    build_schedule,
    hierarchy_links,
    inherited_links,
    parse_day_zero,
    predecessor_summary,
    resolve_durations,
    task_details,
    unique_names,
    vet_dependencies,
)
from planexe_assets.steps.schedule.pages import (
    AXIS_HEIGHT,
    CHART_WIDTH,
    LABEL_CHARS,
    LABEL_WIDTH,
    MAX_TICKS,
    ROW_HEIGHT,
    TICK_STEPS_MONTHS,
    axis_ticks,
    json_for_script,
    overview_geometry,
    render_interactive_page,
    render_overview_page,
    viewer_script,
)
from planexe_assets.steps.schedule.step import run_schedule

__all__ = [
    "ADJUSTMENTS_HEADING",
    "AXIS_HEIGHT",
    "CHART_WIDTH",
    "DHTMLX_LINK_TYPES",
    "LABEL_CHARS",
    "LABEL_WIDTH",
    "MACHAI_COLUMNS",
    "MAX_TICKS",
    "MERMAID_SECTION_SIZE",
    "ROW_HEIGHT",
    "TICK_STEPS_MONTHS",
    "DependencyVerdict",
    "DurationPlan",
    "PlannedLink",
    "ProjectSchedule",
    "ScheduledTask",
    "_containment_warnings",
    "axis_ticks",
    "build_schedule",
    "gantt_data",
    "hierarchy_links",
    "inherited_links",
    "json_for_script",
    "machai_csv",
    "mermaid_gantt",
    "overview_geometry",
    "parse_day_zero",
    "predecessor_summary",
    "render_interactive_page",
    "render_overview_page",
    "resolve_durations",
    "run_schedule",
    "task_details",
    "tasks_by_start",
    "tooltip_html",
    "unique_names",
    "vet_dependencies",
    "viewer_script",
]
