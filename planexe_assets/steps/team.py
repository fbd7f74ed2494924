"""Team: which roles the project needs, who might fill them, and what they need to work.

Five steps build one role list, then a sixth renders it:

1. ``find_team_members`` asks the model for the roles and numbers them 1..n in Python.
2. ``enrich_team_members_with_contract_type`` adds how each role should be engaged.
3. ``enrich_team_members_with_background_story`` adds an example person and typical activities.
4. ``enrich_team_members_with_environment_info`` adds equipment and facility needs.
5. ``review_team`` asks for missing roles and improvements to the whole team.
6. ``team_markdown`` renders roles and review as ``013-team.md`` (no model call).

Each enrichment is one call covering every role; the answers are merged back by the integer id. The
model may answer for an id that is no role, answer twice for one id, or skip a role. None of these
is dropped quietly: every such case becomes an entry in ``id_issues`` of the step's raw file (the
unmatched answer kept in full), later enrichment steps carry earlier issues forward, and the team
markdown lists them all in its closed notes at the end (``doc_notes``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from planexe_assets.core import Reader, StepContext, StepError, StepInputs, StepResult, UpstreamFiles
from planexe_assets.steps import register
from planexe_assets.steps.common import bundle, compact_json_for_prompt, dump_json, messages, raw_record
from planexe_assets.steps.doc_notes import notes_markdown

# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------

FIND_TEAM_MEMBERS_PROMPT = """
You staff projects. Read the documents in the user message and decide which roles are needed to
carry this plan from start to finish. Think in job categories, not individual people, and cover the
whole plan: leadership, the specialist work, compliance, money, communication and the people who
keep things running. Aim for six to ten roles, the most essential first, without near-duplicates.

For each role give:
- job_category_title: a short, recognisable title for the role.
- short_explanation: why this plan needs the role and what it is responsible for.
- people_needed: how many people, as free text; give a range and what it depends on when the
  number is uncertain (for example "2-3, depending on the number of sites").
- consequences_of_not_having_this_role: what would go wrong if nobody filled it.
"""

CONTRACT_TYPE_PROMPT = """
You advise on how to engage the people in a project team. The user message holds background
documents and the file team-members.json: the roles already chosen, each with an integer id.

For every role in team-members.json decide the most fitting form of engagement, given how long the
role is needed, how central it is, the budget and the location:
- id: the role's id, copied exactly from team-members.json.
- contract_type: one of full_time_employee, part_time_employee, independent_contractor,
  agency_temp, other.
- justification: one or two sentences on why that form fits this role in this plan.

Answer once for each role, use only ids that appear in team-members.json and do not invent roles.
"""

BACKGROUND_STORY_PROMPT = """
You bring a project team to life. The user message holds background documents and the file
team-members.json: the roles already chosen, each with an integer id.

For every role in team-members.json imagine one plausible person who could fill it in this project:
- id: the role's id, copied exactly from team-members.json.
- job_background_story_of_employee: a short story of that person: name, where they come from,
  education, the experience that makes them fit this particular plan, and what they bring to it.
- typical_job_activities: what the role does day to day in this project, concretely.

Keep the people varied and believable for the plan's location and field. Answer once for each role,
use only ids that appear in team-members.json and do not invent roles.
"""

ENVIRONMENT_INFO_PROMPT = """
You plan the working environment of a project team. The user message holds background documents
and the file team-members.json: the roles already chosen, each with an integer id and a description.

For every role in team-members.json state what it needs in order to work:
- id: the role's id, copied exactly from team-members.json.
- equipment_needs: the tools, devices, software and vehicles the role needs, especially costly or
  specialised ones.
- facility_needs: the spaces the role needs: offices, laboratories, workshops, sites, storage.

Be specific to this plan rather than generic. Answer once for each role, use only ids that appear in
team-members.json and do not invent roles.
"""

REVIEW_TEAM_PROMPT = """
You review the staffing of a project. The user message holds background documents and the file
team-members.md: the proposed roles with their engagement, example people, activities and needs.

Judge whether this team can actually deliver the plan, and report:
- omissions: roles, skills or responsibilities the plan needs that no role covers.
- potential_improvements: changes that would make the existing roles clearer, better matched to the
  plan or less risky.

