"""planning: pre_project_assessment and project_plan, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.common import compact_json_for_prompt
from planexe_assets.steps.planning import (
    GoalDefinition,
    PreProjectAssessment,
    PreProjectReviews,
    clean_assessment,
    go_no_go_verdict,
    render_project_plan,
)
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_file,
    load_run_json,
)
from tests.support.replay import (
    norm as _norm,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
PRE_RAW = step_file("pre_project_assessment", "raw")
PRE_CLEAN = step_file("pre_project_assessment", "clean")
PLAN_RAW = step_file("project_plan", "raw")
PLAN_MD = step_file("project_plan", "markdown")


def _with_input(inputs: StepInputs, key: str, contents: dict[str, str]) -> StepInputs:
    """A copy of ``inputs`` whose ``key`` upstream holds ``contents`` instead."""
    by_key = {k: inputs[k] for k in inputs}
    by_key[key] = UpstreamFiles(step=inputs[key].step, contents=contents)
    return StepInputs(by_key)


def _run(step_name: str, run: str, answers: list, *, fast: bool = False, inputs: StepInputs | None = None):
    llm = ReplayLLM(answers=answers)
    ctx = context_for(step_name, llm, run=run, fast=fast)
    result = step_function(step_name)(ctx, inputs if inputs is not None else inputs_from_run(step_name, run))
    result.check_against(STEP_BY_NAME[step_name])
    return result, llm


# ------------------------------------------------------------------------------------------------
# pre_project_assessment
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_expert_details_parse_recorded_output(run):
    raw = load_run_json(run, PRE_RAW)
    details = PreProjectReviews.model_validate(raw)
    assert len(details.expert1.feedback_item_list) == len(raw["expert1"]["feedback_item_list"]) >= 1
    assert details.expert2.expert_full_name == raw["expert2"]["expert_full_name"]
    assert details.go_no_go_recommendation == raw["go_no_go_recommendation"]


def test_expert_needs_at_least_one_feedback_item():
    raw = load_run_json(RUNS[0], PRE_RAW)
    raw["expert2"]["feedback_item_list"] = []
    with pytest.raises(ValidationError):
        PreProjectReviews.model_validate(raw)


@pytest.mark.parametrize("run", RUNS)
def test_clean_assessment_matches_recorded_clean_file(run):
    """Our flattening gives exactly PlanExe's clean JSON: both experts' items, expert1 first."""
    details = PreProjectReviews.model_validate(load_run_json(run, PRE_RAW))
    assert clean_assessment(details).model_dump(mode="json") == load_run_json(run, PRE_CLEAN)


@pytest.mark.parametrize("run", RUNS)
def test_pre_project_assessment_step_replays_recorded_answer(run):
    result, llm = _run("pre_project_assessment", run, [load_run_json(run, PRE_RAW)])

    assert set(result.files) == {PRE_RAW, PRE_CLEAN}
    assert len(llm.calls) == 1 and llm.calls[0]["response_model"] is PreProjectReviews
    assert llm.calls[0]["label"] == "pre_project_assessment"

    raw = json.loads(result.files[PRE_RAW])
    assert PreProjectReviews.model_validate(raw) == PreProjectReviews.model_validate(
        load_run_json(run, PRE_RAW)
    )
    assert {"metadata", "system_prompt", "user_prompt"} <= set(raw)
    assert raw["metadata"]["llm_model"] == "replay"
    assert json.loads(result.files[PRE_CLEAN]) == load_run_json(run, PRE_CLEAN)

    system, user = (m["content"] for m in llm.calls[0]["messages"])
    plan_text = load_run_file(run, step_file("setup")).strip()
    assert "2026" in system  # the plan's creation year, as context_for sets it
    assert plan_text not in system
    assert raw["system_prompt"] == system and raw["user_prompt"] == user
    for name in ("plan.txt", "strategic_decisions.md", "scenarios.md", "assumptions.md"):
        assert f"File '{name}':" in user
    assert plan_text in user
    assert load_run_file(run, step_file("consolidate_assumptions_markdown", "short")).strip() in user
    assert result.notes["feedback_items"] == len(json.loads(result.files[PRE_CLEAN])["feedback"])
    assert result.notes["go_no_go_verdict"] == "Proceed with Caution"


def test_pre_project_assessment_uses_the_plans_creation_year():
    run = RUNS[1]
    llm = ReplayLLM(answers=[load_run_json(run, PRE_RAW)])
    ctx = context_for("pre_project_assessment", llm, run=run)
    ctx.plan_created_at = datetime(2031, 1, 5, tzinfo=UTC)
    step_function("pre_project_assessment")(ctx, inputs_from_run("pre_project_assessment", run))
    system = llm.calls[0]["messages"][0]["content"]
    assert "2031" in system and "2026" not in system


def test_pre_project_assessment_fast_mode_changes_nothing():
    run = RUNS[0]
    slow, slow_llm = _run("pre_project_assessment", run, [load_run_json(run, PRE_RAW)])
    fast, fast_llm = _run("pre_project_assessment", run, [load_run_json(run, PRE_RAW)], fast=True)
    assert len(fast_llm.calls) == 1
    assert fast_llm.calls[0]["messages"] == slow_llm.calls[0]["messages"]
    assert fast.files == slow.files


def test_pre_project_assessment_rejects_an_empty_plan_before_calling_the_model():
    run = RUNS[0]
    inputs = _with_input(
        inputs_from_run("pre_project_assessment", run), "setup", {step_file("setup"): "  \n"}
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=step_file("setup")):
        step_function("pre_project_assessment")(context_for("pre_project_assessment", llm, run=run), inputs)
    assert llm.calls == []


def test_pre_project_assessment_reports_a_missing_upstream_file():
    run = RUNS[0]
    inputs = _with_input(inputs_from_run("pre_project_assessment", run), "scenarios_markdown", {})
    with pytest.raises(StepError, match=step_file("scenarios_markdown", "markdown")):
        step_function("pre_project_assessment")(
            context_for("pre_project_assessment", ReplayLLM(answers=[]), run=run), inputs
        )


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("Go", "Go"),
        ("Proceed with Caution. IP rights first.", "Proceed with Caution"),
        ("No-Go: the site is unsuitable.", "No Go"),
        ("Going ahead is unwise", "unclear"),
        ("", "unclear"),
    ],
)
def test_go_no_go_verdict(text, verdict):
    assert go_no_go_verdict(text) == verdict


# ------------------------------------------------------------------------------------------------
# project_plan
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_goal_definition_parses_recorded_output(run):
    raw = load_run_json(run, PLAN_RAW)
    plan = GoalDefinition.model_validate(raw)
    assert plan.goal_statement == raw["goal_statement"]
    assert (
        plan.regulatory_and_compliance_requirements.regulatory_bodies
        == (raw["regulatory_and_compliance_requirements"]["regulatory_bodies"])
    )


@pytest.mark.parametrize("run", RUNS)
def test_project_plan_markdown_keeps_every_string(run):
    plan = GoalDefinition.model_validate(load_run_json(run, PLAN_RAW))
    markdown = _norm(render_project_plan(plan))
    strings = all_strings(plan.model_dump(mode="json"))
    assert len(strings) > 40
    missing = [s for s in strings if _norm(s) not in markdown]
    assert missing == []


def test_project_plan_markdown_marks_empty_lists():
    plan = GoalDefinition.model_validate(load_run_json(RUNS[0], PLAN_RAW))
    plan.related_goals = []
    markdown = render_project_plan(plan)
    assert "## Related Goals\n\n_None._" in markdown


@pytest.mark.parametrize("run", RUNS)
def test_project_plan_step_replays_recorded_answer(run):
    result, llm = _run("project_plan", run, [load_run_json(run, PLAN_RAW)])

    assert set(result.files) == {PLAN_RAW, PLAN_MD}
    assert len(llm.calls) == 1 and llm.calls[0]["response_model"] is GoalDefinition
    raw = json.loads(result.files[PLAN_RAW])
    plan = GoalDefinition.model_validate(raw)
    assert plan == GoalDefinition.model_validate(load_run_json(run, PLAN_RAW))
    assert {"metadata", "system_prompt", "user_prompt"} <= set(raw)
    assert result.files[PLAN_MD] == render_project_plan(plan)

    system, user = (m["content"] for m in llm.calls[0]["messages"])
    assert load_run_file(run, step_file("setup")).strip() not in system
    clean = PreProjectAssessment.model_validate(load_run_json(run, PRE_CLEAN))
    assert f"File 'pre-project-assessment.json':\n{compact_json_for_prompt(clean)}" in user
    assert load_run_file(run, step_file("strategic_decisions_markdown", "markdown")).strip() in user


def test_project_plan_reads_our_own_pre_project_output():
    """Our clean assessment (not only PlanExe's) is what project_plan consumes."""
    run = RUNS[1]
    pre, _ = _run("pre_project_assessment", run, [load_run_json(run, PRE_RAW)])
    inputs = _with_input(inputs_from_run("project_plan", run), "preproject", pre.files)
    _, llm = _run("project_plan", run, [load_run_json(run, PLAN_RAW)], inputs=inputs)
    user = llm.calls[0]["messages"][1]["content"]
    assert compact_json_for_prompt(json.loads(pre.files[PRE_CLEAN])) in user


@pytest.mark.parametrize(
    ("clean_text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "should hold a JSON object"),
        ('{"combined_summary": "x", "feedback": []}', "go_no_go_recommendation"),
    ],
)
def test_project_plan_rejects_bad_pre_project_assessment(clean_text, message):
    run = RUNS[0]
    inputs = _with_input(
        inputs_from_run("project_plan", run),
        "preproject",
        {PRE_RAW: load_run_file(run, PRE_RAW), PRE_CLEAN: clean_text},
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=message):
        step_function("project_plan")(context_for("project_plan", llm, run=run), inputs)
    assert llm.calls == []
