"""governance: the six phases and their consolidation, replayed against two recorded PlanExe runs."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from pydantic import BaseModel, ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.common import compact_json_for_prompt
from planexe_assets.steps.governance import (
    GOVERNANCE_SECTIONS,
    DecisionEscalationMatrix,
    GovernanceAudit,
    GovernanceBodies,
    GovernanceImplementationPlan,
    GovernanceMonitoring,
    GovernanceReview,
    consolidate_governance_markdown,
    render_escalation_matrix,
    render_governance_audit,
    render_governance_bodies,
    render_governance_review,
    render_implementation_plan,
    render_monitoring_progress,
)
from planexe_assets.steps.planning import GoalDefinition
from tests.support.replay import (
    ReplayLLM,
    all_strings,
    context_for,
    inputs_from_run,
    load_run_file,
    load_run_json,
)

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
BASE_BLOCKS = ("plan.txt", "strategic_decisions.md", "scenarios.md", "assumptions.md")


@dataclass(frozen=True)
class Phase:
    step: str
    raw: str
    markdown: str
    model: type[BaseModel]
    render: object
    extra_blocks: tuple[str, ...]  # the documents beyond BASE_BLOCKS this phase must show the model


PHASES = (
    Phase(
        "governance_phase1_audit",
        step_file("governance_phase1_audit", "raw"),
        step_file("governance_phase1_audit", "markdown"),
        GovernanceAudit,
        render_governance_audit,
        ("project-plan.md",),
    ),
    Phase(
        "governance_phase2_bodies",
        step_file("governance_phase2_bodies", "raw"),
        step_file("governance_phase2_bodies", "markdown"),
        GovernanceBodies,
        render_governance_bodies,
        ("project-plan.md", "governance-audit.md"),
    ),
    Phase(
        "governance_phase3_impl_plan",
        step_file("governance_phase3_impl_plan", "raw"),
        step_file("governance_phase3_impl_plan", "markdown"),
        GovernanceImplementationPlan,
        render_implementation_plan,
        ("project-plan.json", "governance-bodies.json"),
    ),
    Phase(
        "governance_phase4_decision_escalation_matrix",
        step_file("governance_phase4_decision_escalation_matrix", "raw"),
        step_file("governance_phase4_decision_escalation_matrix", "markdown"),
        DecisionEscalationMatrix,
        render_escalation_matrix,
        ("project-plan.json", "governance-bodies.json", "governance-implementation-plan.json"),
    ),
    Phase(
        "governance_phase5_monitoring_progress",
        step_file("governance_phase5_monitoring_progress", "raw"),
        step_file("governance_phase5_monitoring_progress", "markdown"),
        GovernanceMonitoring,
        render_monitoring_progress,
        (
            "project-plan.json",
            "governance-bodies.json",
            "governance-implementation-plan.json",
            "decision-escalation-matrix.json",
        ),
    ),
    Phase(
        "governance_phase6_extra",
        step_file("governance_phase6_extra", "raw"),
        step_file("governance_phase6_extra", "markdown"),
        GovernanceReview,
        render_governance_review,
        (
            "project-plan.json",
            "governance-audit.json",
            "governance-bodies.json",
            "governance-implementation-plan.json",
            "decision-escalation-matrix.json",
            "monitoring-progress.json",
        ),
    ),
)
PHASE_BY_STEP = {p.step: p for p in PHASES}
ALL_BLOCK_NAMES = {name for p in PHASES for name in p.extra_blocks} | set(BASE_BLOCKS)
CONSOLIDATED = step_file("consolidate_governance")


def _norm(text: str) -> str:
    # Table cells escape pipes; compare the text a reader sees.
    return " ".join(text.replace("\\|", "|").split())


def _with_input(inputs: StepInputs, key: str, contents: dict[str, str]) -> StepInputs:
    by_key = {k: inputs[k] for k in inputs}
    by_key[key] = UpstreamFiles(step=inputs[key].step, contents=contents)
    return StepInputs(by_key)


def _run(step_name: str, run: str, answers: list, *, fast: bool = False, inputs: StepInputs | None = None):
    llm = ReplayLLM(answers=answers)
    ctx = context_for(step_name, llm, run=run, fast=fast)
    result = step_function(step_name)(ctx, inputs if inputs is not None else inputs_from_run(step_name, run))
    result.check_against(STEP_BY_NAME[step_name])
    return result, llm


def _block_names(user_prompt: str) -> set[str]:
    return {name for name in ALL_BLOCK_NAMES if f"File '{name}':\n" in user_prompt}


# ------------------------------------------------------------------------------------------------
# Response models and renderers against the recorded real outputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.step)
def test_models_parse_recorded_output(phase, run):
    raw = load_run_json(run, phase.raw)
    value = phase.model.model_validate(raw)
    expected = {k: v for k, v in raw.items() if k != "metadata"}
    assert value.model_dump(mode="json") == expected


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.step)
def test_renderer_keeps_every_string(phase, run):
    value = phase.model.model_validate(load_run_json(run, phase.raw))
    markdown = phase.render(value)
    assert markdown.strip()
    normalised = _norm(markdown)
    strings = all_strings(value.model_dump(mode="json"))
    assert len(strings) >= 5
    assert [s for s in strings if _norm(s) not in normalised] == []


@pytest.mark.parametrize(
    ("model", "field"),
    [
        (GovernanceAudit, "corruption_list"),
        (GovernanceBodies, "internal_governance_bodies"),
        (GovernanceImplementationPlan, "governance_implementation_plan"),
        (DecisionEscalationMatrix, "decision_escalation_matrix"),
        (GovernanceMonitoring, "monitoring_progress"),
        (GovernanceReview, "tough_questions"),
    ],
)
def test_models_reject_an_empty_main_list(model, field):
    phase = next(p for p in PHASES if p.model is model)
    raw = load_run_json(RUNS[0], phase.raw)
    raw[field] = []
    with pytest.raises(ValidationError):
        model.model_validate(raw)


def test_implementation_step_without_dependencies_says_so():
    raw = load_run_json("20250321_silo", step_file("governance_phase3_impl_plan", "raw"))
    plan = GovernanceImplementationPlan.model_validate(raw)
    assert plan.governance_implementation_plan[0].dependencies == []
    first_step = render_implementation_plan(plan).split("## Step 2")[0]
    assert "nothing; it can start at once" in first_step


def test_multiline_list_entries_stay_inside_their_item():
    review = GovernanceReview(
        governance_validation_checks=["first line\nsecond line"], tough_questions=["q?"], summary="s"
    )
    assert "1. first line\n   second line" in render_governance_review(review)


# ------------------------------------------------------------------------------------------------
# The phase steps, replaying the recorded answers
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.step)
def test_phase_step_replays_recorded_answer(phase, run):
    result, llm = _run(phase.step, run, [load_run_json(run, phase.raw)])

    assert set(result.files) == {phase.raw, phase.markdown}
    assert result.side_files == {}
    assert len(llm.calls) == 1
    call = llm.calls[0]
    assert call["response_model"] is phase.model and call["label"] == phase.step

    raw = json.loads(result.files[phase.raw])
    value = phase.model.model_validate(raw)
    assert value == phase.model.model_validate(load_run_json(run, phase.raw))
    assert {"metadata", "system_prompt", "user_prompt"} <= set(raw)
    assert result.files[phase.markdown] == phase.render(value)

    system, user = (m["content"] for m in call["messages"])
    assert raw["system_prompt"] == system and raw["user_prompt"] == user
    plan_text = load_run_file(run, step_file("setup")).strip()
    assert plan_text in user and plan_text not in system
    assert _block_names(user) == set(BASE_BLOCKS) | set(phase.extra_blocks)
    # Raw upstream JSON reaches the prompt without its bookkeeping.
    assert '"metadata"' not in user and '"system_prompt"' not in user


@pytest.mark.parametrize("phase", PHASES, ids=lambda p: p.step)
def test_phase_fast_mode_changes_nothing(phase):
    run = RUNS[1]
    slow, slow_llm = _run(phase.step, run, [load_run_json(run, phase.raw)])
    fast, fast_llm = _run(phase.step, run, [load_run_json(run, phase.raw)], fast=True)
    assert len(fast_llm.calls) == 1
    assert fast_llm.calls[0]["messages"] == slow_llm.calls[0]["messages"]
    assert fast.files == slow.files


def test_phase3_shows_the_bodies_and_project_plan_as_compact_json():
    run = RUNS[0]
    _, llm = _run("governance_phase3_impl_plan", run, [load_run_json(run, PHASES[2].raw)])
    user = llm.calls[0]["messages"][1]["content"]
    bodies = GovernanceBodies.model_validate(load_run_json(run, step_file("governance_phase2_bodies", "raw")))
    plan = GoalDefinition.model_validate(load_run_json(run, step_file("project_plan", "raw")))
    assert f"File 'governance-bodies.json':\n{compact_json_for_prompt(bodies)}" in user
    assert f"File 'project-plan.json':\n{compact_json_for_prompt(plan)}" in user


def test_phase1_shows_the_project_plan_markdown():
    run = RUNS[1]
    _, llm = _run("governance_phase1_audit", run, [load_run_json(run, PHASES[0].raw)])
    user = llm.calls[0]["messages"][1]["content"]
    assert load_run_file(run, step_file("project_plan", "markdown")).strip() in user


def test_escalation_targets_outside_the_bodies_are_reported():
    """An answer naming bodies that do not exist (as the offline provider would) is reported, not dropped."""
    run = RUNS[1]
    invented = {
        "decision_escalation_matrix": [
            {
                "issue_type": "[offline] spending spree",
                "escalation_level": "[offline] Council of Elders",
                "approval_process": "[offline] vote",
                "rationale": "[offline] too big",
                "negative_consequences": "[offline] ruin",
            },
            {
                "issue_type": "Deadlock",
                "escalation_level": "Project Steering Committee",
                "approval_process": "Vote",
                "rationale": "Needs arbitration",
                "negative_consequences": "Delays",
            },
        ]
    }
    result, _ = _run("governance_phase4_decision_escalation_matrix", run, [invented])
    assert result.notes["escalation_levels_not_among_bodies"] == ["[offline] Council of Elders"]
    markdown = result.files[step_file("governance_phase4_decision_escalation_matrix", "markdown")]
    assert "[offline] Council of Elders" in markdown and "Project Steering Committee" in markdown


def test_recorded_escalation_to_a_plain_role_is_noted():
    run = "20260310_hong_kong_game"
    phase = PHASE_BY_STEP["governance_phase4_decision_escalation_matrix"]
    result, _ = _run(phase.step, run, [load_run_json(run, phase.raw)])
    assert result.notes["escalation_levels_not_among_bodies"] == ["Head of Production"]


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        ({step_file("governance_phase2_bodies", "raw"): "{oops"}, "not valid JSON"),
        ({step_file("governance_phase2_bodies", "raw"): "[]"}, "should hold a JSON object"),
        ({step_file("governance_phase2_bodies", "raw"): '{"bodies": []}'}, "internal_governance_bodies"),
        ({}, "was not loaded"),
    ],
)
def test_phase3_rejects_bad_phase2_output_before_calling_the_model(contents, message):
    run = RUNS[0]
    inputs = _with_input(
        inputs_from_run("governance_phase3_impl_plan", run), "governance_phase2_bodies", contents
    )
    llm = ReplayLLM(answers=[])
    with pytest.raises(StepError, match=message):
        step_function("governance_phase3_impl_plan")(
            context_for("governance_phase3_impl_plan", llm, run=run), inputs
        )
    assert llm.calls == []


def test_phase6_rejects_a_project_plan_that_is_not_a_goal_definition():
    run = RUNS[1]
    inputs = _with_input(
        inputs_from_run("governance_phase6_extra", run),
        "project_plan",
        {
            step_file("project_plan", "raw"): '{"goal_statement": "x"}',
            step_file("project_plan", "markdown"): "## Goal\n\nx\n",
        },
    )
    with pytest.raises(StepError, match="005-1-project_plan_raw.json.*GoalDefinition"):
        step_function("governance_phase6_extra")(
            context_for("governance_phase6_extra", ReplayLLM(answers=[]), run=run), inputs
        )


def test_phase2_rejects_an_empty_audit_markdown():
    run = RUNS[0]
    inputs = _with_input(
        inputs_from_run("governance_phase2_bodies", run),
        "governance_phase1_audit",
        {
            step_file("governance_phase1_audit", "raw"): "{}",
            step_file("governance_phase1_audit", "markdown"): "\n",
        },
    )
    with pytest.raises(StepError, match="006-2-governance_phase1_audit.md.*empty"):
        step_function("governance_phase2_bodies")(
            context_for("governance_phase2_bodies", ReplayLLM(answers=[]), run=run), inputs
        )


# ------------------------------------------------------------------------------------------------
# Consolidation
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_consolidate_recorded_governance_markdown(run):
    result, llm = _run("consolidate_governance", run, [])
    assert llm.calls == []
    assert set(result.files) == {CONSOLIDATED}
    text = result.files[CONSOLIDATED]
    positions = [text.index(f"# {title}\n") for _, title in GOVERNANCE_SECTIONS]
    assert positions == sorted(positions) and positions[0] == 0
    for phase in PHASES:
        assert load_run_file(run, phase.markdown).strip() in text
    assert result.notes["sections"] == 6


def test_consolidate_markdown_layout():
    text = consolidate_governance_markdown([("A", "\nfirst\n\n"), ("B", "second")])
    assert text == "# A\n\nfirst\n\n# B\n\nsecond\n"


def test_consolidate_rejects_an_empty_phase():
    run = RUNS[0]
    inputs = _with_input(
        inputs_from_run("consolidate_governance", run),
        "governance_phase5_monitoring_progress",
        {step_file("governance_phase5_monitoring_progress", "markdown"): ""},
    )
    with pytest.raises(StepError, match=step_file("governance_phase5_monitoring_progress", "markdown")):
        step_function("consolidate_governance")(
            context_for("consolidate_governance", ReplayLLM(answers=[]), run=run), inputs
        )


# ------------------------------------------------------------------------------------------------
# The whole stage on our own outputs
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_stage_runs_on_its_own_outputs(run):
    """Each phase reads what our previous phases wrote (not PlanExe's files), ending in the consolidation."""
    produced: dict[str, dict[str, str]] = {}
    for step_name in [p.step for p in PHASES] + ["consolidate_governance"]:
        inputs = inputs_from_run(step_name, run)
        for key, upstream in STEP_BY_NAME[step_name].requires.items():
            if upstream in produced:
                inputs = _with_input(inputs, key, produced[upstream])
        phase = PHASE_BY_STEP.get(step_name)
        answers = [load_run_json(run, phase.raw)] if phase else []
        result, llm = _run(step_name, run, answers, inputs=inputs)
        assert len(llm.calls) == len(answers)
        produced[step_name] = result.files

    consolidated = produced["consolidate_governance"][CONSOLIDATED]
    for phase in PHASES:
        assert produced[phase.step][phase.markdown].strip() in consolidated
    bodies = GovernanceBodies.model_validate(load_run_json(run, step_file("governance_phase2_bodies", "raw")))
    assert all(f"{body.name}" in consolidated for body in bodies.internal_governance_bodies)
