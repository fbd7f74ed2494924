"""Team steps: models, merges by id, review and the team markdown, against two recorded PlanExe runs.

The recorded runs let the merge be checked exactly: replaying PlanExe's recorded answers onto the
recorded role list of the previous step must give the recorded role list of the next step.
"""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from planexe_assets.core import STEP_BY_NAME, StepError, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.doc_notes import NOTES_MARKER, split_notes
from planexe_assets.steps.team import (
    ContractType,
    ContractTypeDetails,
    EnvironmentDetails,
    TeamDetails,
    TeamMemberList,
    TeamReview,
    render_roles,
    render_team,
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

FIND_RAW, FIND_CLEAN = step_file("find_team_members", "raw"), step_file("find_team_members", "clean")
CONTRACT_RAW, CONTRACT_CLEAN = (
    step_file("enrich_team_members_with_contract_type", "raw"),
    step_file("enrich_team_members_with_contract_type", "clean"),
)
STORY_RAW, STORY_CLEAN = (
    step_file("enrich_team_members_with_background_story", "raw"),
    step_file("enrich_team_members_with_background_story", "clean"),
)
ENV_RAW, ENV_CLEAN = (
    step_file("enrich_team_members_with_environment_info", "raw"),
    step_file("enrich_team_members_with_environment_info", "clean"),
)
REVIEW_RAW = step_file("review_team")
TEAM_MD = step_file("team_markdown")

# step -> (its response model, its recorded raw answer, the recorded clean list it must reproduce)
ENRICHMENTS = {
    "enrich_team_members_with_contract_type": (ContractTypeDetails, CONTRACT_RAW, CONTRACT_CLEAN),
    "enrich_team_members_with_background_story": (TeamDetails, STORY_RAW, STORY_CLEAN),
    "enrich_team_members_with_environment_info": (EnvironmentDetails, ENV_RAW, ENV_CLEAN),
}
UPSTREAM_KEY = {
    "enrich_team_members_with_contract_type": "find_team_members",
    "enrich_team_members_with_background_story": "enrich_team_members_with_contract_type",
    "enrich_team_members_with_environment_info": "enrich_team_members_with_background_story",
}


def _replace(inputs: StepInputs, key: str, filename: str, text: str) -> StepInputs:
    """The same inputs with one upstream file's text replaced."""
    upstream = inputs[key]
    changed = UpstreamFiles(step=upstream.step, contents={**upstream.contents, filename: text})
    return StepInputs({**{k: inputs[k] for k in inputs}, key: changed})


def _run(step_name: str, run: str, answers, inputs: StepInputs | None = None):
    llm = ReplayLLM(answers=answers)
    ctx = context_for(step_name, llm, run=run)
    result = step_function(step_name)(ctx, inputs or inputs_from_run(step_name, run))
    result.check_against(STEP_BY_NAME[step_name])
    return result, llm


# --- response models ------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_models_parse_recorded_outputs(run):
    found = TeamMemberList.model_validate(load_run_json(run, FIND_RAW))
    assert len(found.brainstorm_of_needed_team_members) == 8
    contract = ContractTypeDetails.model_validate(load_run_json(run, CONTRACT_RAW))
    assert all(isinstance(m.contract_type, ContractType) for m in contract.team_members)
    assert len(TeamDetails.model_validate(load_run_json(run, STORY_RAW)).team_members) == 8
    assert len(EnvironmentDetails.model_validate(load_run_json(run, ENV_RAW)).team_members) == 8
    review = TeamReview.model_validate(load_run_json(run, REVIEW_RAW))
    assert review.omissions and review.potential_improvements


def test_contract_type_must_be_one_of_the_enum_values():
    raw = load_run_json(RUNS[0], CONTRACT_RAW)
    raw["team_members"][0]["contract_type"] = "volunteer"
    with pytest.raises(ValidationError):
        ContractTypeDetails.model_validate(raw)


def test_an_empty_role_list_is_invalid_so_the_llm_layer_retries():
    with pytest.raises(ValidationError):
        TeamMemberList.model_validate({"brainstorm_of_needed_team_members": []})


# --- find_team_members ----------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_find_team_members_numbers_roles_in_python(run):
    raw = load_run_json(run, FIND_RAW)
    result, llm = _run("find_team_members", run, [raw])
    assert set(result.files) == {FIND_RAW, FIND_CLEAN}
    assert len(llm.calls) == 1
    # Same clean list as PlanExe produced from the same answer: ids 1..n, renamed keys.
    assert json.loads(result.files[FIND_CLEAN]) == load_run_json(run, FIND_CLEAN)
    written = json.loads(result.files[FIND_RAW])
    assert written["brainstorm_of_needed_team_members"] == raw["brainstorm_of_needed_team_members"]
    assert {"metadata", "system_prompt", "user_prompt"} <= set(written)
    user = llm.calls[0]["messages"][1]["content"]
    assert load_run_file(run, step_file("setup")).strip() in user
    for name in ("project-plan.md", "related-resources.md", "pre-project-assessment.json", "assumptions.md"):
        assert f"File '{name}':" in user
    assert load_run_file(run, step_file("related_resources", "markdown")).strip() in user
    assert result.notes["role_count"] == 8


# --- the three enrichments ------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("step_name", list(ENRICHMENTS))
def test_enrichment_reproduces_recorded_merge(step_name, run):
    model, raw_name, clean_name = ENRICHMENTS[step_name]
    raw = load_run_json(run, raw_name)
    result, llm = _run(step_name, run, [raw])
    step = STEP_BY_NAME[step_name]
    assert set(result.files) == {step.outputs["raw"], step.outputs["clean"]} == {raw_name, clean_name}
    assert len(llm.calls) == 1
    assert json.loads(result.files[clean_name]) == load_run_json(run, clean_name)

    written = json.loads(result.files[raw_name])
    assert written["team_members"] == model.model_validate(raw).model_dump(mode="json")["team_members"]
    assert written["id_issues"] == []
    assert result.notes["unknown_ids"] == [] and result.notes["roles_without_answer"] == []
    # The role list goes to the model as data, with its ids.
    user = llm.calls[0]["messages"][1]["content"]
    upstream_roles = load_run_json(run, STEP_BY_NAME[UPSTREAM_KEY[step_name]].outputs["clean"])
    assert "File 'team-members.json':" in user
    assert json.dumps(upstream_roles[0]["category"], ensure_ascii=False) in user
    assert upstream_roles[0]["category"] not in llm.calls[0]["messages"][0]["content"]


def test_unknown_duplicate_and_missing_ids_are_reported_not_dropped():
    run = RUNS[0]
    raw = load_run_json(run, CONTRACT_RAW)
    members = raw["team_members"]
    stray = {
        "id": 42,
        "contract_type": "agency_temp",
        "justification": "An answer for a role that does not exist.",
    }
    repeat = {"id": 1, "contract_type": "other", "justification": "A second opinion on role one."}
    raw["team_members"] = [*members[:-1], stray, repeat]  # role 8 unanswered
    result, _ = _run("enrich_team_members_with_contract_type", run, [raw])

    clean = json.loads(result.files[CONTRACT_CLEAN])
    assert [role["id"] for role in clean] == list(range(1, 9))
    assert clean[0]["contract_type"] == members[0]["contract_type"]  # first answer kept
    assert "contract_type" not in clean[7]
    issues = json.loads(result.files[CONTRACT_RAW])["id_issues"]
    assert [(i["kind"], i["id"]) for i in issues] == [
        ("unknown_id", 42),
        ("duplicate_id", 1),
        ("missing_answer", 8),
    ]
    assert issues[0]["answer"]["justification"] == stray["justification"]
    assert result.notes["unknown_ids"] == [42]
    assert result.notes["duplicate_ids"] == [1]
    assert result.notes["roles_without_answer"] == [8]

    # The next enrichment carries the issues forward and adds its own.
    inputs = inputs_from_run("enrich_team_members_with_background_story", run)
    inputs = _replace(
        inputs, "enrich_team_members_with_contract_type", CONTRACT_RAW, result.files[CONTRACT_RAW]
    )
    inputs = _replace(
        inputs, "enrich_team_members_with_contract_type", CONTRACT_CLEAN, result.files[CONTRACT_CLEAN]
    )
    story = load_run_json(run, STORY_RAW)
    story["team_members"] = story["team_members"][1:]  # role 1 unanswered
    later, _ = _run("enrich_team_members_with_background_story", run, [story], inputs)
    later_issues = json.loads(later.files[STORY_RAW])["id_issues"]
    assert later_issues[:3] == issues
    assert later_issues[3]["step"] == "enrich_team_members_with_background_story"
    assert (later_issues[3]["kind"], later_issues[3]["id"]) == ("missing_answer", 1)


def test_an_answer_with_only_unknown_ids_does_not_crash():
    # What an offline or confused model can do: schema-valid answers whose ids match no role.
    run = RUNS[1]
    answer = {
        "team_members": [
            {"id": 900 + i, "equipment_needs": "[offline] x", "facility_needs": "[offline] y"}
            for i in range(3)
        ]
    }
    result, _ = _run("enrich_team_members_with_environment_info", run, [answer])
    clean = json.loads(result.files[ENV_CLEAN])
    assert clean == load_run_json(run, STORY_CLEAN)
    assert result.notes["unknown_ids"] == [900, 901, 902]
    assert result.notes["roles_without_answer"] == list(range(1, 9))


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", "non-empty list"),
        ('[{"id": 1, "category": "A"}, {"id": 1, "category": "B"}]', "more than once"),
        ('[{"id": "1", "category": "A"}]', "integer id"),
        ("{broken", "not valid JSON"),
    ],
)
def test_bad_upstream_role_list_raises_step_error(text, message):
    run = RUNS[0]
    inputs = _replace(
        inputs_from_run("enrich_team_members_with_contract_type", run), "find_team_members", FIND_CLEAN, text
    )
    llm = ReplayLLM(answers=[load_run_json(run, CONTRACT_RAW)])
    with pytest.raises(StepError, match=message):
        step_function("enrich_team_members_with_contract_type")(
            context_for("enrich_team_members_with_contract_type", llm, run=run), inputs
        )
    assert llm.calls == []


