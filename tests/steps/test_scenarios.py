"""candidate_scenarios, select_scenario and scenarios_markdown, replayed against two recorded runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.scenarios import (
    ScenarioAnalysisResult,
    ScenarioSelectionResult,
    check_lever_settings,
    render_scenarios,
)
from tests.support.replay import ReplayLLM, all_strings, context_for, inputs_from_run, load_run_json
from tests.support.replay import missing_from as _missing

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
VITAL_RAW = step_file("focus_on_vital_few_levers", "raw")
CANDIDATES_RAW = step_file("candidate_scenarios", "raw")
CANDIDATES_CLEAN = step_file("candidate_scenarios", "clean")
SELECTED_RAW = step_file("select_scenario", "raw")
SELECTED_CLEAN = step_file("select_scenario", "clean")
SCENARIOS_MD = step_file("scenarios_markdown", "markdown")


def _replace_input(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    by_key = dict(inputs.items())
    old = by_key[key]
    by_key[key] = UpstreamFiles(step=old.step, contents={**old.contents, filename: text})
    return StepInputs(by_key)


def _run(step: str, llm, run: str, inputs: StepInputs | None = None):
    return step_function(step)(context_for(step, llm, run=run), inputs or inputs_from_run(step, run))


# --- candidate_scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_candidate_model_parses_recorded_output(run):
    clean = load_run_json(run, CANDIDATES_CLEAN)
    assert (
        ScenarioAnalysisResult.model_validate(load_run_json(run, CANDIDATES_RAW)["response"]).model_dump()
        == clean
    )
    result = ScenarioAnalysisResult.model_validate(clean)
    assert len(result.scenarios) == 3
    assert all(len(s.lever_settings) == 5 for s in result.scenarios)


@pytest.mark.parametrize("run", RUNS)
def test_candidate_step_replays_recorded_answer(run):
    clean = load_run_json(run, CANDIDATES_CLEAN)
    llm = ReplayLLM(answers=[clean])
    result = _run("candidate_scenarios", llm, run)

    result.check_against(STEP_BY_NAME["candidate_scenarios"])
    assert set(result.files) == {CANDIDATES_RAW, CANDIDATES_CLEAN}
    assert len(llm.calls) == 1
    assert json.loads(result.files[CANDIDATES_CLEAN]) == clean
    written = json.loads(result.files[CANDIDATES_RAW])
    assert written["scenarios"] == clean["scenarios"]
    assert written["lever_setting_problems"] == []
    user = llm.calls[0]["messages"][1]["content"]
    assert "File 'vital_levers.md':" in user
    for lever in load_run_json(run, VITAL_RAW)["levers"]:
        assert f"Lever: {lever['name']}" in user
        assert all(option in user for option in lever["options"])
    assert "lever_setting_problems" not in result.notes


def test_candidate_settings_check_reports_every_deviation():
    run = RUNS[0]
    levers = load_run_json(run, VITAL_RAW)["levers"]
    clean = load_run_json(run, CANDIDATES_CLEAN)
    first = clean["scenarios"][0]["lever_settings"]
    names = list(first)
    first[names[0]] = "Something the lever never offered."
    first["  " + names[1].upper() + " "] = first.pop(names[1])  # same lever, looser spelling: accepted
    first["Imaginary Lever"] = "x"
    del first[names[2]]
    clean["scenarios"] = clean["scenarios"][:2]
    problems = check_lever_settings(ScenarioAnalysisResult.model_validate(clean), levers)
    assert [p["problem"] for p in problems] == [
        "expected 3 scenarios, got 2",
        "value is not one of the lever's options",
        "unknown lever",
        "lever not set",
    ]
    assert problems[3]["lever"] == names[2]


def test_candidate_step_reports_offline_style_settings():
    run = RUNS[1]
    answer = {
        "analysis_title": "[offline] title",
        "core_tension": "[offline] tension",
        "scenarios": [
            {"scenario_name": "[offline] a", "strategic_logic": "x", "lever_settings": {"[offline] k": "v"}}
        ],
    }
    result = _run("candidate_scenarios", ReplayLLM(answers=[answer]), run)
    written = json.loads(result.files[CANDIDATES_RAW])
    # 1 count problem + 1 unknown lever + 5 unset levers
    assert len(written["lever_setting_problems"]) == 7
    assert result.notes["lever_setting_problems"] == 7


def test_candidate_step_rejects_a_vital_file_without_options():
    run = RUNS[0]
    vital = load_run_json(run, VITAL_RAW)
    del vital["levers"][0]["options"]
    inputs = _replace_input(
        inputs_from_run("candidate_scenarios", run), "levers_vital_few", VITAL_RAW, json.dumps(vital)
    )
    with pytest.raises(StepError, match="options"):
        _run("candidate_scenarios", ReplayLLM(answers=[]), run, inputs)


# --- select_scenario -------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_select_model_parses_recorded_output(run):
    clean = load_run_json(run, SELECTED_CLEAN)
    assert (
        ScenarioSelectionResult.model_validate(load_run_json(run, SELECTED_RAW)["response"]).model_dump()
        == clean
    )
    assert len(ScenarioSelectionResult.model_validate(clean).scenario_assessments) == 3


def test_select_model_rejects_a_score_out_of_range():
    clean = load_run_json(RUNS[0], SELECTED_CLEAN)
    clean["scenario_assessments"][0]["fit_score"] = 11
    with pytest.raises(ValidationError):
        ScenarioSelectionResult.model_validate(clean)


@pytest.mark.parametrize("run", RUNS)
def test_select_step_replays_recorded_answer(run):
    clean = load_run_json(run, SELECTED_CLEAN)
    llm = ReplayLLM(answers=[clean])
    result = _run("select_scenario", llm, run)

    result.check_against(STEP_BY_NAME["select_scenario"])
    assert set(result.files) == {SELECTED_RAW, SELECTED_CLEAN}
    assert len(llm.calls) == 1
    assert json.loads(result.files[SELECTED_CLEAN]) == clean
    written = json.loads(result.files[SELECTED_RAW])
    chosen = clean["final_choice"]["chosen_scenario_name"]
    assert written["selection_check"] == {
        "chosen_scenario_name": chosen,
        "matched_candidate": chosen,
        "assessments_for_unknown_scenarios": [],
        "candidates_not_assessed": [],
    }
    user = llm.calls[0]["messages"][1]["content"]
    assert "File 'vital_levers.json':" in user and "File 'scenarios.json':" in user
    assert all(s["scenario_name"] in user for s in load_run_json(run, CANDIDATES_CLEAN)["scenarios"])
    assert result.notes == {"chosen_scenario": chosen}


def test_select_step_reports_a_choice_that_matches_no_candidate():
    run = RUNS[1]
    clean = load_run_json(run, SELECTED_CLEAN)
    clean["final_choice"]["chosen_scenario_name"] = "The Invented Path"
    clean["scenario_assessments"][2]["scenario_name"] = "The Invented Path"
    result = _run("select_scenario", ReplayLLM(answers=[clean]), run)
    check = json.loads(result.files[SELECTED_RAW])["selection_check"]
    assert check["matched_candidate"] is None
    assert check["assessments_for_unknown_scenarios"] == ["The Invented Path"]
    assert check["candidates_not_assessed"] == ["The Consolidator's Approach"]
    assert result.notes["warning"] == "the chosen scenario matches no candidate"


# --- scenarios_markdown ----------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_scenarios_markdown_keeps_every_string(run):
    result = _run("scenarios_markdown", ReplayLLM(answers=[]), run)
    result.check_against(STEP_BY_NAME["scenarios_markdown"])
    markdown = result.files[SCENARIOS_MD]
    candidates = load_run_json(run, CANDIDATES_CLEAN)
    selection = load_run_json(run, SELECTED_CLEAN)
    strings = (
        all_strings(candidates)
        + all_strings(selection)
        + [name for s in candidates["scenarios"] for name in s["lever_settings"]]
    )
    assert not _missing(strings, markdown)

    chosen = selection["final_choice"]["chosen_scenario_name"]
    path, alternatives = markdown.split("## Alternative Paths")
    assert f"### {chosen}" in path
    others = [s["scenario_name"] for s in candidates["scenarios"] if s["scenario_name"] != chosen]
    assert all(f"### {name}" in alternatives for name in others) and f"### {chosen}" not in alternatives
    score = next(a["fit_score"] for a in selection["scenario_assessments"] if a["scenario_name"] == chosen)
    assert f"**Fit score:** {score}/10" in path
    assert result.notes == {"chosen_scenario": chosen}


def test_scenarios_markdown_states_an_unmatched_choice():
    run = RUNS[0]
    candidates = ScenarioAnalysisResult.model_validate(load_run_json(run, CANDIDATES_CLEAN))
    selection = load_run_json(run, SELECTED_CLEAN)
    selection["final_choice"]["chosen_scenario_name"] = "The Missing Path"
    selection["scenario_assessments"].append(
        {"scenario_name": "Stray", "fit_score": 4, "fit_assessment": "odd"}
    )
    markdown = render_scenarios(candidates, ScenarioSelectionResult.model_validate(selection))
    assert "\u201cThe Missing Path\u201d, which matches none of the candidate scenarios" in markdown
    alternatives = markdown.split("## Alternative Paths")[1]
    assert all(f"### {s.scenario_name}" in alternatives for s in candidates.scenarios)
    assert "Scores that matched no candidate" in markdown and "**Stray:** 4/10. odd" in markdown
    assert selection["final_choice"]["justification"].strip()[:40] in markdown


def test_scenarios_markdown_matches_a_loosely_spelled_choice():
    run = RUNS[1]
    candidates = ScenarioAnalysisResult.model_validate(load_run_json(run, CANDIDATES_CLEAN))
    selection = load_run_json(run, SELECTED_CLEAN)
    selection["final_choice"]["chosen_scenario_name"] = " the builder's foundation"
    markdown = render_scenarios(candidates, ScenarioSelectionResult.model_validate(selection))
    path = markdown.split("## Alternative Paths")[0]
    assert "### The Builder's Foundation" in path and "matches none" not in markdown


def test_scenarios_markdown_rejects_a_broken_selection():
    run = RUNS[1]
    inputs = _replace_input(
        inputs_from_run("scenarios_markdown", run),
        "selected_scenario",
        SELECTED_CLEAN,
        '{"final_choice": {}}',
    )
    with pytest.raises(StepError, match="not a valid scenario selection"):
        _run("scenarios_markdown", ReplayLLM(answers=[]), run, inputs)
