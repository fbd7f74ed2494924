"""Context, part two: where the plan takes place, which currencies it handles, what can go wrong.

Three single-call steps that read the plan and the strategy documents written so far and each add
one document to the context every later step builds on:

- ``physical_locations``: candidate sites and the criteria a site must meet. A purely digital plan
  (as decided by ``plan_type``) needs no site, so no model is asked; both files are still written.
- ``currency_strategy``: the currencies involved and which one to budget in.
- ``identify_risks``: the main risks with likelihood, severity and mitigation.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, field_validator

from planexe_assets.core import StepContext, StepError, StepInputs, StepResult, StructuredReply
from planexe_assets.steps import register
from planexe_assets.steps.common import bundle, dump_json, md_bullets, messages, one_line, raw_record

# --------------------------------------------------------------------------------------------------
# Shared input reading
# --------------------------------------------------------------------------------------------------


def upstream_text(inputs: StepInputs, key: str, output_key: str = "") -> str:
    """An upstream document that must be present and non-empty."""
    upstream = inputs[key]
    text = upstream.text(output_key)
    if not text.strip():
        raise StepError(
            f"upstream file {upstream.filename(output_key)} of step {upstream.step.name} is empty"
        )
    return text


def context_blocks(inputs: StepInputs) -> list[tuple[str, str]]:
    """The documents every context step starts from: the plan, its purpose and type, the strategy."""
    return [
        ("plan.txt", upstream_text(inputs, "setup")),
        ("purpose.md", upstream_text(inputs, "identify_purpose", "markdown")),
        ("plan_type.md", upstream_text(inputs, "plan_type", "markdown")),
        ("strategic_decisions.md", upstream_text(inputs, "strategic_decisions_markdown", "markdown")),
        ("scenarios.md", upstream_text(inputs, "scenarios_markdown", "markdown")),
    ]


# --------------------------------------------------------------------------------------------------
# physical_locations
# --------------------------------------------------------------------------------------------------

PHYSICAL_LOCATIONS_SYSTEM_PROMPT = """
You are a site-selection advisor for project plans. The user message holds a plan and the documents
written about it so far: its purpose, whether it is physical or digital, the strategic decisions
taken and the scenario chosen. Work out where the plan has to happen in the physical world.

Answer with these fields:
- has_location_in_plan: true when the plan text itself already names a place (a country, a city, an
  address or a particular site); false when the place is still open.
- requirements_for_the_physical_locations: short criteria any suitable site has to meet (access,
  space, infrastructure, regulation, climate, workforce, cost, ...), derived from what the plan needs.
- physical_locations: normally three candidate locations, fewer only when the plan fixes a single
  place and nothing else makes sense. For each one give:
  - item_index: its position in the list, starting at 1;
  - physical_location_broad: the country or wide region ("Global" when it truly does not matter);
  - physical_location_detailed: the region, city or district within it;
  - physical_location_specific: the concrete site, or the kind of site to look for there;
  - rationale_for_suggestion: why this place fits the requirements and the plan.
- location_summary: a short paragraph comparing the candidates and saying what the choice hinges on.

