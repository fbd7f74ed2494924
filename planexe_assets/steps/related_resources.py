"""Related resources: real projects that resemble this plan, and what can be learned from them.

One structured call. The model sees the plan, the chosen strategy, the scenario, the short
assumptions and the project plan, and names comparable projects with their outcomes, their
troubles, where to read more and whom to contact. The markdown is later handed to the team, SWOT,
pitch and data-collection steps as background.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from planexe_assets.core import StepContext, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import (
    bundle,
    compact_json_for_prompt,
    dump_json,
    md_bullets,
    messages,
    one_line,
    raw_record,
)

SYSTEM_PROMPT = """
You research precedents for a project plan. From the documents in the user message, work out what
the project is really trying to do, then name real projects (past or ongoing, anywhere in the world)
that faced a similar goal, scale, setting or set of risks. Prefer projects a planner could actually
learn from and whose people or organisations could be approached.

Give three to five projects, the most relevant first. For each one:
- item_index: its position in your list, starting at 1.
- project_name: the project's commonly used name.
- project_description: a short paragraph on what it was, who ran it, where and when.
- success_metrics: the outcomes or indicators that show how it went, one per entry.
- risks_and_challenges_faced: the problems it ran into and, where known, how they were handled.
- where_to_find_more_information: concrete sources (official sites, reports, articles, papers).
- actionable_steps: how the planner could reach the people or organisations behind it (roles,
  organisations, channels).
- rationale_for_suggestion: why this precedent matters for this particular plan.

Then write summary: a few sentences on what the precedents, taken together, suggest for the plan.
Do not invent contact details; when unsure, point to the organisation or channel instead.
"""


class SuggestionItem(BaseModel):
    item_index: int = Field(description="Position of this precedent in the list, starting at 1.")
    project_name: str = Field(description="Commonly used name of the comparable project.")
    project_description: str = Field(
        description="What the project was: goal, organisation, place and period."
    )
    success_metrics: list[str] = Field(description="Outcomes or indicators showing how the project went.")
    risks_and_challenges_faced: list[str] = Field(
        description="Problems the project met and, where known, how they were dealt with."
    )
    where_to_find_more_information: list[str] = Field(
        description="Sources to read more: sites, reports, articles."
    )
    actionable_steps: list[str] = Field(
        description="How to get in touch with the people or organisations behind the project."
    )
    rationale_for_suggestion: str = Field(description="Why this precedent is relevant to the plan at hand.")


class RelatedProjects(BaseModel):
    suggestion_list: list[SuggestionItem] = Field(description="Comparable projects, the most relevant first.")
    summary: str = Field(description="What the precedents together suggest for the plan.")


@register("related_resources", models={"raw": RelatedProjects})
def run_related_resources(ctx: StepContext, inputs: StepInputs) -> StepResult:
    user_prompt = bundle(
        ("plan.txt", inputs["setup"].text()),
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("assumptions.md", inputs["consolidate_assumptions_markdown"].text("short")),
        ("project-plan.json", compact_json_for_prompt(inputs["project_plan"].json("raw"))),
    )
    reply = ctx.llm.structured(
        messages(SYSTEM_PROMPT, user_prompt), RelatedProjects, label="related_resources"
    )
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, SYSTEM_PROMPT.strip(), user_prompt)),
            step.outputs["markdown"]: render_related_resources(reply.value),
        },
        notes={"suggestion_count": len(reply.value.suggestion_list)},
    )


def render_related_resources(details: RelatedProjects) -> str:
    """One section per precedent (numbered by position), then the overall summary."""
    parts: list[str] = []
    if not details.suggestion_list:
        parts.append("_The model named no comparable projects._")
    for position, item in enumerate(details.suggestion_list, start=1):
        heading = f"## {position}. {one_line(item.project_name)}"
        if item.item_index != position:
            heading += f" (the model's number {item.item_index})"
        parts.append(heading)
        parts.append(item.project_description.strip())
        parts.append("### Why it is relevant\n\n" + item.rationale_for_suggestion.strip())
        parts.append("### How it measured success\n\n" + md_bullets(item.success_metrics))
        parts.append("### Risks and challenges it faced\n\n" + md_bullets(item.risks_and_challenges_faced))
        parts.append("### Where to read more\n\n" + md_bullets(item.where_to_find_more_information))
        parts.append("### Whom to contact\n\n" + md_bullets(item.actionable_steps))
    parts.append("## Summary\n\n" + (details.summary.strip() or "_No summary given._"))
    return "\n\n".join(parts) + "\n"