Give the three to five most important items in each list. For each item:
- issue: a short title.
- explanation: why it matters for this plan.
- recommendation: a concrete, affordable change. Small teams cannot hire for everything, so prefer
  extending existing roles or bringing in part-time help where that is enough.
"""

# ------------------------------------------------------------------------------------------------
# Response models
# ------------------------------------------------------------------------------------------------


class TeamMember(BaseModel):
    job_category_title: str = Field(description="Short, recognisable title of the role.")
    short_explanation: str = Field(description="Why the plan needs this role and what it is responsible for.")
    people_needed: str = Field(
        description="Headcount as free text, with a range and its driver if uncertain."
    )
    consequences_of_not_having_this_role: str = Field(description="What goes wrong if nobody fills the role.")


class TeamMemberList(BaseModel):
    brainstorm_of_needed_team_members: list[TeamMember] = Field(
        min_length=1, description="The roles the plan needs, most essential first."
    )


class ContractType(StrEnum):
    FULL_TIME_EMPLOYEE = "full_time_employee"
    PART_TIME_EMPLOYEE = "part_time_employee"
    INDEPENDENT_CONTRACTOR = "independent_contractor"
    AGENCY_TEMP = "agency_temp"
    OTHER = "other"


CONTRACT_TYPE_LABELS = {
    ContractType.FULL_TIME_EMPLOYEE: "Full-time employee",
    ContractType.PART_TIME_EMPLOYEE: "Part-time employee",
    ContractType.INDEPENDENT_CONTRACTOR: "Independent contractor",
    ContractType.AGENCY_TEMP: "Agency temp",
    ContractType.OTHER: "Other arrangement",
}


class ContractTypeAssignment(BaseModel):
    id: int = Field(description="Id of the role, copied from team-members.json.")
    contract_type: ContractType = Field(description="How the role should be engaged.")
    justification: str = Field(description="Why that form of engagement fits the role in this plan.")


class ContractTypeDetails(BaseModel):
    team_members: list[ContractTypeAssignment] = Field(min_length=1, description="One entry per role.")


class BackgroundStory(BaseModel):
    id: int = Field(description="Id of the role, copied from team-members.json.")
    job_background_story_of_employee: str = Field(
        description="Story of one plausible person in the role: name, origin, education, fitting experience."
    )
    typical_job_activities: str = Field(description="What the role does day to day in this project.")


class TeamDetails(BaseModel):
    team_members: list[BackgroundStory] = Field(min_length=1, description="One entry per role.")


class EnvironmentNeeds(BaseModel):
    id: int = Field(description="Id of the role, copied from team-members.json.")
    equipment_needs: str = Field(description="Tools, devices, software and vehicles the role needs.")
    facility_needs: str = Field(
        description="Spaces the role needs: offices, labs, workshops, sites, storage."
    )


class EnvironmentDetails(BaseModel):
    team_members: list[EnvironmentNeeds] = Field(min_length=1, description="One entry per role.")


class TeamIssue(BaseModel):
    issue: str = Field(description="Short title of the gap or improvement.")
    explanation: str = Field(description="Why it matters for this plan.")
    recommendation: str = Field(description="A concrete, affordable change.")


class TeamReview(BaseModel):
    omissions: list[TeamIssue] = Field(description="Roles, skills or responsibilities no role covers.")
    potential_improvements: list[TeamIssue] = Field(
        description="Changes that would improve the existing roles."
    )


# ------------------------------------------------------------------------------------------------
# Shared context and the role list
# ------------------------------------------------------------------------------------------------

ID_ISSUES_KEY = "id_issues"


def _context_blocks(inputs: StepInputs) -> list[tuple[str, str]]:
    """The documents every team step shows the model, in the order a reader would want them."""
    return [
        ("plan.txt", inputs["setup"].text()),
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("assumptions.md", inputs["consolidate_assumptions_markdown"].text("short")),
        ("pre-project-assessment.json", compact_json_for_prompt(inputs["preproject"].json("clean"))),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("related-resources.md", inputs["related_resources"].text("markdown")),
    ]


def load_roles(upstream: UpstreamFiles) -> list[dict[str, Any]]:
    """The role list of an upstream team step; each role a dict with a unique integer ``id``."""
    data = upstream.json("clean")
    name = upstream.filename("clean")
    if not isinstance(data, list) or not data:
        raise StepError(f"{name} must hold a non-empty list of team roles, got {type(data).__name__}")
    seen: set[int] = set()
    for position, role in enumerate(data, start=1):
        if not isinstance(role, dict):
            raise StepError(f"{name}: entry {position} is not an object")
        role_id = role.get("id")
        if not isinstance(role_id, int) or isinstance(role_id, bool):
            raise StepError(f"{name}: entry {position} has no integer id (got {role_id!r})")
        if role_id in seen:
            raise StepError(f"{name}: role id {role_id} appears more than once")
        seen.add(role_id)
    return data


def inherited_issues(upstream: UpstreamFiles) -> list[dict[str, Any]]:
    """Id issues recorded by an earlier enrichment step (recorded PlanExe runs have none)."""
    raw = upstream.json("raw")
    issues = raw.get(ID_ISSUES_KEY, []) if isinstance(raw, dict) else []
    return [issue for issue in issues if isinstance(issue, dict)] if isinstance(issues, list) else []


def merge_by_id(
    roles: Sequence[dict[str, Any]],
    answers: Sequence[BaseModel],
    field_map: dict[str, str],
    stage: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Copy the answer fields onto the roles with the same id.

    ``field_map`` maps answer field -> role key. Returns the merged roles (new dicts, input order)
    and the issues: answers for unknown ids, repeated answers for one id, and roles left unanswered.
    """
    merged = [dict(role) for role in roles]
    by_id = {role["id"]: role for role in merged}
    answered: set[int] = set()
    issues: list[dict[str, Any]] = []
    for answer in answers:
        values = answer.model_dump(mode="json")
        answer_id = values.pop("id")
        if answer_id not in by_id:
            issues.append(
                _issue(
                    stage,
                    "unknown_id",
                    answer_id,
                    "the model answered for a role id that does not exist",
                    values,
                )
            )
            continue
        if answer_id in answered:
            issues.append(
                _issue(
                    stage,
                    "duplicate_id",
                    answer_id,
                    "the model answered twice for this role; the first answer was kept",
                    values,
                )
            )
            continue
        answered.add(answer_id)
        for answer_field, role_key in field_map.items():
            by_id[answer_id][role_key] = values[answer_field]
    for role in merged:
        if role["id"] not in answered:
            issues.append(
                _issue(stage, "missing_answer", role["id"], "the model gave no answer for this role", None)
            )
    return merged, issues


