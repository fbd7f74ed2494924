"""The schedule's exports: PlanExe's "machai" CSV, the Mermaid ``gantt`` source and the
``{tasks, links}`` data of the interactive chart (PlanExe's DHTMLX shape)."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Any

from markupsafe import Markup, escape

from planexe_assets.steps.common import one_line
from planexe_assets.steps.cpm import LinkType
from planexe_assets.steps.schedule.model import ProjectSchedule, ScheduledTask, predecessor_summary

MACHAI_COLUMNS = (
    "project_key",
    "project_name",
    "project_description",
    "project_start_date",
    "project_end_date",
    "project_progress",
    "project_parent",
    "originating_department",
)
MERMAID_SECTION_SIZE = 10
DHTMLX_LINK_TYPES = {LinkType.FS: "0", LinkType.SS: "1", LinkType.FF: "2", LinkType.SF: "3"}


# ---------------------------------------------------------------------------------------------------
# Exports: CSV
# ---------------------------------------------------------------------------------------------------


def _us_date(day: date) -> str:
    return f"{day.month}/{day.day}/{day.year}"


def machai_csv(schedule: ProjectSchedule) -> str:
    """PlanExe's "machai" CSV: one row per task in WBS order, dates as m/d/YYYY, LF line endings."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MACHAI_COLUMNS)
    for t in schedule.tasks:
        writer.writerow(
            [
                t.id,
                t.name,
                "" if t.details == t.description else t.details,
                _us_date(t.start),
                _us_date(t.end),
                "0",
                t.predecessors[0].link.predecessor if t.predecessors else "",
                "PlanExe",
            ]
        )
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------
# Exports: Mermaid source
# ---------------------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    """Mermaid ends a task name at ':' and treats '#'/';' specially: write them as entity codes."""
    return "".join(f"#{ord(ch)};" if ch in "#:;" else ch for ch in one_line(text))


def tasks_by_start(schedule: ProjectSchedule) -> list[ScheduledTask]:
    return sorted(schedule.tasks, key=lambda t: t.timing.es)  # stable: WBS order breaks ties


def mermaid_gantt(schedule: ProjectSchedule) -> str:
    """The Mermaid ``gantt`` source: tasks by early start, a new section every ten tasks."""
    lines = [
        "gantt",
        f"    title {_mermaid_text(schedule.title)}",
        "    dateFormat YYYY-MM-DD",
        "    axisFormat %d %b",
        "    todayMarker off",
    ]
    ordered = tasks_by_start(schedule)
    for i, t in enumerate(ordered):
        if i % MERMAID_SECTION_SIZE == 0:
            last = min(i + MERMAID_SECTION_SIZE, len(ordered))
            lines.append(f"    section Tasks {i + 1}-{last}")
        lines.append(f"    {_mermaid_text(t.name)} :{t.start.isoformat()}, {t.days}d")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Exports: the interactive chart's data
# ---------------------------------------------------------------------------------------------------


def tooltip_html(schedule: ProjectSchedule, t: ScheduledTask) -> Markup:
    """PlanExe's ``custom_tooltip`` (HTML): every piece of task text escaped, line breaks as <br>."""
    lines = [Markup("<b>{}</b>").format(t.name)]
    lines.append(Markup("{} to {} ({} days)").format(t.start.isoformat(), t.end.isoformat(), t.days))
    waits_for = predecessor_summary(schedule, t)
    if waits_for:
        lines.append(Markup("Waits for: {}").format(waits_for))
    body = Markup("<br>").join(escape(line) for line in t.details.splitlines())
    return Markup("<br>").join(lines) + Markup("<br><br>") + body


def gantt_data(schedule: ProjectSchedule) -> dict[str, Any]:
    """The ``{tasks, links}`` data of the interactive chart, in PlanExe's DHTMLX shape plus a few fields.

    Added to PlanExe's task fields: ``end_date``, ``total_float``, ``critical``, ``details`` (plain
    text) and ``origin`` on links. Unlike PlanExe, summary tasks keep their dates (our viewer draws
    them from the schedule) and every link is kept, including those from a summary task.
    """
    tasks = []
    for t in schedule.tasks:
        item: dict[str, Any] = {
            "id": t.id,
            "text": t.name,
            "custom_tooltip": str(tooltip_html(schedule, t)),
            "start_date": t.start.isoformat(),
            "end_date": t.end.isoformat(),
            "duration": t.days,
            "progress": 0,
            "open": True,
            "meta": predecessor_summary(schedule, t),
            "parent": t.parent_id or 0,
            "total_float": int(t.timing.total_float),
            "critical": t.timing.critical,
            "details": t.details,
        }
        if t.is_summary:
            item["type"] = "project"
        tasks.append(item)
    links = [
        {
            "id": f"link_{i}",
            "source": p.link.predecessor,
            "target": p.link.successor,
            "type": DHTMLX_LINK_TYPES[p.link.type],
            "lag": int(p.link.lag),
            "origin": p.origin,
        }
        for i, p in enumerate(schedule.links, start=1)
    ]
    return {"tasks": tasks, "links": links}