# --- review_team ----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_review_team_sends_rendered_roles(run):
    raw = load_run_json(run, REVIEW_RAW)
    result, llm = _run("review_team", run, [raw])
    assert set(result.files) == {REVIEW_RAW}
    assert len(llm.calls) == 1
    written = json.loads(result.files[REVIEW_RAW])
    assert written["omissions"] == raw["omissions"]
    assert written["potential_improvements"] == raw["potential_improvements"]
    assert {"metadata", "system_prompt", "user_prompt"} <= set(written)
    user = _norm(llm.calls[0]["messages"][1]["content"])
    assert "File 'team-members.md':" in user
    for role in load_run_json(run, ENV_CLEAN):
        assert _norm(role["background_story"]) in user
        assert _norm(role["facility_needs"]) in user


# --- team_markdown --------------------------------------------------------------------------------


@pytest.mark.parametrize("run", RUNS)
def test_team_markdown_keeps_every_string_and_calls_no_model(run):
    llm = ReplayLLM(answers=[])
    ctx = context_for("team_markdown", llm, run=run)
    result = step_function("team_markdown")(ctx, inputs_from_run("team_markdown", run))
    result.check_against(STEP_BY_NAME["team_markdown"])
    assert llm.calls == []
    markdown = result.files[TEAM_MD]
    normalised = _norm(markdown)
    roles = load_run_json(run, ENV_CLEAN)
    review = load_run_json(run, REVIEW_RAW)
    strings = all_strings(roles) + all_strings(
        {k: review[k] for k in ("omissions", "potential_improvements")}
    )
    assert len(strings) > 80
    missing = [s for s in strings if _norm(s) not in normalised]
    assert not missing
    for position, role in enumerate(roles, start=1):
        assert f"## {position}. {_norm(role['category'])}" in markdown
    assert "## Omissions" in markdown and "## Potential improvements" in markdown
    assert NOTES_MARKER not in markdown
    assert "not provided" not in markdown