def _issue(
    stage: str, kind: str, role_id: int, message: str, answer: dict[str, Any] | None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"step": stage, "kind": kind, "id": role_id, "message": message}
    if answer is not None:
        issue["answer"] = answer
    return issue


# ------------------------------------------------------------------------------------------------
# Step functions
# ------------------------------------------------------------------------------------------------


@register("find_team_members", models={"raw": TeamMemberList, "clean": Reader(load_roles, takes="upstream")})
def run_find_team_members(ctx: StepContext, inputs: StepInputs) -> StepResult:
    user_prompt = bundle(*_context_blocks(inputs))
    reply = ctx.llm.structured(
        messages(FIND_TEAM_MEMBERS_PROMPT, user_prompt), TeamMemberList, label="find_team_members"
    )
    # Ids are ours, not the model's: 1-based positions, stable for the rest of the team steps.
    roles = [
        {
            "id": position,
            "category": member.job_category_title,
            "explanation": member.short_explanation,
            "consequences": member.consequences_of_not_having_this_role,
            "count": member.people_needed,
        }
        for position, member in enumerate(reply.value.brainstorm_of_needed_team_members, start=1)
    ]
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, FIND_TEAM_MEMBERS_PROMPT.strip(), user_prompt)),
            step.outputs["clean"]: dump_json(roles),
        },
        notes={"role_count": len(roles)},
    )


@dataclass(frozen=True)
class _Enrichment:
    """What differs between the three enrichment steps."""

    upstream_key: str
    system_prompt: str
    response_model: type[ContractTypeDetails] | type[TeamDetails] | type[EnvironmentDetails]
    field_map: dict[str, str]  # answer field -> role key in the clean role list


