"""extract_constraints and the six constraint checks, with realistic answers replayed against the
recorded Hong Kong run (its prompt states a budget, a city, a release strategy and banned words)."""

from __future__ import annotations

import json

import pytest

from planexe_assets.core import STEP_BY_NAME, StepError, step_file
from planexe_assets.steps.constraints import (
    CHECKED_STAGES,
    EXTRACT_CONSTRAINTS_SYSTEM_PROMPT,
    NO_CONSTRAINTS_SUMMARY,
    ConstraintCheckResult,
    ConstraintExtractionResult,
    ConstraintItem,
    ConstraintStatus,
    OverallStatus,
    check_system_prompt,
    read_constraint_check,
    read_constraints,
    reconcile_check,
    render_constraint_check,
    render_constraints,
    render_constraints_overview,
)
from tests.steps.support_2026 import answer, constraint_files, run_step
from tests.support.replay import ReplayLLM, load_run_file, missing_from

RAW = step_file("extract_constraints", "raw")
MD = step_file("extract_constraints", "markdown")


def test_extraction_replays_and_renders_both_kinds():
    llm = ReplayLLM(answers=[answer("extract_constraints.json")])
    result = run_step("extract_constraints", llm)
    [call] = llm.calls
    assert call["messages"][0]["content"] == EXTRACT_CONSTRAINTS_SYSTEM_PROMPT.strip()
    assert "Banned words: metaverse" in call["messages"][1]["content"]
    raw = json.loads(result.files[RAW])
    constraints = read_constraints(raw)
    assert len(constraints) == 19 and raw["system_prompt"] == EXTRACT_CONSTRAINTS_SYSTEM_PROMPT.strip()
    markdown = result.files[MD]
    assert markdown.index("## Positive Constraints") < markdown.index("## Negative Constraints")
    assert "- Production budget of HK$470 million (about US$60 million)" in markdown
    assert '- Do not use the word "VR"' in markdown
    assert result.notes == {"constraints_positive": 10, "constraints_negative": 9}


def test_extraction_renderer_edge_cases():
    assert render_constraints(ConstraintExtractionResult(constraints=[])) == "No constraints identified.\n"
    only_negative = ConstraintExtractionResult(
        constraints=[ConstraintItem(classification="NEGATIVE", constraint_text="No meat")]
    )
    rendered = render_constraints(only_negative)
    assert "Positive" not in rendered and "## Negative Constraints\n\n- No meat" in rendered
    with pytest.raises(StepError, match="no 'constraints' list"):
        read_constraints({"items": []})
    with pytest.raises(StepError, match="not a valid constraint list"):
        read_constraints({"constraints": [{"classification": "maybe", "constraint_text": "x"}]})


def test_potential_levers_check_flags_the_violations():
    produced = constraint_files()
    llm = ReplayLLM(answers=[answer("potential_levers_constraint.json")])
    result = run_step("potential_levers_constraint", llm, produced)

    stage = CHECKED_STAGES[0]
    [call] = llm.calls
    system, user = call["messages"]
    assert system["content"] == check_system_prompt(stage) and "potential_levers" in system["content"]
    assert "File 'constraints.json'" in user["content"] and "File 'potential_levers.json'" in user["content"]
    assert "Partner with a global streaming platform" in user["content"]  # the stage output is sent

    step = STEP_BY_NAME["potential_levers_constraint"]
    data = json.loads(result.files[step.output("")])
    check = read_constraint_check(data)
    assert check.overall_status == OverallStatus.FAIL and len(check.violated) == 3
    assert data["metadata"]["stage_name"] == "potential_levers" and "corrections" not in data
    assert result.notes["constraints_violated"] == 3 and result.notes["overall_status"] == "fail"
    markdown = result.side_files[step.side_file("markdown")]
    assert markdown.startswith("**Potential levers against the prompt's constraints: ❌ fail**")
    assert "### Violated: Political themes remain implicit and atmospheric" in markdown
    assert markdown.index("❌ violated") < markdown.index("❔ unclear") < markdown.index("✅ satisfied")
    assert not missing_from([v.constraint_text for v in check.constraint_violations], markdown)