def test_team_markdown_reports_id_issues_and_missing_fields():
    roles = [
        {"id": 1, "category": "Pilot", "explanation": "Flies.", "consequences": "Grounded.", "count": "1"}
    ]
    review = TeamReview(omissions=[], potential_improvements=[])
    issues = [
        {
            "step": "enrich_team_members_with_contract_type",
            "kind": "unknown_id",
            "id": 7,
            "message": "the model answered for a role id that does not exist",
            "answer": {"contract_type": "agency_temp", "justification": "Seasonal work."},
        },
    ]
    markdown = render_team(roles, review, issues)
    body, notes = split_notes(markdown)
    assert "role id 7" not in body
    assert notes.startswith("### Answers that did not line up with the role list\n\n- Step ")
    assert "role id 7" in notes and "Seasonal work." in notes
    assert markdown.count("_not provided by the model_") == 6
    assert "_None named._" in markdown


def test_team_markdown_rejects_a_malformed_review():
    run = RUNS[0]
    inputs = _replace(
        inputs_from_run("team_markdown", run), "review_team", REVIEW_RAW, '{"omissions": "none"}'
    )
    with pytest.raises(StepError, match=step_file("review_team")):
        step_function("team_markdown")(context_for("team_markdown", ReplayLLM(answers=[]), run=run), inputs)


def test_render_roles_shows_contract_label_and_unknown_keys():
    roles = [{"id": 3, "category": "Cook", "contract_type": "part_time_employee", "shift": "nights"}]
    text = render_roles(roles)
    assert "## 1. Cook" in text
    assert "Part-time employee (`part_time_employee`)" in text
    assert "**shift:** nights" in text