When the plan already names a place, keep the candidates inside or close to it and use them to narrow
it down to concrete sites. Base every suggestion on the documents; do not invent facts about the plan.
""".strip()


class PhysicalLocationItem(BaseModel):
    item_index: int = Field(description="Position of this candidate in the list, starting at 1.")
    physical_location_broad: str = Field(
        description="Country or wide region of the candidate, or 'Global' when the region does not matter."
    )
    physical_location_detailed: str = Field(
        description="Narrower area within the broad one, e.g. a region or a city."
    )
    physical_location_specific: str = Field(
        description="The concrete site, or the kind of site to look for in the narrower area."
    )
    rationale_for_suggestion: str = Field(
        description="Why this location suits the plan and meets the requirements."
    )


class PhysicalLocations(BaseModel):
    has_location_in_plan: bool = Field(description="True when the plan text itself already names a place.")
    requirements_for_the_physical_locations: list[str] = Field(
        description="Criteria that any suitable site for the plan has to satisfy."
    )
    physical_locations: list[PhysicalLocationItem] = Field(
        min_length=1, description="Candidate locations, normally three, best first."
    )
    location_summary: str = Field(
        description="Short comparison of the candidates and what the choice depends on."
    )


def render_physical_locations(doc: PhysicalLocations) -> str:
    """Markdown for the location document: stance, requirements, one section per candidate, summary."""
    if doc.has_location_in_plan:
        stance = "The plan already names where it takes place; the candidates below narrow that down."
    else:
        stance = "The plan does not say where it takes place; the candidates below are suggestions."
    parts = [stance, "## What a site must offer", md_bullets(doc.requirements_for_the_physical_locations)]
    for number, item in enumerate(doc.physical_locations, start=1):
        parts.append(f"## Location {number}: {one_line(item.physical_location_specific)}")
        parts.append(
            "\n".join(
                [
                    f"- **Country or region:** {item.physical_location_broad.strip()}",
                    f"- **Area:** {item.physical_location_detailed.strip()}",
                    f"- **Site:** {item.physical_location_specific.strip()}",
                ]
            )
        )
        parts.append(f"**Why here:** {item.rationale_for_suggestion.strip()}")
    parts.append("## Summary")
    parts.append(doc.location_summary.strip() or "_No summary given._")
    return "\n\n".join(parts) + "\n"


def render_physical_locations_not_needed(plan_type_explanation: str) -> str:
    """Markdown written instead of a location analysis when the plan is purely digital."""
    text = "This plan is purely digital, so it needs no physical site and no location analysis was made."
    if plan_type_explanation.strip():
        text += f"\n\n**Why it counts as digital:** {plan_type_explanation.strip()}"
    return text + "\n"


def read_plan_type(inputs: StepInputs) -> tuple[str, str]:
    """``(plan_type, explanation)`` from the plan-type step's raw JSON (ours or a recorded PlanExe one)."""
    data = inputs["plan_type"].json("raw")
    filename = inputs["plan_type"].filename("raw")
    if not isinstance(data, dict):
        raise StepError(f"{filename} must hold a JSON object, got {type(data).__name__}")
    value = data.get("plan_type")
    if not isinstance(value, str) or value.strip().lower() not in ("physical", "digital"):
        raise StepError(f"{filename} has plan_type {value!r}; expected 'physical' or 'digital'")
    explanation = data.get("explanation")
    return value.strip().lower(), explanation if isinstance(explanation, str) else ""


def _renumbered(reply: StructuredReply[PhysicalLocations]) -> StructuredReply[PhysicalLocations]:
    """item_index is an ordinal: set it from the list position instead of trusting the model's count."""
    items = [
        item.model_copy(update={"item_index": number})
        for number, item in enumerate(reply.value.physical_locations, start=1)
    ]
    return dataclasses.replace(reply, value=reply.value.model_copy(update={"physical_locations": items}))


@register("physical_locations", models={"raw": PhysicalLocations})
def run_physical_locations(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    plan_type, explanation = read_plan_type(inputs)
    if plan_type == "digital":
        # Same file shapes as a real answer, so readers of the raw file need no special case.
        reason = "plan_type is 'digital': a purely digital plan needs no physical location"
        record: dict[str, Any] = PhysicalLocations.model_construct(
            has_location_in_plan=False,
            requirements_for_the_physical_locations=[],
            physical_locations=[],
            location_summary="Not applicable: the plan is purely digital.",
        ).model_dump(mode="json")
        record["metadata"] = {"llm_call_skipped": True, "reason": reason}
        return StepResult(
            files={
                step.outputs["raw"]: dump_json(record),
                step.outputs["markdown"]: render_physical_locations_not_needed(explanation),
            },
            notes={"plan_type": plan_type, "llm_calls": 0, "skipped": reason},
        )

    user_prompt = bundle(*context_blocks(inputs))
    reply = ctx.llm.structured(
        messages(PHYSICAL_LOCATIONS_SYSTEM_PROMPT, user_prompt), PhysicalLocations, label="physical_locations"
    )
    reply = _renumbered(reply)
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, PHYSICAL_LOCATIONS_SYSTEM_PROMPT, user_prompt)),
            step.outputs["markdown"]: render_physical_locations(reply.value),
        },
        notes={"plan_type": plan_type, "llm_calls": 1, "locations": len(reply.value.physical_locations)},
    )


