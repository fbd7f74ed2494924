"""identify_task_dependencies and estimate_task_durations, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import split_notes
from planexe_assets.steps.durations import (
    DependencyMapping,
    TaskTimeEstimateDetail,
    TimeEstimates,
    dependency_issues,
    reconcile_chunk,
    render_task_dependencies,
    render_task_durations,
)
from planexe_assets.steps.wbs_tree import parse_level2_clean, parse_wbs_project
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json
from tests.support.replay import missing_from as _missing

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
DEPENDENCIES = step_file("identify_task_dependencies")
DURATIONS = step_file("estimate_task_durations")


def _with_file(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    upstream = by_key[key]
    by_key[key] = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs(by_key)


def _titles(run: str) -> dict[str, str]:
    phases = parse_level2_clean(load_run_json(run, step_file("wbs_level2", "clean")))
    return {p.id: p.major_phase_title for p in phases} | {
        s.id: s.description for p in phases for s in p.subtasks
    }


# ---------------------------------------------------------------------------------------------------
# Task dependencies
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_dependency_model_and_renderer(run):
    raw = load_run_json(run, DEPENDENCIES)
    mapping = DependencyMapping.model_validate(raw)
    assert len(mapping.task_dependency_details) == len(raw["task_dependency_details"]) > 0
    titles = _titles(run)
    markdown = render_task_dependencies(mapping, titles)
    assert not _missing(all_strings(mapping.model_dump()), markdown)
    assert "unknown task" not in markdown  # every id of the recorded answers is in the WBS


def test_dependency_issues_flag_what_the_recorded_silo_answer_got_wrong():
    mapping = DependencyMapping.model_validate(load_run_json(RUNS[0], DEPENDENCIES))
    issues = dependency_issues(mapping, _titles(RUNS[0]))
    # Four recorded rows give one reason for several prerequisites.
    assert len(issues) == 4 and all("explanations" in issue for issue in issues)
    assert (
        dependency_issues(
            DependencyMapping.model_validate(load_run_json(RUNS[1], DEPENDENCIES)), _titles(RUNS[1])
        )
        == []
    )


@pytest.mark.parametrize("run", RUNS)
def test_dependency_step_replays_recorded_answer(run):
    raw = load_run_json(run, DEPENDENCIES)
    llm = ReplayLLM(answers=[raw])
    ctx = context_for("identify_task_dependencies", llm, run=run)
    result = step_function("identify_task_dependencies")(
        ctx, inputs_from_run("identify_task_dependencies", run)
    )
    result.check_against(STEP_BY_NAME["identify_task_dependencies"])
    assert len(llm.calls) == 1
    record = json.loads(result.files[step_file("identify_task_dependencies")])
    assert record["task_dependency_details"] == raw["task_dependency_details"]
    assert {"metadata", "system_prompt", "user_prompt", "issues"} <= set(record)
    assert record["issues"] == result.notes["issues"]
    user = record["user_prompt"]
    for name in (
        "strategic_decisions.md",
        "scenarios.md",
        "project-plan.md",
        "data-collection.md",
        "work-breakdown-structure.json",
    ):
        assert f"File '{name}':" in user
    assert all(task_id in user for task_id in _titles(run))


def test_dependency_step_reports_invented_ids():
    run = RUNS[1]
    known = list(_titles(run))
    answer = {
        "task_dependency_details": [
            {
                "dependent_task_id": known[2],
                "depends_on_task_id_list": [known[1], "made-up-id", known[2]],
                "depends_on_task_explanation_list": ["a", "b", "c"],
            },
            {
                "dependent_task_id": "ghost",
                "depends_on_task_id_list": [],
                "depends_on_task_explanation_list": [],
            },
        ]
    }
    result = step_function("identify_task_dependencies")(
        context_for("identify_task_dependencies", ReplayLLM(answers=[answer]), run=run),
        inputs_from_run("identify_task_dependencies", run),
    )
    issues = result.notes["issues"]
    assert any("'made-up-id'" in i for i in issues)
    assert any("'ghost'" in i for i in issues)
    assert any("depending on itself" in i for i in issues)
    record = json.loads(result.files[step_file("identify_task_dependencies")])
    assert len(record["task_dependency_details"]) == 2  # kept as answered, not silently dropped
    markdown = render_task_dependencies(DependencyMapping.model_validate(answer), _titles(run))
    body, notes = split_notes(markdown)
    assert "unknown task `made-up-id`" in body and "depending on itself" not in body
    assert "- dependent task id 'ghost' is not in the WBS" in notes


def test_dependency_step_rejects_bad_level2():
    inputs = _with_file(
        inputs_from_run("identify_task_dependencies", RUNS[0]),
        "wbs_level2",
        step_file("wbs_level2", "clean"),
        '{"phases": []}',
    )
    with pytest.raises(StepError, match="expected a list of phases"):
        step_function("identify_task_dependencies")(
            context_for("identify_task_dependencies", ReplayLLM(answers=[])), inputs
        )


# ---------------------------------------------------------------------------------------------------
# Task durations
# ---------------------------------------------------------------------------------------------------


def _requested_ids(messages) -> list[str]:
    block = messages[-1]["content"].rsplit("File 'task-ids-to-estimate.txt':\n", 1)[1]
    return re.findall(r'"([^"]+)"', block)


def _recorded_estimator(run: str):
    """Answer each chunk with the recorded real estimates for exactly the ids it asks about."""
    by_id = {e["task_id"]: e for e in load_run_json(run, DURATIONS)}

    def responder(messages, model, label):
        return {"task_details": [by_id[task_id] for task_id in _requested_ids(messages)]}

    return responder


@pytest.mark.parametrize("run", RUNS)
def test_duration_model_parses_recorded_answers(run):
    for i in (1, 2):
        raw = load_run_json(run, step_file("estimate_task_durations", "chunk_raw", i))
        estimates = TimeEstimates.model_validate(raw)
        assert len(estimates.task_details) == len(raw["task_details"]) == 3
    aggregate = [TaskTimeEstimateDetail.model_validate(e) for e in load_run_json(run, DURATIONS)]
    root = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2")))
    markdown = render_task_durations(aggregate, root)
    assert not _missing(all_strings([e.model_dump() for e in aggregate]), markdown)
    assert "unknown task" not in markdown


def test_duration_model_tolerates_numbers_as_text_and_fractions():
    detail = TaskTimeEstimateDetail.model_validate(
        {
            "task_id": "a",
            "delay_risks": "r",
            "mitigation_strategy": "m",
            "days_min": "3",
            "days_max": 7.0,
            "days_realistic": 4.2,
        }
    )
    assert (detail.days_min, detail.days_realistic, detail.days_max) == (3, 5, 7)
    with pytest.raises(ValidationError):
        TaskTimeEstimateDetail.model_validate(
            {
                "task_id": "a",
                "delay_risks": "r",
                "mitigation_strategy": "m",
                "days_min": "soon",
                "days_max": 1,
                "days_realistic": 1,
            }
        )


@pytest.mark.parametrize("run", RUNS)
def test_duration_step_replays_recorded_answers(run):
    llm = ReplayLLM(responder=_recorded_estimator(run))
    ctx = context_for("estimate_task_durations", llm, run=run)
    mapped: list[int] = []
    original_map = ctx.map_concurrent

    def spy(fn, items, **kwargs):
        items = list(items)
        mapped.append(len(items))
        return original_map(fn, items, **kwargs)

    ctx.map_concurrent = spy
    result = step_function("estimate_task_durations")(ctx, inputs_from_run("estimate_task_durations", run))
    result.check_against(STEP_BY_NAME["estimate_task_durations"])
    root = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2")))
    n_chunks = -(-len(root.descendants()) // 3)
    assert mapped == [n_chunks] and len(llm.calls) == n_chunks
    assert sorted(result.side_files) == sorted(
        step_file("estimate_task_durations", "chunk_raw", i) for i in range(1, n_chunks + 1)
    )
    # Same ids, same order (pre-order below the root), same recorded estimates.
    assert json.loads(result.files[DURATIONS]) == load_run_json(run, DURATIONS)
    first = json.loads(result.side_files[step_file("estimate_task_durations", "chunk_raw", 1)])
    assert first["requested_task_ids"] == [n.id for n in root.descendants()[:3]]
    assert {"task_details", "metadata", "system_prompt", "user_prompt", "issues"} <= set(first)
    assert result.notes["failed_chunks"] == [] and result.notes["invented_task_ids"] == []
    assert result.notes["omitted_task_ids"] == []


def test_duration_step_fast_mode_runs_two_chunks():
    run = RUNS[0]
    llm = ReplayLLM(responder=_recorded_estimator(run))
    result = step_function("estimate_task_durations")(
        context_for("estimate_task_durations", llm, run=run, fast=True),
        inputs_from_run("estimate_task_durations", run),
    )
    assert len(llm.calls) == 2
    assert sorted(result.side_files) == [
        step_file("estimate_task_durations", "chunk_raw", 1),
        step_file("estimate_task_durations", "chunk_raw", 2),
    ]
    assert len(json.loads(result.files[DURATIONS])) == 6
    assert result.notes["skipped_in_fast_mode"] == 51 - 6


def test_duration_step_reports_invented_and_omitted_ids():
    run = RUNS[1]
    recorded = _recorded_estimator(run)

    def responder(messages, model, label):
        answer = recorded(messages, model, label)
        if label.endswith("chunk 2"):
            invented = dict(answer["task_details"][0], task_id="invented-id")
            answer["task_details"] = [invented] + answer["task_details"][1:]
        return answer

    result = step_function("estimate_task_durations")(
        context_for("estimate_task_durations", ReplayLLM(responder=responder), run=run),
        inputs_from_run("estimate_task_durations", run),
    )
    root = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2")))
    dropped = root.descendants()[3].id
    assert result.notes["invented_task_ids"] == ["invented-id"]
    assert result.notes["omitted_task_ids"] == [dropped]
    aggregate = json.loads(result.files[DURATIONS])
    assert len(aggregate) == len(root.descendants()) - 1
    assert {"invented-id", dropped}.isdisjoint(e["task_id"] for e in aggregate)
    chunk2 = json.loads(result.side_files[step_file("estimate_task_durations", "chunk_raw", 2)])
    assert chunk2["task_details"][0]["task_id"] == "invented-id"  # the raw answer is kept as given
    assert len(chunk2["issues"]) == 2


def test_reconcile_matches_decorated_ids_and_keeps_the_first_repeat():
    base = {"delay_risks": "r", "mitigation_strategy": "m", "days_min": 5, "days_max": 2, "days_realistic": 3}
    estimates = TimeEstimates.model_validate(
        {
            "task_details": [
                dict(base, task_id=" 'ABC' "),
                dict(base, task_id="abc", days_realistic=9),
                dict(base, task_id="def"),
            ]
        }
    )
    report = reconcile_chunk(4, ["abc", "def", "ghi"], estimates)
    assert [(d.task_id, d.days_realistic) for d in report.accepted] == [("abc", 3), ("def", 3)]
    assert report.repeated_ids == ["abc"] and report.omitted_ids == ["ghi"] and report.invented_ids == []
    assert sum("not in increasing order" in issue for issue in report.issues) == 2


def test_duration_step_reports_a_failed_chunk_and_fails_when_all_fail():
    run = RUNS[1]
    recorded = _recorded_estimator(run)

    def responder(messages, model, label):
        if label.endswith("chunk 3"):
            raise StepError("every model failed")
        return recorded(messages, model, label)

    result = step_function("estimate_task_durations")(
        context_for("estimate_task_durations", ReplayLLM(responder=responder), run=run),
        inputs_from_run("estimate_task_durations", run),
    )
    root = parse_wbs_project(load_run_json(run, step_file("wbs_project_level1_and_level2")))
    [failed] = result.notes["failed_chunks"]
    assert failed["chunk"] == 3 and failed["task_ids"] == [n.id for n in root.descendants()[6:9]]
    assert "every model failed" in failed["error"]
    assert step_file("estimate_task_durations", "chunk_raw", 3) not in result.side_files
    assert len(json.loads(result.files[DURATIONS])) == len(root.descendants()) - 3

    def always_fail(messages, model, label):
        raise StepError("offline")

    with pytest.raises(StepError, match="every task-duration chunk failed"):
        step_function("estimate_task_durations")(
            context_for("estimate_task_durations", ReplayLLM(responder=always_fail), run=run, fast=True),
            inputs_from_run("estimate_task_durations", run),
        )


def test_duration_step_rejects_bad_wbs():
    inputs = _with_file(
        inputs_from_run("estimate_task_durations", RUNS[0]),
        "wbs_project",
        step_file("wbs_project_level1_and_level2"),
        "[]",
    )
    with pytest.raises(StepError, match="wbs_project"):
        step_function("estimate_task_durations")(
            context_for("estimate_task_durations", ReplayLLM(answers=[])), inputs
        )
