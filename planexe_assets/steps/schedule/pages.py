"""The schedule's two HTML pages: the static overview (an inline SVG chart drawn here, with the
Mermaid source beside it) and the interactive Gantt (our viewer script and the chart data as JSON).

Both work offline (no CDN, no network request), extend the shared page template (``steps/pages.py``)
and, inside the report's frame, report their height so the frame shows the whole chart
(``static/frame_height.js``). Notes come last, in a closed block (``doc_notes``).
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from markupsafe import Markup

from planexe_assets.steps.doc_notes import notes_context
from planexe_assets.steps.pages import frame_script, render_page, static_script
from planexe_assets.steps.schedule.exports import (
    MERMAID_SECTION_SIZE,
    gantt_data,
    mermaid_gantt,
    tasks_by_start,
)
from planexe_assets.steps.schedule.model import ProjectSchedule

# ---------------------------------------------------------------------------------------------------
# The static SVG overview
# ---------------------------------------------------------------------------------------------------

LABEL_WIDTH = 380
CHART_WIDTH = 900
ROW_HEIGHT = 20
AXIS_HEIGHT = 34
LABEL_CHARS = 56
TICK_STEPS_MONTHS = (1, 3, 6, 12, 24, 60, 120, 240)
MAX_TICKS = 14


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def axis_ticks(start: date, days: int) -> list[tuple[int, str]]:
    """Month-aligned ticks (day offset, label) over ``days`` days: at most ``MAX_TICKS``, coarser as needed."""
    end = start + timedelta(days=max(days, 1))
    months_span = (end.year - start.year) * 12 + end.month - start.month + 1
    step = next((s for s in TICK_STEPS_MONTHS if months_span / s <= MAX_TICKS), TICK_STEPS_MONTHS[-1])
    first = date(start.year, start.month, 1)
    if step >= 12:
        first = date(start.year - start.year % (step // 12), 1, 1)
    ticks = []
    tick = first
    while tick <= end:
        if tick >= start:
            ticks.append(((tick - start).days, tick.strftime("%Y") if step >= 12 else tick.strftime("%b %Y")))
        tick = _add_months(tick, step)
    return ticks


def overview_geometry(schedule: ProjectSchedule) -> dict[str, Any]:
    """Coordinates for the static SVG chart (numbers only; the template escapes all text)."""
    span = max(schedule.finish_day, 1)
    scale = CHART_WIDTH / span
    rows = []
    for i, t in enumerate(tasks_by_start(schedule)):
        x = LABEL_WIDTH + float(t.timing.es) * scale
        label = t.name if len(t.name) <= LABEL_CHARS else t.name[: LABEL_CHARS - 1].rstrip() + "…"
        rows.append(
            {
                "y": AXIS_HEIGHT + i * ROW_HEIGHT,
                "section_start": i % MERMAID_SECTION_SIZE == 0,
                "band": (i // MERMAID_SECTION_SIZE) % 2,
                "x": round(x, 2),
                "width": round(max(t.days * scale, 1.5), 2),
                "label": label,
                "title": (
                    f"{t.name}\n{t.start.isoformat()} to {t.end.isoformat()} ({t.days} days, "
                    f"float {t.timing.total_float} days)"
                ),
                "summary": t.is_summary,
                "critical": t.timing.critical,
            }
        )
    ticks = [
        {"x": round(LABEL_WIDTH + offset * scale, 2), "label": label}
        for offset, label in axis_ticks(schedule.day_zero, schedule.finish_day)
    ]
    return {
        "width": LABEL_WIDTH + CHART_WIDTH + 20,
        "height": AXIS_HEIGHT + len(rows) * ROW_HEIGHT + 10,
        "label_width": LABEL_WIDTH,
        "row_height": ROW_HEIGHT,
        "axis_height": AXIS_HEIGHT,
        "section_size": MERMAID_SECTION_SIZE,
        "rows": rows,
        "ticks": ticks,
    }


# ---------------------------------------------------------------------------------------------------
# The interactive page's script parts
# ---------------------------------------------------------------------------------------------------


def json_for_script(data: Any) -> Markup:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` become ``\\u`` escapes,
    so no text can close the element or open a comment; line/paragraph separators are escaped too."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(raw, escaped)
    return Markup(text)


def viewer_script() -> Markup:
    """Our Gantt viewer (``planexe_assets/static/gantt_viewer.js``), inlined so the page works offline."""
    return static_script("gantt_viewer.js")


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------


def _page_context(schedule: ProjectSchedule) -> dict[str, Any]:
    return {
        "title": schedule.title,
        "summary": schedule.summary(),
        "frame_script": frame_script(),
        **notes_context(schedule.report_lines()),
    }


def render_overview_page(schedule: ProjectSchedule) -> str:
    return render_page(
        "schedule_overview.html.j2",
        **_page_context(schedule),
        chart=overview_geometry(schedule),
        mermaid_source=mermaid_gantt(schedule),
    )


def render_interactive_page(schedule: ProjectSchedule) -> str:
    return render_page(
        "schedule_interactive.html.j2",
        **_page_context(schedule),
        data_json=json_for_script(gantt_data(schedule)),
        viewer_script=viewer_script(),
    )