# --------------------------------------------------------------------------------------------------
# currency_strategy
# --------------------------------------------------------------------------------------------------

CURRENCY_STRATEGY_SYSTEM_PROMPT = """
You advise project plans on money that crosses currencies. The user message holds a plan and the
documents written about it so far, including where it will take place. Decide which currencies the
plan deals with and how to handle exchange rates.

Answer with these fields:
- money_involved: true when carrying out the plan means spending, raising or receiving money.
- currency_list: every currency the plan will touch. For each give currency (its ISO 4217 code, such
  as "EUR") and consideration (where it comes in: local costs, wages, funding, imports, revenue, ...).
  Leave the list empty when no money is involved.
- primary_currency: the single ISO 4217 code to budget and report in, or null when no money is
  involved.
- currency_strategy: a few sentences on handling exchange rates: which currency to hold funds in,
  when local currency is needed, whether hedging is worth it, and risks such as a volatile or pegged
  local currency. Empty when no money is involved.

A project inside one country with a stable currency usually budgets in that currency. A project that
spans several countries, or whose local currency is unstable, usually budgets in a major stable
currency and pays local costs in the local one.
""".strip()


class CurrencyItem(BaseModel):
    currency: str = Field(description="ISO 4217 code of the currency, e.g. 'USD'.")
    consideration: str = Field(description="Where and why this currency comes into play in the plan.")


class CurrencyStrategy(BaseModel):
    money_involved: bool = Field(description="True when the plan means spending, raising or receiving money.")
    currency_list: list[CurrencyItem] = Field(
        description="The currencies the plan deals with; empty without money."
    )
    primary_currency: str | None = Field(
        default=None, description="ISO 4217 code to budget and report in; null when no money is involved."
    )
    currency_strategy: str = Field(
        default="",
        description="How to handle exchange rates and currency risk; empty when no money is involved.",
    )


def render_currency_strategy(doc: CurrencyStrategy) -> str:
    """Markdown for the currency document: money yes/no, the currencies, primary currency, strategy."""
    money = "This plan involves money." if doc.money_involved else "This plan involves no money."
    parts = [money, "## Currencies"]
    if doc.currency_list:
        parts.append(
            "\n".join(f"- **{c.currency.strip()}:** {c.consideration.strip()}" for c in doc.currency_list)
        )
    else:
        parts.append("_No currencies named._")
    primary = (doc.primary_currency or "").strip()
    parts.append(f"**Primary currency:** {primary or '_none named_'}")
    parts.append("## Exchange-rate strategy")
    parts.append(doc.currency_strategy.strip() or "_No strategy given._")
    return "\n\n".join(parts) + "\n"


@register("currency_strategy", models={"raw": CurrencyStrategy})
def run_currency_strategy(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    user_prompt = bundle(
        *context_blocks(inputs),
        ("physical_locations.md", upstream_text(inputs, "physical_locations", "markdown")),
    )
    reply = ctx.llm.structured(
        messages(CURRENCY_STRATEGY_SYSTEM_PROMPT, user_prompt), CurrencyStrategy, label="currency_strategy"
    )
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, CURRENCY_STRATEGY_SYSTEM_PROMPT, user_prompt)),
            step.outputs["markdown"]: render_currency_strategy(reply.value),
        },
        notes={"llm_calls": 1, "currencies": len(reply.value.currency_list)},
    )


