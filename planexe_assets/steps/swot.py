"""SWOT analysis of the plan, framed for the kind of plan it is.

One structured call. The identify_purpose step already classified the plan as business, personal or
other; that choice picks the framing of the system instruction, so a wedding plan is not judged
like a product launch. The plan's topic and detailed purpose go to the model as data in the user
message (``purpose.md``), never into the instruction itself.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from planexe_assets.core import StepContext, StepError, StepInputs, StepResult, or_planexe
from planexe_assets.steps import register
from planexe_assets.steps.common import (
    bundle,
    compact_json_for_prompt,
    dump_json,
    md_bullets,
    messages,
    raw_record,
)

_COMMON_FIELDS = """
Fill every field with short, specific statements (one idea per entry, three to eight entries each),
grounded in the documents rather than generic advice:
- strengths: internal advantages the plan already has.
- weaknesses: internal shortcomings, gaps and fragile points.
- opportunities: favourable outside conditions the plan could use.
- threats: outside conditions that could harm or stop it.
- recommendations: actions that build on the strengths, fix the weaknesses, seize the
  opportunities and blunt the threats.
- strategic_objectives: objectives that are specific, measurable, achievable, relevant and
  time-bound, each with a number and a date or duration.
- assumptions: what this analysis takes for granted.
- missing_information: facts whose absence limits the analysis.
- user_questions: questions the plan's owner should answer to sharpen the plan.
"""

BUSINESS_PROMPT = (
    """
You are a strategy consultant preparing a SWOT analysis of a commercial undertaking. The user
message holds the plan and its supporting documents. Look at it as an investor or board would:
market and customers, competitors and substitutes, revenue and costs, funding, operations, people,
regulation and reputation. Name what would make the venture stand out, and say so plainly when
nothing does.
"""
    + _COMMON_FIELDS
)

PERSONAL_PROMPT = (
    """
You are a thoughtful coach preparing a SWOT analysis of a personal plan. The user message holds the
plan and its supporting documents. Look at it from the person's side: their skills, time, money,
health, habits and the people around them; the circumstances that could help or get in the way;
and what a realistic, sustainable path to the goal looks like. Be encouraging but honest.
"""
    + _COMMON_FIELDS
)

OTHER_PROMPT = (
    """
You are an experienced analyst preparing a SWOT analysis of a plan that is neither a business
venture nor a personal goal. The user message holds the plan, its supporting documents and
purpose.md, which states the plan's topic and detailed purpose. Adapt the analysis to that domain
(for example research, public service, community or creative work): judge it by what success means
there, the resources and stakeholders it depends on, and the outside forces that matter in that
field.
"""
    + _COMMON_FIELDS
)

PROMPT_BY_PURPOSE = {"business": BUSINESS_PROMPT, "personal": PERSONAL_PROMPT, "other": OTHER_PROMPT}


class SWOTAnalysis(BaseModel):
    strengths: list[str] = Field(description="Internal advantages the plan already has.")
    weaknesses: list[str] = Field(description="Internal shortcomings, gaps and fragile points.")
    opportunities: list[str] = Field(description="Favourable outside conditions the plan could use.")
    threats: list[str] = Field(description="Outside conditions that could harm or stop the plan.")
    recommendations: list[str] = Field(description="Actions that respond to the four lists above.")
    strategic_objectives: list[str] = Field(
        description="Specific, measurable, achievable, relevant, time-bound objectives."
    )
    assumptions: list[str] = Field(description="What the analysis takes for granted.")
    missing_information: list[str] = Field(description="Facts whose absence limits the analysis.")
    user_questions: list[str] = Field(description="Questions the plan's owner should answer.")


def read_purpose(raw: object, filename: str) -> tuple[str, str, str]:
    """(purpose, topic, purpose_detailed) from the identify_purpose raw JSON."""
    if not isinstance(raw, dict):
        raise StepError(f"{filename} must be a JSON object")
    value = raw.get("purpose")
    purpose = value.strip().lower() if isinstance(value, str) else ""
    if purpose not in PROMPT_BY_PURPOSE:
        raise StepError(f"{filename} has purpose {value!r}; expected one of {sorted(PROMPT_BY_PURPOSE)}")
    topic = raw.get("topic")
    detailed = raw.get("purpose_detailed")
    return purpose, topic if isinstance(topic, str) else "", detailed if isinstance(detailed, str) else ""


@register("swot_analysis", models={"raw": or_planexe(SWOTAnalysis, nested="response_conduct")})
def run_swot_analysis(ctx: StepContext, inputs: StepInputs) -> StepResult:
    purpose_file = inputs["identify_purpose"]
    purpose, topic, detailed = read_purpose(purpose_file.json("raw"), purpose_file.filename("raw"))
    system_prompt = PROMPT_BY_PURPOSE[purpose].strip()
    purpose_md = f"Topic: {topic}\nPurpose: {purpose}\nDetailed purpose: {detailed}"
    user_prompt = bundle(
        ("plan.txt", inputs["setup"].text()),
        ("purpose.md", purpose_md),
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("assumptions.md", inputs["consolidate_assumptions_markdown"].text("short")),
        ("pre-project-assessment.json", compact_json_for_prompt(inputs["preproject"].json("clean"))),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("related-resources.md", inputs["related_resources"].text("markdown")),
    )
    reply = ctx.llm.structured(messages(system_prompt, user_prompt), SWOTAnalysis, label=f"swot_{purpose}")
    raw = raw_record(
        reply, system_prompt, user_prompt, topic=topic, purpose=purpose, purpose_detailed=detailed
    )
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw),
            step.outputs["markdown"]: render_swot(reply.value, purpose=purpose),
        },
        notes={"purpose": purpose},
    )


_PURPOSE_WORDING = {
    "business": "a business plan",
    "personal": "a personal plan",
    "other": "a plan that is neither a business venture nor a personal goal",
}

_SECTIONS = (
    ("strengths", "Strengths"),
    ("weaknesses", "Weaknesses"),
    ("opportunities", "Opportunities"),
    ("threats", "Threats"),
    ("recommendations", "Recommendations"),
    ("strategic_objectives", "Strategic objectives"),
    ("assumptions", "Assumptions"),
    ("missing_information", "Missing information"),
    ("user_questions", "Questions for the plan's owner"),
)


def render_swot(analysis: SWOTAnalysis, purpose: str | None = None) -> str:
    """A heading and bullet list per field, in SWOT order; empty lists say so."""
    parts: list[str] = []
    if purpose:
        parts.append(f"_Analysed as {_PURPOSE_WORDING.get(purpose, f'a {purpose} plan')}._")
    for field_name, heading in _SECTIONS:
        parts.append(f"## {heading}\n\n{md_bullets(getattr(analysis, field_name))}")
    return "\n\n".join(parts) + "\n"
