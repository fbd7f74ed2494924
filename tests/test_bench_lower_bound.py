"""The benchmark's lower bound (bench/lower_bound.py) on hand-made call records."""

import json
from datetime import datetime, timedelta

import pytest

from bench.latency_server import (
    LatencyModel,
    LatencyModelError,
    latency_from_response_id,
    normalized_seed,
    request_schema,
)
from bench.lower_bound import Attempt, compute_lower_bound, step_chain_seconds
from planexe_assets.core import Step

T0 = datetime(2026, 1, 1, 12, 0, 0)


def row(stage: str, start: float, end: float, latency: float | None = None) -> dict:
    response_id = f"bench-00ff-{round(latency * 1_000_000)}" if latency is not None else "other-id"
    return {
        "stage": stage,
        "started_at": T0 + timedelta(seconds=start),
        "completed_at": T0 + timedelta(seconds=end),
        "duration_seconds": end - start,
        "response_metadata": {"response_id": response_id},
    }


GRAPH = [
    Step("a", "A", "s", "one"),
    Step("b", "B", "s", "several", requires={"": "a"}),
    Step("c", "C", "s", "one", requires={"": "a"}),
    Step("d", "D", "s", "one", requires={"b": "b", "c": "c"}),
]


def test_sequential_calls_add_up_and_overlapping_calls_do_not():
    sequential = [Attempt("b", 0, 1, 1.0), Attempt("b", 1.01, 3, 2.0), Attempt("b", 3.2, 3.5, 0.3)]
    assert step_chain_seconds(sequential) == pytest.approx(3.3)
    fan_out = [Attempt("b", 0, 2, 2.0), Attempt("b", 0.001, 1, 1.0), Attempt("b", 0.002, 3, 3.0)]
    assert step_chain_seconds(fan_out) == pytest.approx(3.0)
    # a first call, then a fan-out over its answer: 1 + the longest item
    mixed = [Attempt("b", 0, 1, 1.0), Attempt("b", 1.1, 2, 0.9), Attempt("b", 1.1, 3.1, 2.0)]
    assert step_chain_seconds(mixed) == pytest.approx(3.0)


def test_bound_is_the_longest_weighted_path_through_the_graph():
    rows = [
        row("a", 0, 1, 1.0),
        row("b", 1.5, 3.5, 2.0),  # b: two items at once (2 s and 1 s) ...
        row("b", 1.5, 2.5, 1.0),
        row("b", 3.6, 4.6, 1.0),  # ... then one more call
        row("c", 1.5, 6.5, 5.0),
        row("d", 7, 8, 1.0),
    ]
    bound = compute_lower_bound(rows, GRAPH)
    assert bound.step_seconds == pytest.approx({"a": 1.0, "b": 3.0, "c": 5.0, "d": 1.0})
    assert bound.seconds == pytest.approx(7.0)  # a -> c -> d
    assert bound.critical_path == ["a", "c", "d"]
    assert bound.calls == 6 and bound.serial_seconds == pytest.approx(11.0)


def test_applied_latency_wins_over_the_measured_duration():
    # The server says 0.5 s; the recorded duration (1 s) includes the client's own time.
    assert compute_lower_bound([row("a", 0, 1, 0.5)], GRAPH).seconds == pytest.approx(0.5)
    assert compute_lower_bound([row("a", 0, 1)], GRAPH).seconds == pytest.approx(1.0)


def test_unknown_stage_is_an_error():
    with pytest.raises(ValueError, match="not steps"):
        compute_lower_bound([row("zz", 0, 1, 1.0)], GRAPH)