_ENRICHMENTS: dict[str, _Enrichment] = {
    "enrich_team_members_with_contract_type": _Enrichment(
        upstream_key="find_team_members",
        system_prompt=CONTRACT_TYPE_PROMPT,
        response_model=ContractTypeDetails,
        field_map={"contract_type": "contract_type", "justification": "contract_type_justification"},
    ),
    "enrich_team_members_with_background_story": _Enrichment(
        upstream_key="enrich_team_members_with_contract_type",
        system_prompt=BACKGROUND_STORY_PROMPT,
        response_model=TeamDetails,
        field_map={
            "typical_job_activities": "typical_job_activities",
            "job_background_story_of_employee": "background_story",
        },
    ),
    "enrich_team_members_with_environment_info": _Enrichment(
        upstream_key="enrich_team_members_with_background_story",
        system_prompt=ENVIRONMENT_INFO_PROMPT,
        response_model=EnvironmentDetails,
        field_map={"equipment_needs": "equipment_needs", "facility_needs": "facility_needs"},
    ),
}


def _run_enrichment(ctx: StepContext, inputs: StepInputs) -> StepResult:
    stage = ctx.step.name
    spec = _ENRICHMENTS[stage]
    upstream = inputs[spec.upstream_key]
    roles = load_roles(upstream)
    earlier = inherited_issues(upstream) if spec.upstream_key in _ENRICHMENTS else []
    user_prompt = bundle(*_context_blocks(inputs), ("team-members.json", compact_json_for_prompt(roles)))
    reply = ctx.llm.structured(messages(spec.system_prompt, user_prompt), spec.response_model, label=stage)
    merged, issues = merge_by_id(roles, reply.value.team_members, spec.field_map, stage)
    for issue in issues:
        ctx.logger.warning("%s: role id %s: %s", stage, issue["id"], issue["message"])
    raw = raw_record(reply, spec.system_prompt.strip(), user_prompt, **{ID_ISSUES_KEY: earlier + issues})
    step = ctx.step
    return StepResult(
        files={step.outputs["raw"]: dump_json(raw), step.outputs["clean"]: dump_json(merged)},
        notes={
            "role_count": len(merged),
            "unknown_ids": [i["id"] for i in issues if i["kind"] == "unknown_id"],
            "duplicate_ids": [i["id"] for i in issues if i["kind"] == "duplicate_id"],
            "roles_without_answer": [i["id"] for i in issues if i["kind"] == "missing_answer"],
        },
    )


@register(
    "enrich_team_members_with_contract_type",
    models={
        "raw": ContractTypeDetails,
        "clean": Reader(load_roles, takes="upstream"),
    },
)
def run_enrich_team_members_with_contract_type(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_enrichment(ctx, inputs)


@register(
    "enrich_team_members_with_background_story",
    models={
        "raw": TeamDetails,
        "clean": Reader(load_roles, takes="upstream"),
    },
)
def run_enrich_team_members_with_background_story(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_enrichment(ctx, inputs)


@register(
    "enrich_team_members_with_environment_info",
    models={
        "raw": EnvironmentDetails,
        "clean": Reader(load_roles, takes="upstream"),
    },
)
def run_enrich_team_members_with_environment_info(ctx: StepContext, inputs: StepInputs) -> StepResult:
    return _run_enrichment(ctx, inputs)


@register("review_team", models={"": TeamReview})
def run_review_team(ctx: StepContext, inputs: StepInputs) -> StepResult:
    roles = load_roles(inputs["enrich_team_members_with_environment_info"])
    user_prompt = bundle(*_context_blocks(inputs), ("team-members.md", render_roles(roles)))
    reply = ctx.llm.structured(messages(REVIEW_TEAM_PROMPT, user_prompt), TeamReview, label="review_team")
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(raw_record(reply, REVIEW_TEAM_PROMPT.strip(), user_prompt))},
        notes={
            "omission_count": len(reply.value.omissions),
            "improvement_count": len(reply.value.potential_improvements),
        },
    )


