"""schedule: durations, links and CPM on the recorded real runs, random trees, and hostile text."""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import re
from datetime import date
from html.parser import HTMLParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planexe_assets.core import StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.cpm import Timing
from planexe_assets.steps.durations import DependencyMapping, TaskTimeEstimateDetail
from planexe_assets.steps.pages import frame_script
from planexe_assets.steps.schedule import (
    MACHAI_COLUMNS,
    _containment_warnings,
    axis_ticks,
    build_schedule,
    gantt_data,
    json_for_script,
    machai_csv,
    mermaid_gantt,
    parse_day_zero,
    render_interactive_page,
    render_overview_page,
    resolve_durations,
    run_schedule,
    unique_names,
    viewer_script,
)
from planexe_assets.steps.wbs_tree import WBSNode, parse_wbs_project
from tests.support.replay import ReplayLLM, context_for, inputs_from_run, load_run_file, load_run_json

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
FILES = {
    step_file("schedule", "mermaid_html"),
    step_file("schedule", "dhtmlx_html"),
    step_file("schedule", "machai_csv"),
}
US_DATE = re.compile(r"^[1-9]\d?/[1-9]\d?/\d{4}$")


def _run(run: str, inputs: StepInputs | None = None):
    llm = ReplayLLM(answers=[])
    result = run_schedule(context_for("schedule", llm, run=run), inputs or inputs_from_run("schedule", run))
    assert llm.calls == []  # no LLM step
    return result


