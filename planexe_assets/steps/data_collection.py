"""Data collection: which facts must be gathered, simulated and checked by experts before committing.

One structured call. The model reads the plan's strategic decisions, chosen scenario, short
assumptions, project plan, related resources, SWOT, team and expert review, and lists the data areas
whose assumptions carry the most risk. Each area says what to collect, how to estimate it when real
data is not yet available, which experts should confirm it, who owns it, which assumptions it tests
(with how sensitive the plan is to each) and a SMART objective for the validation. Downstream, the
WBS steps turn these areas into work.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field, field_validator

from planexe_assets.core import StepContext, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import bundle, dump_json, md_bullets, messages, raw_record

SYSTEM_PROMPT = """
You help a project team decide what evidence they need before they commit money and people to a plan.
The user message holds the plan's documents: strategic decisions, the chosen scenario, the key
assumptions, the project plan, related past projects, a SWOT analysis, the team and an expert review.

Find the data areas where a wrong guess would hurt the plan most: typically the assumptions about
cost, demand, feasibility, regulation, safety, timing and people. Prefer a handful of deep, specific
areas (usually 4 to 8) over many shallow ones, and order them by how urgently they must be settled.

For each data area (`data_collection_list`) give:
- `item_index`: 1, 2, 3, ... in the order you list them.
- `title`: a short name for the data area.
- `data_to_collect`: the concrete data points, figures or records needed.
- `simulation_steps`: how the numbers can be estimated or modelled before real data arrives; name
  concrete tools, public data sources or methods.
- `expert_validation_steps`: which kinds of experts, authorities or organisations should confirm the
  findings, and what they should check.
- `rationale`: why this data matters for the plan and what goes wrong without it.
- `responsible_parties`: the roles that own the work (use roles from the team document when they fit).
- `assumptions`: the assumptions this area tests; number them with `item_index` from 1 and rate each
  with `sensitivity_score` of exactly "low", "medium" or "high" (lowercase): how strongly the plan's
  outcome depends on the assumption being right.
- `smart_validation_objective`: one Specific, Measurable, Achievable, Relevant and Time-bound objective
  stating what must be validated, to what standard, by when.
- `notes`: open uncertainties, risks or caveats about this data (an empty list if there are none).

Finish with `summary`: a short paragraph on what the data collection must establish first and why.
Base everything on the documents; do not invent facts that contradict them. Reply with JSON only.
"""


class SensitivityScore(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class DataAssumption(BaseModel):
    item_index: int = Field(description="Position of the assumption within its data area, counting from 1.")
    assumption: str = Field(
        description="A belief the plan relies on that the collected data will confirm or refute."
    )
    sensitivity_score: SensitivityScore = Field(
        description="How strongly the plan's outcome depends on this assumption: low, medium or high."
    )

    @field_validator("sensitivity_score", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        # Models often capitalise ("High"); the meaning is the same.
        return value.strip().lower() if isinstance(value, str) else value


class PlannedDataCollectionItem(BaseModel):
    item_index: int = Field(description="Position of this data area in the list, counting from 1.")
    title: str = Field(description="Short name of the data area.")
    data_to_collect: list[str] = Field(description="Concrete data points, figures or records to gather.")
    simulation_steps: list[str] = Field(
        description="How to estimate or model the data before real data exists, naming tools, sources or methods."
    )
    expert_validation_steps: list[str] = Field(
        description="Which experts or authorities should confirm the findings, and what they check."
    )
    rationale: str = Field(description="Why the plan needs this data and what goes wrong without it.")
    responsible_parties: list[str] = Field(description="Roles that own collecting and validating this data.")
    assumptions: list[DataAssumption] = Field(
        description="Assumptions this data area tests, each with its sensitivity."
    )
    smart_validation_objective: str = Field(
        description="One Specific, Measurable, Achievable, Relevant, Time-bound validation objective."
    )
    notes: list[str] = Field(description="Open uncertainties, risks or caveats about this data.")


class DataCollectionPlan(BaseModel):
    """PlanExe's ``DocumentDetails`` of ``data_collection.py``: the areas to research, then a summary."""

    data_collection_list: list[PlannedDataCollectionItem] = Field(
        description="The data areas to research, most urgent first."
    )
    summary: str = Field(description="What the data collection must establish first, and why.")


def project_documents(inputs: StepInputs) -> list[tuple[str, str]]:
    """The eight plan documents that data collection and document identification both read."""
    return [
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("assumptions.md", inputs["consolidate_assumptions_markdown"].text("short")),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("related-resources.md", inputs["related_resources"].text("markdown")),
        ("swot-analysis.md", inputs["swot_analysis"].text("markdown")),
        ("team.md", inputs["team_markdown"].text()),
        ("expert-review.md", inputs["expert_review"].text()),
    ]


@register("data_collection", models={"raw": DataCollectionPlan})
def run_data_collection(ctx: StepContext, inputs: StepInputs) -> StepResult:
    user_prompt = bundle(*project_documents(inputs))
    reply = ctx.llm.structured(
        messages(SYSTEM_PROMPT, user_prompt), DataCollectionPlan, label="data_collection"
    )
    plan = reply.value
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, SYSTEM_PROMPT.strip(), user_prompt)),
            step.outputs["markdown"]: render_data_collection(plan),
        },
        notes={
            "data_areas": len(plan.data_collection_list),
            "assumptions": sum(len(item.assumptions) for item in plan.data_collection_list),
        },
    )


def render_data_collection(plan: DataCollectionPlan) -> str:
    """One section per data area (numbered by the model's ``item_index``), then the summary."""
    sections: list[str] = []
    for item in plan.data_collection_list:
        parts = [f"## {item.item_index}. {item.title.strip()}", f"**Rationale:** {item.rationale.strip()}"]
        parts += ["### Data to Collect", md_bullets(item.data_to_collect)]
        parts += ["### Simulation Steps", md_bullets(item.simulation_steps)]
        parts += ["### Expert Validation Steps", md_bullets(item.expert_validation_steps)]
        parts += ["### Responsible Parties", md_bullets(item.responsible_parties)]
        parts += ["### Assumptions", _render_assumptions(item.assumptions)]
        parts += ["### SMART Validation Objective", item.smart_validation_objective.strip() or "_None._"]
        parts += ["### Notes", md_bullets(item.notes)]
        sections.append("\n\n".join(parts))
    if not sections:
        sections.append("_The model proposed no data areas._")
    sections.append("## Summary\n\n" + (plan.summary.strip() or "_None._"))
    return "\n\n\n".join(sections) + "\n"


def _render_assumptions(assumptions: list[DataAssumption]) -> str:
    if not assumptions:
        return "_None._"
    return "\n".join(
        f"- **A{a.item_index}** (sensitivity: {a.sensitivity_score.value}): {a.assumption.strip()}"
        for a in assumptions
    )