# --------------------------------------------------------------------------------------------------
# identify_risks
# --------------------------------------------------------------------------------------------------

IDENTIFY_RISKS_SYSTEM_PROMPT = """
You are a risk analyst examining a project plan before any work starts. The user message holds the
plan and the documents written about it so far: purpose, type, strategic decisions, chosen scenario,
locations and currency strategy.

List the most important risks, usually between 8 and 15. Cover the areas that apply, such as
regulatory and permitting, technical, financial, environmental, social, operational, supply chain,
security and long-term sustainability, plus any risk peculiar to this plan. For each risk give:
- risk_area: the area, e.g. "Financial" or "Regulatory & Permitting";
- risk_description: what could go wrong, tied to the specifics of this plan;
- potential_impact: the consequences if it happens, with rough magnitudes (a delay in weeks or months,
  a cost in the plan's currency) where you can estimate them;
- likelihood: one of low, medium, high;
- severity: one of low, medium, high;
- action: concrete steps that prevent the risk or soften its impact.

Finish with risk_assessment_summary: a short paragraph naming the few risks that matter most and the
trade-offs between addressing them.
""".strip()


class LowMediumHigh(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RiskItem(BaseModel):
    risk_area: str = Field(description="The area the risk belongs to, e.g. regulatory, financial, technical.")
    risk_description: str = Field(description="What could go wrong, specific to this plan.")
    potential_impact: str = Field(description="Consequences if the risk happens, quantified where possible.")
    likelihood: LowMediumHigh = Field(description="How probable the risk is: low, medium or high.")
    severity: LowMediumHigh = Field(description="How bad the impact would be: low, medium or high.")
    action: str = Field(description="Steps that prevent the risk or soften its impact.")

    @field_validator("likelihood", "severity", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        # Models sometimes capitalise the band ("Medium"); the band itself is what matters.
        return value.strip().lower() if isinstance(value, str) else value


class IdentifiedRisks(BaseModel):
    risks: list[RiskItem] = Field(min_length=1, description="The most important risks of the plan.")
    risk_assessment_summary: str = Field(
        description="The few risks that matter most and the trade-offs between them."
    )


def render_identify_risks(doc: IdentifiedRisks) -> str:
    """Markdown for the risk register: one section per risk, then the overall picture."""
    parts: list[str] = []
    for number, risk in enumerate(doc.risks, start=1):
        parts.append(f"## Risk {number}: {one_line(risk.risk_area)}")
        parts.append(risk.risk_description.strip())
        parts.append(
            "\n".join(
                [
                    f"- **Impact:** {risk.potential_impact.strip()}",
                    f"- **Likelihood:** {risk.likelihood.value}",
                    f"- **Severity:** {risk.severity.value}",
                    f"- **Action:** {risk.action.strip()}",
                ]
            )
        )
    parts.append("## Overall risk picture")
    parts.append(doc.risk_assessment_summary.strip() or "_No summary given._")
    return "\n\n".join(parts) + "\n"


@register("identify_risks", models={"raw": IdentifiedRisks})
def run_identify_risks(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    user_prompt = bundle(
        *context_blocks(inputs),
        ("physical_locations.md", upstream_text(inputs, "physical_locations", "markdown")),
        ("currency_strategy.md", upstream_text(inputs, "currency_strategy", "markdown")),
    )
    reply = ctx.llm.structured(
        messages(IDENTIFY_RISKS_SYSTEM_PROMPT, user_prompt), IdentifiedRisks, label="identify_risks"
    )
    severe = sum(1 for r in reply.value.risks if r.severity == LowMediumHigh.HIGH)
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, IDENTIFY_RISKS_SYSTEM_PROMPT, user_prompt)),
            step.outputs["markdown"]: render_identify_risks(reply.value),
        },
        notes={"llm_calls": 1, "risks": len(reply.value.risks), "high_severity_risks": severe},
    )