def _with_file(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


def _recorded_schedule(run: str):
    root = parse_wbs_project(
        load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    )
    estimates = [
        TaskTimeEstimateDetail.model_validate(e)
        for e in load_run_json(run, step_file("estimate_task_durations"))
    ]
    deps = load_run_json(run, step_file("identify_task_dependencies"))
    mapping = DependencyMapping.model_validate({"task_dependency_details": deps["task_dependency_details"]})
    day_zero = parse_day_zero(load_run_file(run, step_file("start_time")))
    return root, build_schedule(root, estimates, mapping, day_zero, "Recorded")


def _csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


class PageParser(HTMLParser):
    """Tags with attributes, and the text of every <script> element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self._script: dict[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script, self._text = attributes, []

    def handle_data(self, data):
        if self._script is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._text)))
            self._script = None


def parse_page(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> PageParser:
    """Only our scripts (the viewer, the frame-height reporter, the JSON data), no event handlers, no
    URLs at all (the pages fetch nothing)."""
    parsed = parse_page(page)
    for script_attrs, text in parsed.scripts:
        if script_attrs.get("type") == "application/json":
            assert "<" not in text and ">" not in text and "&" not in text
        else:
            assert text.strip() in {str(viewer_script()).strip(), str(frame_script()).strip()}
    for tag, attrs in parsed.tags:
        for name in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name not in {"src", "href", "srcdoc", "action"}, (tag, name)
    return parsed


def _gantt_json(page: str) -> dict:
    parsed = parse_page(page)
    (text,) = [text for attrs, text in parsed.scripts if attrs.get("id") == "gantt-data"]
    return json.loads(text)


# ---------------------------------------------------------------------------------------------------
# The recorded real runs
# ---------------------------------------------------------------------------------------------------


def test_step_is_registered():
    assert step_function("schedule") is run_schedule


@pytest.mark.parametrize("run", RUNS)
def test_recorded_runs_produce_a_valid_schedule(run):
    result = _run(run)
    assert set(result.files) == FILES and result.side_files == {}
    root = parse_wbs_project(
        load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    )
    nodes = [node for node, _ in root.walk()]
    day_zero = parse_day_zero(load_run_file(run, step_file("start_time")))

    text = result.files[step_file("schedule", "machai_csv")]
    assert "\r" not in text and text.endswith("\n")
    assert text.splitlines()[0] == ",".join(MACHAI_COLUMNS)
    rows = _csv_rows(text)
    assert [r["project_key"] for r in rows] == [n.id for n in nodes]
    assert {r["project_progress"] for r in rows} == {"0"}
    assert {r["originating_department"] for r in rows} == {"PlanExe"}
    assert all(US_DATE.match(r["project_start_date"]) and US_DATE.match(r["project_end_date"]) for r in rows)
    assert rows[0]["project_start_date"] == f"{day_zero.month}/{day_zero.day}/{day_zero.year}"
    assert rows[0]["project_parent"] == ""
    assert len({r["project_name"].casefold() for r in rows}) == len(rows)

    # Against PlanExe's own export of the same run: same tasks, names, and predecessor column.
    reference = _csv_rows(load_run_file(run, step_file("schedule", "machai_csv")))
    assert [r["project_key"] for r in rows] == [r["project_key"] for r in reference]
    assert [r["project_name"] for r in rows] == [r["project_name"] for r in reference]
    assert [r["project_parent"] for r in rows] == [r["project_parent"] for r in reference]
    assert result.notes["tasks"] == len(nodes)
    assert result.notes["warnings"] == []


@pytest.mark.parametrize("run", RUNS)
def test_recorded_schedule_dates_respect_the_wbs_and_the_dependencies(run):
    root, schedule = _recorded_schedule(run)
    by_id = {t.id: t for t in schedule.tasks}
    for node, _ in root.walk():
        task = by_id[node.id]
        assert task.days >= 1 and task.end > task.start
        if node.children:
            kids = [by_id[c.id] for c in node.children]
            assert kids[0].start == task.start and kids[-1].end == task.end
            assert task.days == sum(k.days for k in kids)
            for before, after in itertools.pairwise(kids):
                assert after.start == before.end
    used = schedule.accepted_dependencies()
    assert used
    for verdict in used:
        assert by_id[verdict.dependent_id].start >= by_id[verdict.prerequisite_id].end
    for verdict in schedule.rejected_dependencies():
        assert by_id[verdict.prerequisite_id].end > by_id[verdict.dependent_id].start
    assert schedule.finish_day == by_id[root.id].days
    assert all(t.timing.total_float == 0 for t in schedule.tasks)  # a fully serial plan: all critical


def test_silo_dependency_that_contradicts_the_wbs_is_reported_everywhere():
    result = _run("20250321_silo")
    assert result.notes["dependencies_used"] == 17 and result.notes["dependencies_left_out"] == 1
    (rejected,) = result.notes["dependencies_rejected"]
    assert rejected["dependent"] == "921935c4-265d-4ae6-9c77-9c3a9ce74db6"
    assert "would create a cycle" in rejected["reason"]
    assert "Establish Societal Structure Paradigm" in rejected["reason"]
    for name, chart in (
        (step_file("schedule", "mermaid_html"), '<div class="chart">'),
        (step_file("schedule", "dhtmlx_html"), '<div class="gantt"'),
    ):
        page = result.files[name]
        # Listed in the closed notes at the end of the page, after the chart, not above it.
        notes = page[page.index('<details class="doc-notes">') :]
        assert page.index(chart) < page.index('<details class="doc-notes">')
        assert "<h3>Dependencies left out</h3>" in notes
        assert (
            "&#39;Define Social Control Mechanism&#39; waits for &#39;Establish Societal Structure Paradigm&#39;"
            in notes
        )
        assert (
            "1 left out. What the schedule left out or adjusted is listed in the notes at the end."
            in " ".join(page.split())
        )
    hong_kong = _run("20260310_hong_kong_game")
    assert hong_kong.notes["dependencies_left_out"] == 0 and hong_kong.notes["dependencies_used"] == 16
    assert "Dependencies left out" not in hong_kong.files[step_file("schedule", "mermaid_html")]


@pytest.mark.parametrize("run", RUNS)
def test_recorded_pages_are_offline_and_carry_the_data(run):
    result = _run(run)
    overview = result.files[step_file("schedule", "mermaid_html")]
    interactive = result.files[step_file("schedule", "dhtmlx_html")]
    for page in (overview, interactive):
        assert "http://" not in page and "https://" not in page
    parsed = assert_inert(overview)
    assert [text.strip() for _, text in parsed.scripts] == [str(frame_script()).strip()]
    assert (
        sum(1 for tag, attrs in parsed.tags if tag == "rect" and "bar" in attrs.get("class", ""))
        == result.notes["tasks"]
    )
    source = re.search(r'<pre class="mermaid-source">(.*?)</pre>', overview, re.S).group(1)
    assert source.startswith("gantt\n") and "dateFormat YYYY-MM-DD" in source and "todayMarker off" in source
    assert len(re.findall(r" :\d{4}-\d{2}-\d{2}, \d+d$", source, re.M)) == result.notes["tasks"]

    assert len(assert_inert(interactive).scripts) == 3
    data = _gantt_json(interactive)
    root = parse_wbs_project(
        load_run_json(run, step_file("wbs_project_level1_and_level2_and_level3", "full"))
    )
    assert [t["id"] for t in data["tasks"]] == [n.id for n, _ in root.walk()]
    summary_ids = {n.id for n, _ in root.walk() if n.children}
    assert {t["id"] for t in data["tasks"] if t.get("type") == "project"} == summary_ids
    assert data["tasks"][0]["parent"] == 0
    hierarchy = sum(1 for link in data["links"] if link["origin"] == "wbs")
    dependencies = sum(1 for link in data["links"] if link["origin"] == "dependency")
    assert dependencies == result.notes["dependencies_used"]
    assert hierarchy == sum(len(n.children) + 1 for n, _ in root.walk() if n.children)
    assert {link["type"] for link in data["links"]} == {"0", "1", "2"}
    assert all(t["meta"] for t in data["tasks"][1:])  # every task but the root waits for something


def test_gantt_viewer_script_can_be_inlined():
    assert "</" not in str(viewer_script())


# ---------------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------------


def _tree(spec) -> WBSNode:
    """``("id", [children...])`` -> WBSNode, descriptions equal to ids."""
    node_id, children = spec
    return WBSNode(id=node_id, description=node_id, children=[_tree(c) for c in children])


def _estimate(task_id: str, days: int) -> TaskTimeEstimateDetail:
    return TaskTimeEstimateDetail(
        task_id=task_id,
        delay_risks="r",
        mitigation_strategy="m",
        days_min=days,
        days_max=days,
        days_realistic=days,
    )


def test_parent_estimate_is_spread_exactly_over_its_tasks():
    root = _tree(("R", [("A", [("a1", []), ("a2", []), ("a3", []), ("a4", [])]), ("B", [])]))
    plan = resolve_durations(root, [_estimate("A", 10), _estimate("B", -1)])
    assert plan.days == {"R": 11, "A": 10, "a1": 3, "a2": 3, "a3": 2, "a4": 2, "B": 1}
    assert plan.unestimated() == ["R", "a1", "a2", "a3", "a4"]
    assert any("'A' is estimated at 10 days but its tasks add up to 4 days" in a for a in plan.adjustments)


def test_spread_is_proportional_and_reaches_the_leaves():
    root = _tree(("R", [("B", [("b1", []), ("b2", [])]), ("C", [])]))
    plan = resolve_durations(root, [_estimate("R", 20), _estimate("C", 2)])
    # Children 2 and 2 share 16 extra days evenly; B passes its 8 on to b1 and b2.
    assert plan.days == {"R": 20, "B": 10, "b1": 5, "b2": 5, "C": 10}
    uneven = resolve_durations(_tree(("R", [("x", []), ("y", [])])), [_estimate("R", 12), _estimate("y", 3)])
    assert uneven.days == {"R": 12, "x": 3, "y": 9}


def test_parent_estimate_below_its_tasks_is_overridden_and_reported():
    root = _tree(("R", [("A", [("a1", []), ("a2", [])])]))
    plan = resolve_durations(root, [_estimate("A", -1), _estimate("a1", 5), _estimate("a2", 0)])
    assert plan.days == {"R": 6, "A": 6, "a1": 5, "a2": 1}
    assert plan.adjustments == [
        "'A' is estimated at -1 (not applicable) but its tasks add up to 6 days; it lasts 6 days"
    ]


def test_unknown_and_repeated_estimates_are_reported_not_used():
    root = _tree(("R", [("A", [])]))
    plan = resolve_durations(root, [_estimate("A", 4), _estimate("A", 9), _estimate("ghost", 7)])
    assert plan.days == {"R": 4, "A": 4}
    assert len(plan.issues) == 2
    assert "more than one estimate" in plan.issues[0] and "'ghost'" in plan.issues[1]


# ---------------------------------------------------------------------------------------------------
# Random trees (property-based)
# ---------------------------------------------------------------------------------------------------

NAMES = ["Plan", "plan", "Build: phase #1", "Test; check", "Ship"]


@st.composite
def random_projects(draw):
    counter = itertools.count()

    def node(depth: int) -> dict:
        node_id = f"n{next(counter)}"
        width = draw(st.integers(min_value=0, max_value=4 if depth < 3 else 0))
        return {
            "id": node_id,
            "description": draw(st.sampled_from(NAMES)),
            "task_children": [node(depth + 1) for _ in range(width)],
        }

    root = WBSNode.from_dict(node(0))
    ids = [n.id for n, _ in root.walk()]
    estimated = draw(st.lists(st.sampled_from(ids), unique=True))
    estimates = [_estimate(i, draw(st.integers(min_value=-1, max_value=40))) for i in estimated]
    candidates = ids + ["ghost"]
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(candidates), st.lists(st.sampled_from(candidates), max_size=3)),
            max_size=8,
        )
    )
    mapping = DependencyMapping(
        task_dependency_details=[
            {
                "dependent_task_id": d,
                "depends_on_task_id_list": p,
                "depends_on_task_explanation_list": ["why"] * len(p),
            }
            for d, p in rows
        ]
    )
    return root, estimates, mapping


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_projects())
def test_random_projects_give_consistent_schedules(project):
    root, estimates, mapping = project
    schedule = build_schedule(root, estimates, mapping, date(2026, 1, 1), "Random")
    by_id = {t.id: t for t in schedule.tasks}
    estimate_of = {e.task_id: max(1, e.days_realistic) for e in reversed(estimates)}
    for node, _ in root.walk():
        task = by_id[node.id]
        assert task.days >= 1 and task.days >= estimate_of.get(node.id, 1)
        assert (task.end - task.start).days == task.days
        if node.children:
            kids = [by_id[c.id] for c in node.children]
            assert task.days == sum(k.days for k in kids)
            assert kids[0].start == task.start and kids[-1].end == task.end
            for before, after in itertools.pairwise(kids):
                assert after.start == before.end  # no task starts before its predecessor finishes
    # Accepted dependencies hold; rejected ones are exactly those the WBS order contradicts.
    for verdict in schedule.dependencies:
        ends_known = verdict.dependent_id in by_id and verdict.prerequisite_id in by_id
        if verdict.accepted:
            assert by_id[verdict.dependent_id].start >= by_id[verdict.prerequisite_id].end
        elif (
            ends_known and verdict.dependent_id != verdict.prerequisite_id and "repeats" not in verdict.reason
        ):
            assert "cycle" in verdict.reason
            assert by_id[verdict.prerequisite_id].end > by_id[verdict.dependent_id].start
        else:
            assert not ends_known or "itself" in verdict.reason or "repeats" in verdict.reason
    assert schedule.warnings == []
    assert all(t.timing.critical and t.timing.total_float == 0 for t in schedule.tasks)
    assert schedule.finish_day == by_id[root.id].days
    rows = _csv_rows(machai_csv(schedule))
    assert len({r["project_name"].casefold() for r in rows}) == len(rows)
    assert len(gantt_data(schedule)["tasks"]) == len(rows)


# ---------------------------------------------------------------------------------------------------
# Hostile text stays text
# ---------------------------------------------------------------------------------------------------

PAYLOADS = [
    "</script><script>alert(1)</script>",
    '<img src=x onerror="alert(2)">',
    '<a href="javascript:alert(3)">x</a> & <!-- c --> ]]>',
    "\u2028</SCRIPT >",
]


def _hostile_schedule():
    root = WBSNode(
        id="root",
        description=PAYLOADS[0],
        extra_fields={"final_deliverable": PAYLOADS[1]},
        children=[
            WBSNode(id="a", description=PAYLOADS[1], children=[WBSNode(id="a1", description=PAYLOADS[2])]),
            WBSNode(
                id="b",
                description=PAYLOADS[3],
                extra_fields={"detailed_description": PAYLOADS[0], "resources_needed": [PAYLOADS[2]]},
            ),
        ],
    )
    mapping = DependencyMapping(
        task_dependency_details=[
            {
                "dependent_task_id": "b",
                "depends_on_task_id_list": ["a1", PAYLOADS[0], "b"],
                "depends_on_task_explanation_list": [PAYLOADS[1], PAYLOADS[2], PAYLOADS[3]],
            }
        ]
    )
    return build_schedule(root, [_estimate(PAYLOADS[1], 3)], mapping, date(2026, 3, 1), PAYLOADS[0])


def test_payloads_in_every_text_field_are_inert():
    schedule = _hostile_schedule()
    assert len(schedule.rejected_dependencies()) == 2 and len(schedule.durations.issues) == 1
    overview = render_overview_page(schedule)
    interactive = render_interactive_page(schedule)
    assert len(assert_inert(overview).scripts) == 1
    assert len(assert_inert(interactive).scripts) == 3
    for page in (overview, interactive):
        assert "<img" not in page and "<a " not in page and "alert(1)</script>" not in page
    # The JSON survives intact: the payloads come back as the exact strings.
    data = _gantt_json(interactive)
    texts = json.dumps(data)
    assert data["tasks"][0]["text"] == PAYLOADS[0]
    assert "<" not in json_for_script(data) and "\u2028" not in json_for_script(data)
    assert PAYLOADS[1] in [t["text"] for t in data["tasks"]]
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in data["tasks"][1]["custom_tooltip"]
    assert "javascript:alert(3)" in texts  # kept as text, never as a URL
    # Mermaid: ':' ';' '#' cannot end a label or start a comment.
    source = mermaid_gantt(schedule)
    assert "javascript#58;alert(3)" in source and "javascript:" not in source
    assert all(line.count(" :") == 1 for line in source.splitlines() if re.search(r"\d+d$", line))


def test_machai_csv_quotes_hostile_text_and_round_trips():
    schedule = _hostile_schedule()
    rows = _csv_rows(machai_csv(schedule))
    assert rows[0]["project_name"] == PAYLOADS[0]
    assert "Final deliverable:\n" + PAYLOADS[1] in rows[0]["project_description"]
    assert rows[2]["project_name"] == " ".join(PAYLOADS[2].split())


# ---------------------------------------------------------------------------------------------------
# Helpers and failure paths
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"server_iso_utc": "2026-03-12T10:02:18Z"}', date(2026, 3, 12)),
        ('"2026-03-12T23:30:00-05:00"', date(2026, 3, 13)),  # converted to UTC
        ("2025-07-01T08:00:00.123456", date(2025, 7, 1)),  # FastAPI's bare utcnow() string
    ],
)
def test_day_zero_formats(text, expected):
    assert parse_day_zero(text) == expected


@pytest.mark.parametrize("text", ["{}", '{"server_iso_utc": "soon"}', "[1]", ""])
def test_bad_start_time_raises(text):
    with pytest.raises(StepError, match="start-time"):
        parse_day_zero(text)


@pytest.mark.parametrize(
    ("key", "filename", "text", "message"),
    [
        ("dependencies", step_file("identify_task_dependencies"), "[]", "task-dependencies file is list"),
        (
            "dependencies",
            step_file("identify_task_dependencies"),
            '{"task_dependency_details": 3}',
            "malformed",
        ),
        ("durations", step_file("estimate_task_durations"), "{}", "task-durations file is dict"),
        (
            "wbs_project123",
            step_file("wbs_project_level1_and_level2_and_level3", "full"),
            '{"wbs_project": {"id": 1}}',
            "WBS node",
        ),
        ("start_time", step_file("start_time"), "not json, not a date", "ISO 8601"),
        ("durations", step_file("estimate_task_durations"), "{not json", "not valid JSON"),
    ],
)
def test_bad_upstream_files_raise_step_error(key, filename, text, message):
    inputs = _with_file(inputs_from_run("schedule", RUNS[1]), key, filename, text)
    with pytest.raises(StepError, match=message):
        _run(RUNS[1], inputs)


def test_fast_mode_estimates_only_cover_a_few_tasks():
    run = RUNS[1]
    first_six = load_run_json(run, step_file("estimate_task_durations"))[:6]
    inputs = _with_file(
        inputs_from_run("schedule", run),
        "durations",
        step_file("estimate_task_durations"),
        json.dumps(first_six),
    )
    result = _run(run, inputs)
    assert result.notes["estimated_tasks"] == 6
    assert result.notes["tasks_without_estimate"] == result.notes["tasks"] - 6
    assert result.notes["days"] < _run(run).notes["days"]
    assert result.notes["warnings"] == []


def test_tasks_outside_their_parent_are_warned_about():
    _, schedule = _recorded_schedule(RUNS[1])
    parent, child = schedule.tasks[0], schedule.tasks[1]
    late = Timing(
        es=parent.timing.ef - 1, ef=parent.timing.ef + 5, ls=parent.timing.ef, lf=parent.timing.ef + 6
    )
    moved = dataclasses.replace(child, timing=late)
    assert _containment_warnings([parent, child]) == []
    (warning,) = _containment_warnings([parent, moved])
    assert f"'{child.name}'" in warning and f"runs outside its parent '{parent.name}'" in warning


def test_unique_names_number_every_repeat_case_insensitively():
    assert unique_names(["Plan", "plan", "Build", "Plan (1)", "  Build  "]) == [
        "Plan (2)",
        "plan (3)",
        "Build (1)",
        "Plan (1)",
        "Build (2)",
    ]


def test_axis_ticks_grow_coarser_with_the_span():
    short = axis_ticks(date(2026, 3, 10), 90)
    assert [label for _, label in short] == ["Apr 2026", "May 2026", "Jun 2026"]
    long = axis_ticks(date(2026, 3, 12), 13711)
    assert [label for _, label in long][:3] == ["2030", "2035", "2040"] and len(long) <= 14
    assert all(offset >= 0 for offset, _ in long)