def test_latency_model():
    assert LatencyModel.parse("fixed:2", scale=0.5).draw(123) == 1.0
    planexe = LatencyModel.parse("planexe")
    draws = sorted(planexe.draw(seed) for seed in range(4000))
    assert draws[len(draws) // 2] == pytest.approx(4.0, rel=0.08)
    assert draws[int(len(draws) * 0.9)] == pytest.approx(12.0, rel=0.1)
    assert planexe.draw(7) == planexe.draw(7)
    for bad in ("fixed:-1", "fixed:x", "gauss", ""):
        with pytest.raises(LatencyModelError):
            LatencyModel.parse(bad)
    assert latency_from_response_id("bench-abc-1500000") == 1.5
    assert latency_from_response_id("chatcmpl-1") is None


def test_same_request_with_other_ids_gets_the_same_seed():
    one = [
        {
            "role": "user",
            "content": "lever 1b2c3d4e-0000-4000-8000-00000000000a then 1b2c3d4e-0000-4000-8000-00000000000b",
        }
    ]
    two = [
        {
            "role": "user",
            "content": "lever 99999999-0000-4000-8000-00000000000a then 88888888-0000-4000-8000-00000000000b",
        }
    ]
    swapped = [
        {
            "role": "user",
            "content": "lever 88888888-0000-4000-8000-00000000000b then 99999999-0000-4000-8000-00000000000a",
        }
    ]
    assert normalized_seed(one, None) == normalized_seed(two, None) == normalized_seed(swapped, None)
    assert normalized_seed(one, {"type": "object"}) != normalized_seed(one, None)


def test_request_schema_in_every_structured_mode():
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert (
        request_schema({"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})
        == schema
    )
    assert request_schema({"response_format": {"type": "json_object", "schema": schema}}) == schema
    prompt = (
        "Reply with one JSON object. The object must be valid against this JSON schema:\n"
        + '{"type": "object"}'
    )
    assert request_schema({"messages": [{"role": "system", "content": prompt}]}) == {"type": "object"}
    assert request_schema({"messages": [{"role": "user", "content": "hi"}]}) is None


def test_latency_model_names():
    fixed = LatencyModel.parse("fixed:4", scale=0.5)
    assert (fixed.spec, fixed.short()) == ("fixed:4", "fixed 2 s")
    assert LatencyModel.parse(fixed.spec, fixed.scale) == fixed
    planexe = LatencyModel.parse("planexe", scale=0.5)
    assert planexe.spec == "planexe" and "median 2 s" in planexe.short()


def _wbs_request(server, schema: dict) -> dict:
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": "Break the project into phases."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "wbs", "schema": schema}},
    }
    reply, _latency = server.answer(body)
    return json.loads(reply["choices"][0]["message"]["content"])


def test_planexe_shape_gives_planexe_sized_fanouts():
    """The benchmark's answers have PlanExe's list lengths, so WBS level 3 fans out as widely as PlanExe's."""
    from bench.latency_server import SHAPES, LatencyServer
    from planexe_assets.steps.wbs import WorkBreakdownStructure

    schema = WorkBreakdownStructure.model_json_schema()
    sizes = {}
    for shape in ("planexe", "faker"):
        server = LatencyServer(LatencyModel.parse("fixed:0"), shape=shape)
        try:
            phases = _wbs_request(server, schema)["major_phase_details"]
            sizes[shape] = [len(phase["subtasks"]) for phase in phases]
        finally:
            server.server_close()
    low_phases, high_phases = SHAPES["planexe"]["major_phase_details"]
    low_tasks, high_tasks = SHAPES["planexe"]["subtasks"]
    assert low_phases <= len(sizes["planexe"]) <= high_phases
    assert all(low_tasks <= n <= high_tasks for n in sizes["planexe"])
    assert 30 <= sum(sizes["planexe"]) <= 42  # PlanExe's recorded runs: 29 and 44 level-3 tasks
    assert sum(sizes["faker"]) < sum(sizes["planexe"])
    with pytest.raises(ValueError, match="shape"):
        LatencyServer(LatencyModel.parse("fixed:0"), shape="huge")


def test_bench_homes_made_in_a_temporary_directory_are_deleted_on_close(tmp_path):
    from bench.environment import make_home

    made = make_home()
    assert made.owns_root and (made.root / "dagster" / "dagster.yaml").exists()
    made.close()
    assert not made.root.exists()
    given = make_home(root=tmp_path / "home")
    given.close()
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()  # a caller's directory is left alone


def test_free_stages_tell_what_a_step_adds_to_the_bound_and_slack_how_far_it_is_off_it():
    rows = [
        row("a", 0, 1, 1.0),
        row("b", 1.5, 3.5, 2.0),
        row("c", 1.5, 6.5, 5.0),
        row("d", 7, 8, 1.0),
    ]
    bound = compute_lower_bound(rows, GRAPH)
    assert bound.seconds == pytest.approx(7.0) and bound.critical_path == ["a", "c", "d"]
    # c is on the chain: free, the bound drops to the next longest path (a, b, d), not by all of c.
    without_c = compute_lower_bound(rows, GRAPH, free_stages=("c",))
    assert without_c.seconds == pytest.approx(4.0) and without_c.critical_path == ["a", "b", "d"]
    # b is off the chain: free or not, the bound is the same; it could take 3 s longer unnoticed.
    assert compute_lower_bound(rows, GRAPH, free_stages=("b",)).seconds == pytest.approx(7.0)
    assert bound.slack("b", "d") == pytest.approx(3.0) and bound.slack("c", "d") == pytest.approx(0.0)


def test_two_thousand_26_summary_names_the_added_steps_on_the_chain_and_the_checks_slack():
    from bench.__main__ import two_thousand_26_summary
    from planexe_assets.lifecycle.runner import pipeline_steps

    rows = [
        row("identify_purpose", 0, 1, 1.0),
        row("potential_levers", 1, 3, 2.0),
        row("potential_levers_constraint", 3, 3.5, 0.5),
        row("premortem", 3, 10, 7.0),
        row("self_audit", 10, 12, 2.0),
    ]
    bound = compute_lower_bound(rows, pipeline_steps())
    without = compute_lower_bound(
        rows, pipeline_steps(), free_stages=("potential_levers_constraint", "self_audit")
    )
    text = two_thousand_26_summary(bound, without)
    assert "lengthen the lower bound by 2.0 s" in text and "self_audit 2.0 s" in text
    assert "potential_levers_constraint" not in text.split("on the critical chain:")[1].split(".")[0]
    assert "the last of them is done" in text