def test_selected_scenario_check_is_made_whole():
    """The realistic answer skipped one constraint: it is added as unclear, and the status still passes."""
    produced = constraint_files()
    llm = ReplayLLM(answers=[answer("selected_scenario_constraint.json")])
    result = run_step("selected_scenario_constraint", llm, produced)
    step = STEP_BY_NAME["selected_scenario_constraint"]
    data = json.loads(result.files[step.output("")])
    assert data["overall_status"] == "pass"
    assert [v["constraint_text"] for v in data["constraint_violations"]][-1] == "45-55 shooting days"
    assert data["constraint_violations"][-1]["status"] == "unclear"
    assert data["corrections"] == [
        "constraint not assessed by the model, recorded as unclear: 45-55 shooting days"
    ]
    assert "The Builder's Foundation" in llm.calls[0]["messages"][1]["content"]


@pytest.mark.parametrize("stage", CHECKED_STAGES, ids=lambda s: s.step_name)
def test_every_check_reads_its_stage(stage):
    """Each check sends its own stage's output, without the raw file's prompts and metadata."""
    produced = constraint_files()
    llm = ReplayLLM(answers=[answer("selected_scenario_constraint.json")])
    result = run_step(stage.step_name, llm, produced)
    user = llm.calls[0]["messages"][1]["content"]
    assert f"File '{stage.label}.json'" in user and '"system_prompt"' not in user and '"metadata"' not in user
    assert STEP_BY_NAME[stage.step_name].requires[stage.input_key] in STEP_BY_NAME
    assert result.notes["overall_status"] == "pass"


def test_no_constraints_means_no_call():
    produced = constraint_files()
    raw = json.loads(produced[RAW])
    raw["constraints"] = []
    produced[RAW] = json.dumps(raw)
    llm = ReplayLLM(answers=[])
    result = run_step("vital_few_levers_constraint", llm, produced)
    step = STEP_BY_NAME["vital_few_levers_constraint"]
    data = json.loads(result.files[step.output("")])
    assert llm.calls == [] and data["overall_status"] == "pass" and data["summary"] == NO_CONSTRAINTS_SUMMARY
    assert result.side_files[step.side_file("markdown")].startswith(
        "**Vital few levers against the prompt's constraints: ✅ pass**"
    )


def test_overall_status_follows_the_items():
    constraints = [ConstraintItem(classification="negative", constraint_text="No smoking on screen")]
    claimed_pass = ConstraintCheckResult(
        constraint_violations=[
            {
                "constraint_text": "No smoking on screen.",
                "constraint_classification": "negative",
                "status": "violated",
                "evidence": "the antagonist lights a cigarette",
                "explanation": "A character smokes.",
            }
        ],
        overall_status="pass",
    )
    fixed, notes = reconcile_check(claimed_pass, constraints)
    assert fixed.overall_status == OverallStatus.FAIL and len(fixed.constraint_violations) == 1
    assert notes == ["overall_status 'pass' did not match the items; set to 'fail'"]
    with pytest.raises(StepError, match="not a valid constraint check"):
        read_constraint_check({"constraint_violations": [], "overall_status": "maybe"})


def test_overview_lists_every_constraint_across_the_stages():
    constraints = read_constraints(answer("extract_constraints.json"))
    potential = ConstraintCheckResult.model_validate(answer("potential_levers_constraint.json"))
    selected, _ = reconcile_check(
        ConstraintCheckResult.model_validate(answer("selected_scenario_constraint.json")), constraints
    )
    overview = render_constraints_overview(
        constraints,
        {
            "potential_levers_constraint": potential,
            "vital_few_levers_constraint": None,
            "selected_scenario_constraint": selected,
        },
    )
    header, rule, *rows = overview.strip().splitlines()
    assert header == "| Constraint | Kind | Potential levers | Vital few levers | Selected scenario |"
    assert len(rows) == 19
    assert "| **Hybrid theatrical-plus-premium-VOD release strategy** |" not in overview
    assert rows[9].startswith(
        "| **Political themes remain implicit and atmospheric** | positive | ❌ violated | not checked | ✅ satisfied |"
    )
    assert render_constraint_check(selected, "Selected scenario").count(ConstraintStatus.UNCLEAR.value) >= 1


def test_checks_read_raw_files_of_the_recorded_stages():
    """The recorded run's stage files are what the checks are given (sanity of the fixture mapping)."""
    for stage in CHECKED_STAGES:
        upstream = STEP_BY_NAME[STEP_BY_NAME[stage.step_name].requires[stage.input_key]]
        assert load_run_file("20260310_hong_kong_game", upstream.output(stage.output_key)).strip()