@register("team_markdown")
def run_team_markdown(ctx: StepContext, inputs: StepInputs) -> StepResult:
    enriched = inputs["enrich_team_members_with_environment_info"]
    roles = load_roles(enriched)
    issues = inherited_issues(enriched)
    review_file = inputs["review_team"]
    try:
        review = TeamReview.model_validate(review_file.json())
    except ValidationError as exc:
        raise StepError(f"{review_file.filename()} is not a team review: {exc}") from exc
    return StepResult(
        files={ctx.step.outputs[""]: render_team(roles, review, issues)},
        notes={"role_count": len(roles), "id_issue_count": len(issues)},
    )


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------

# Role keys in reading order: the label shown for each, and whether its text gets its own paragraph.
_ROLE_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("explanation", "Why the plan needs this role", True),
    ("consequences", "Without this role", True),
    ("count", "People needed", False),
    ("contract_type", "Engagement", False),
    ("contract_type_justification", "Why this engagement", False),
    ("typical_job_activities", "Typical activities", True),
    ("background_story", "Example person", True),
    ("equipment_needs", "Equipment needs", True),
    ("facility_needs", "Facility needs", True),
)
# Fields an enrichment step should have added; their absence is shown, not hidden.
_ENRICHED_KEYS = {
    "contract_type",
    "contract_type_justification",
    "typical_job_activities",
    "background_story",
    "equipment_needs",
    "facility_needs",
}
_KNOWN_KEYS = {"id", "category"} | {key for key, _, _ in _ROLE_FIELDS}


def _contract_label(value: Any) -> str:
    try:
        return f"{CONTRACT_TYPE_LABELS[ContractType(value)]} (`{value}`)"
    except (ValueError, TypeError):
        return str(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, ensure_ascii=False)


def render_roles(roles: Sequence[dict[str, Any]]) -> str:
    """Every role as a numbered section listing all of its fields (no document title)."""
    sections: list[str] = []
    for position, role in enumerate(roles, start=1):
        title = " ".join(str(role.get("category") or "Unnamed role").split())
        lines = [f"## {position}. {title}"]
        for key, label, block in _ROLE_FIELDS:
            if key not in role or role[key] is None or role[key] == "":
                if key in _ENRICHED_KEYS or key in role:
                    lines.append(f"**{label}:** _not provided by the model_")
                continue
            value = _contract_label(role[key]) if key == "contract_type" else _text(role[key])
            if block or "\n" in value:
                lines.append(f"**{label}:**\n\n{value}")
            else:
                lines.append(f"**{label}:** {value}")
        for key in role:
            if key not in _KNOWN_KEYS:
                lines.append(f"**{key}:** {_text(role[key])}")
        sections.append("\n\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _render_review_items(items: Sequence[TeamIssue]) -> str:
    if not items:
        return "_None named._"
    blocks = []
    for position, item in enumerate(items, start=1):
        blocks.append(
            f"### {position}. {' '.join(item.issue.split())}\n\n{item.explanation.strip()}\n\n"
            f"**Recommendation:** {item.recommendation.strip()}"
        )
    return "\n\n".join(blocks)


def _issue_note(issue: dict[str, Any]) -> str:
    line = f"Step {issue.get('step', '?')}, role id {issue.get('id', '?')}: {issue.get('message', '')}"
    answer = issue.get("answer")
    if isinstance(answer, dict) and answer:
        details = "; ".join(f"{key}: {_text(value)}" for key, value in answer.items())
        line += f". Unattached answer: {details}"
    return line


def render_team(
    roles: Sequence[dict[str, Any]], review: TeamReview, issues: Sequence[dict[str, Any]] = ()
) -> str:
    """The team document: roles, then the review's omissions and improvements; id issues are notes."""
    parts = [
        "# Team",
        f"_{len(roles)} roles, each with an example of the kind of person who could fill it._",
        render_roles(roles).rstrip(),
        "---",
        "# Team review",
        "## Omissions\n\n" + _render_review_items(review.omissions),
        "## Potential improvements\n\n" + _render_review_items(review.potential_improvements),
    ]
    notes = [("Answers that did not line up with the role list", [_issue_note(issue) for issue in issues])]
    return "\n\n".join(parts).rstrip() + notes_markdown(notes) + "\n"
