"""Assumptions: fill the plan's gaps, condense them, have an expert check them, bundle the stage.

- ``make_assumptions``: one call that asks the questions the plan leaves open and answers each with
  an explicit assumption and an assessment.
- ``distill_assumptions``: one call that boils those down to one line each.
- ``review_assumptions``: one call in which a domain expert points out the weakest assumptions.
- ``consolidate_assumptions_markdown``: joins the eight context/assumption documents into a full
  document (for the report) and a short one (the ``assumptions.md`` most later steps read). The short
  one is made by eight independent free-text shortening calls that run concurrently; a section whose
  call fails, or whose reply was cut off, keeps its full text instead of disappearing or arriving
  truncated; that, and a missing document, is logged and listed in the notes at the end of the
  documents (``doc_notes``).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from planexe_assets.core import (
    FailureKind,
    Items,
    StepContext,
    StepError,
    StepInputs,
    StepResult,
    StructuredReply,
)
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
from planexe_assets.steps.doc_notes import log_notes, notes_markdown
from planexe_assets.steps.locations import context_blocks, upstream_text

# --------------------------------------------------------------------------------------------------
# make_assumptions
# --------------------------------------------------------------------------------------------------

MAKE_ASSUMPTIONS_SYSTEM_PROMPT = """
You turn a brief, under-specified project description into something that can be planned, by
naming the questions it leaves open and answering each with an explicit assumption. The current year
is {current_year}; put any dates relative to it.

The user message holds the plan and the documents written about it so far: purpose, type, strategic
decisions, chosen scenario, locations, currency strategy and risks. Do not contradict what those
documents already settle; assume only what they leave open.

Give about eight entries in question_assumption_list, together covering funding and budget, timeline
and milestones, people and resources, governance and regulation, safety and risk management,
environmental impact, stakeholders and community, and day-to-day operational systems. For each:
- item_index: its position in the list, starting at 1;
- question: a question about this plan that the description does not answer;
- assumptions: a concrete, reasonable answer (figures, dates, amounts in the plan's currency where
  sensible), with a short reason why it is reasonable, such as an industry norm;
- assessments: a short assessment of that assumption: a title, what it covers, the risks and benefits
  it brings, and how to mitigate the risks or use the opportunities; quantify where you can.
""".strip()


class QuestionAssumptionItem(BaseModel):
    item_index: int = Field(description="Position of this entry in the list, starting at 1.")
    question: str = Field(description="A question about the plan that its description leaves unanswered.")
    assumptions: str = Field(
        description="The assumed answer that fills the gap, concrete and briefly justified."
    )
    assessments: str = Field(
        description="Short assessment of the assumption: risks, benefits and mitigations."
    )


class MadeAssumptions(BaseModel):
    question_assumption_list: list[QuestionAssumptionItem] = Field(
        min_length=1,
        description="The open questions of the plan, each with an assumption and its assessment.",
    )


class CleanAssumption(BaseModel):
    """One entry of the clean assumptions file (``003-4-make_assumptions.json``), the form later steps read."""

    question: str
    assumptions: str
    assessments: str


_CLEAN_LIST = TypeAdapter(list[CleanAssumption])


def clean_assumptions(doc: MadeAssumptions) -> list[dict[str, str]]:
    """The clean file: the entries without their ordinal."""
    return [
        CleanAssumption(
            question=i.question, assumptions=i.assumptions, assessments=i.assessments
        ).model_dump()
        for i in doc.question_assumption_list
    ]


def render_make_assumptions(doc: MadeAssumptions) -> str:
    """Markdown: one section per question with its assumption and assessment."""
    parts: list[str] = []
    for number, item in enumerate(doc.question_assumption_list, start=1):
        parts.append(f"## Question {number}: {one_line(item.question)}")
        parts.append(f"**Assumption:** {item.assumptions.strip()}")
        parts.append(f"**Assessment:**\n{item.assessments.strip()}")
    return "\n\n".join(parts) + "\n"


def _renumbered(reply: StructuredReply[MadeAssumptions]) -> StructuredReply[MadeAssumptions]:
    """item_index is an ordinal: set it from the list position instead of trusting the model's count."""
    items = [
        item.model_copy(update={"item_index": number})
        for number, item in enumerate(reply.value.question_assumption_list, start=1)
    ]
    return dataclasses.replace(
        reply, value=reply.value.model_copy(update={"question_assumption_list": items})
    )


@register("make_assumptions", models={"raw": MadeAssumptions, "clean": Items(CleanAssumption)})
def run_make_assumptions(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    system_prompt = MAKE_ASSUMPTIONS_SYSTEM_PROMPT.format(current_year=ctx.current_year)
    user_prompt = bundle(
        *context_blocks(inputs),
        ("physical_locations.md", upstream_text(inputs, "physical_locations", "markdown")),
        ("currency_strategy.md", upstream_text(inputs, "currency_strategy", "markdown")),
        ("identify_risks.md", upstream_text(inputs, "identify_risks", "markdown")),
    )
    reply = _renumbered(
        ctx.llm.structured(messages(system_prompt, user_prompt), MadeAssumptions, label="make_assumptions")
    )
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, system_prompt, user_prompt)),
            step.outputs["clean"]: dump_json(clean_assumptions(reply.value)),
            step.outputs["markdown"]: render_make_assumptions(reply.value),
        },
        notes={"llm_calls": 1, "assumptions": len(reply.value.question_assumption_list)},
    )


# --------------------------------------------------------------------------------------------------
# distill_assumptions
# --------------------------------------------------------------------------------------------------

DISTILL_ASSUMPTIONS_SYSTEM_PROMPT = """
You condense a project's assumptions to their essentials. The current year is {current_year}.

The user message holds the plan, its purpose, the strategic decisions, the chosen scenario and
assumptions.json: a list of questions, each with an assumed answer and an assessment of it.

Return assumption_list with one short sentence per assumption (roughly 8 to 15 words), in the same
order as the input. Keep the concrete figures, dates, names and amounts of each assumed answer; drop
the question wording, the justifications and the assessments. Add nothing that is not in the input.
""".strip()


class DistilledAssumptions(BaseModel):
    assumption_list: list[str] = Field(
        min_length=1, description="The key assumptions, one short self-contained sentence each."
    )


def read_clean_assumptions(inputs: StepInputs) -> list[CleanAssumption]:
    """The clean assumptions file of make_assumptions (ours or a recorded PlanExe one), validated."""
    upstream = inputs["make_assumptions"]
    data = upstream.json("clean")
    try:
        items = _CLEAN_LIST.validate_python(data)
    except ValidationError as exc:
        raise StepError(
            f"{upstream.filename('clean')} must be a list of {{question, assumptions, assessments}} objects: {exc}"
        ) from exc
    if not items:
        raise StepError(f"{upstream.filename('clean')} holds no assumptions to distill")
    return items


def render_distill_assumptions(doc: DistilledAssumptions) -> str:
    """Markdown: one bullet per distilled assumption."""
    return md_bullets(doc.assumption_list) + "\n"


@register("distill_assumptions", models={"raw": DistilledAssumptions})
def run_distill_assumptions(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    assumptions = read_clean_assumptions(inputs)
    system_prompt = DISTILL_ASSUMPTIONS_SYSTEM_PROMPT.format(current_year=ctx.current_year)
    user_prompt = bundle(
        ("plan.txt", upstream_text(inputs, "setup")),
        ("purpose.md", upstream_text(inputs, "identify_purpose", "markdown")),
        ("strategic_decisions.md", upstream_text(inputs, "strategic_decisions_markdown", "markdown")),
        ("scenarios.md", upstream_text(inputs, "scenarios_markdown", "markdown")),
        ("assumptions.json", compact_json_for_prompt([a.model_dump() for a in assumptions])),
    )
    reply = ctx.llm.structured(
        messages(system_prompt, user_prompt), DistilledAssumptions, label="distill_assumptions"
    )
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, system_prompt, user_prompt)),
            step.outputs["markdown"]: render_distill_assumptions(reply.value),
        },
        notes={
            "llm_calls": 1,
            "assumptions_in": len(assumptions),
            "assumptions_out": len(reply.value.assumption_list),
        },
    )


# --------------------------------------------------------------------------------------------------
# review_assumptions
# --------------------------------------------------------------------------------------------------

REVIEW_ASSUMPTIONS_SYSTEM_PROMPT = """
You are a senior expert in the field this project belongs to, asked to challenge its assumptions
before planning goes further. The user message holds the plan and the documents written about it so
far: purpose, type, strategic decisions, chosen scenario, locations, currency strategy, risks, the
assumptions made and their distilled form. A document that could not be read is marked as such.

Answer with these fields:
- expert_domain: your field of expertise as it applies to this plan.
- domain_specific_considerations: the four to six factors from that field you pay most attention to.
- issues: the three most significant problems with the assumptions: ones that are missing,
  under-explored or likely wrong. For each give issue (a short title), explanation (why it matters
  for this plan), recommendation (concrete steps to resolve it) and sensitivity (how far cost,
  schedule or return would move if the assumption is off, against a stated baseline; leave it empty
  only when it cannot be quantified).
- conclusion: a short wrap-up of what has to be addressed first.
""".strip()


class AssumptionIssue(BaseModel):
    issue: str = Field(description="Short title of the problem.")
    explanation: str = Field(description="Why the problem matters for this plan.")
    recommendation: str = Field(description="Concrete steps that resolve the problem.")
    sensitivity: str = Field(
        default="", description="How much the outcome shifts if the assumption is off, against a baseline."
    )


class AssumptionReview(BaseModel):
    expert_domain: str = Field(description="The reviewer's field of expertise as it applies to the plan.")
    domain_specific_considerations: list[str] = Field(
        description="Factors from that field the review focuses on."
    )
    issues: list[AssumptionIssue] = Field(
        min_length=1, description="The most significant problems with the assumptions."
    )
    conclusion: str = Field(description="Short wrap-up of what has to be addressed first.")


# Title, requires() key, pseudo file name: the documents the reviewer sees after the plan itself.
_REVIEW_DOCUMENTS: tuple[tuple[str, str, str], ...] = (
    ("Purpose", "identify_purpose", "purpose.md"),
    ("Plan Type", "plan_type", "plan_type.md"),
    ("Strategic Decisions", "strategic_decisions_markdown", "strategic_decisions.md"),
    ("Scenarios", "scenarios_markdown", "scenarios.md"),
    ("Physical Locations", "physical_locations", "physical_locations.md"),
    ("Currency Strategy", "currency_strategy", "currency_strategy.md"),
    ("Identify Risks", "identify_risks", "identify_risks.md"),
    ("Make Assumptions", "make_assumptions", "make_assumptions.md"),
    ("Distill Assumptions", "distill_assumptions", "distill_assumptions.md"),
)


def _optional_markdown(inputs: StepInputs, key: str) -> tuple[str, str | None]:
    """``(text, None)``, or ``("", problem)`` for an upstream markdown that is missing or empty."""
    try:
        upstream = inputs[key]
        text = upstream.text("markdown")
    except StepError as exc:
        return "", str(exc)
    if not text.strip():
        return "", f"upstream file {upstream.filename('markdown')} is empty"
    return text, None


def render_review_assumptions(doc: AssumptionReview) -> str:
    """Markdown: the reviewer's domain and focus, one section per issue, the conclusion."""
    parts = [
        f"**Reviewer's domain:** {doc.expert_domain.strip()}",
        "## What the reviewer focuses on",
        md_bullets(doc.domain_specific_considerations),
    ]
    for number, item in enumerate(doc.issues, start=1):
        parts.append(f"## Issue {number}: {one_line(item.issue)}")
        parts.append(item.explanation.strip())
        parts.append(f"**Recommendation:** {item.recommendation.strip()}")
        parts.append(f"**Sensitivity:** {item.sensitivity.strip() or '_not quantified_'}")
    parts.append("## Conclusion")
    parts.append(doc.conclusion.strip() or "_No conclusion given._")
    return "\n\n".join(parts) + "\n"


@register("review_assumptions", models={"raw": AssumptionReview})
def run_review_assumptions(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    if not ctx.plan_prompt.strip():
        # PlanExe leaves the plan out of this query (SPEC §9.4); the reviewer needs it, so it is required.
        raise StepError("review_assumptions needs the plan prompt (ctx.plan_prompt is empty)")
    blocks = [("plan.txt", ctx.plan_prompt)]
    problems: dict[str, str] = {}
    for title, key, pseudo_name in _REVIEW_DOCUMENTS:
        text, problem = _optional_markdown(inputs, key)
        if problem is not None:
            problems[title] = problem
            text = f"(Problem with document '{title}': {problem}. Review without it.)"
        blocks.append((pseudo_name, text))
    if len(problems) == len(_REVIEW_DOCUMENTS):
        raise StepError(f"review_assumptions has no upstream document to review: {problems}")

    user_prompt = bundle(*blocks)
    reply = ctx.llm.structured(
        messages(REVIEW_ASSUMPTIONS_SYSTEM_PROMPT, user_prompt), AssumptionReview, label="review_assumptions"
    )
    extra = {"missing_documents": problems} if problems else {}
    missing = [("Documents missing from this review", [f"{t}: {p}" for t, p in problems.items()])]
    log_notes(ctx.logger, "review_assumptions", missing)
    markdown = render_review_assumptions(reply.value).rstrip() + notes_markdown(missing) + "\n"
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(
                raw_record(reply, REVIEW_ASSUMPTIONS_SYSTEM_PROMPT, user_prompt, **extra)
            ),
            step.outputs["markdown"]: markdown,
        },
        notes={"llm_calls": 1, "issues": len(reply.value.issues), "missing_documents": sorted(problems)},
    )


# --------------------------------------------------------------------------------------------------
# consolidate_assumptions_markdown
# --------------------------------------------------------------------------------------------------

SHORTEN_MARKDOWN_SYSTEM_PROMPT = """
You shorten one section of a project-planning document. Rewrite the markdown in the user message as
a compact version that keeps every topic, fact, figure, name, risk, assumption and recommendation,
and drops repetition and filler. Add no new information and no commentary of your own.

Formatting rules:
- Put the shortened markdown between a line [START_MARKDOWN] and a line [END_MARKDOWN], with
  nothing before or after the markers.
- Plain markdown only, without bold text.
- Headings use only '##' and '###'.
- Lists use "- " bullets.
""".strip()

_START_MARKER = "[START_MARKDOWN]"
_END_MARKER = "[END_MARKDOWN]"


@dataclass(frozen=True)
class AssumptionSection:
    title: str  # heading in both consolidated files
    key: str  # requires() key of the upstream step whose markdown this is
    pseudo_name: str  # file name the shortening call sees


# The eight documents of the stage, in reading order.
CONSOLIDATED_SECTIONS: tuple[AssumptionSection, ...] = (
    AssumptionSection("Purpose", "identify_purpose", "purpose.md"),
    AssumptionSection("Plan Type", "plan_type", "plan_type.md"),
    AssumptionSection("Physical Locations", "physical_locations", "physical_locations.md"),
    AssumptionSection("Currency Strategy", "currency_strategy", "currency_strategy.md"),
    AssumptionSection("Identify Risks", "identify_risks", "identify_risks.md"),
    AssumptionSection("Make Assumptions", "make_assumptions", "make_assumptions.md"),
    AssumptionSection("Distill Assumptions", "distill_assumptions", "distill_assumptions.md"),
    AssumptionSection("Review Assumptions", "review_assumptions", "review_assumptions.md"),
)


@dataclass(frozen=True)
class Shortened:
    markdown: str
    markers: str  # "complete", "unterminated" (start marker only) or "missing"


_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_BULLET = re.compile(r"^(\s*)[*+•]\s+")
_HEADING = re.compile(r"^(#{1,6})(\s)")
_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def extract_shortened(reply_text: str) -> Shortened:
    """The shortened markdown out of a model reply: between the markers, tidied.

    A reply cut off before the end marker keeps what follows the start marker; a reply without
    markers is used whole. Bold is removed, bullets use "- ", a list gets a blank line before it,
    and level-1 headings are demoted so the section title stays the only level-1 heading.
    """
    text, markers = _between_markers(reply_text.strip())
    fenced = _FENCE.match(text.strip())
    if fenced:
        text = fenced.group(1)
    text = _BOLD.sub(r"\1", text)

    lines = [_BULLET.sub(r"\1- ", line.rstrip()) for line in text.strip().splitlines()]
    if any(line.startswith("# ") for line in lines):
        lines = [
            _HEADING.sub(lambda m: ("#" * min(6, len(m.group(1)) + 1)) + m.group(2), line) for line in lines
        ]
    markdown = re.sub(r"\n{3,}", "\n\n", "\n".join(_space_lists(lines))).strip()
    return Shortened(markdown=markdown, markers=markers)


def _between_markers(text: str) -> tuple[str, str]:
    """The text between the start and end markers, and how the markers were found: ``complete``,
    ``unterminated`` (the reply stops before the end marker) or ``missing`` (the whole reply)."""
    start = text.find(_START_MARKER)
    end = text.find(_END_MARKER, start + 1 if start >= 0 else 0)
    if start >= 0 and end >= 0:
        return text[start + len(_START_MARKER) : end], "complete"
    if start >= 0:
        return text[start + len(_START_MARKER) :], "unterminated"
    return text.replace(_END_MARKER, ""), "missing"


def _space_lists(lines: list[str]) -> list[str]:
    """The lines with a blank line before each list that follows a paragraph line."""
    tidy: list[str] = []
    for line in lines:
        is_bullet = line.lstrip().startswith("- ")
        if (
            is_bullet
            and tidy
            and tidy[-1].strip()
            and not tidy[-1].lstrip().startswith("- ")
            and not tidy[-1].startswith(" ")
        ):
            tidy.append("")
        tidy.append(line)
    return tidy


# A shortened section is at most about as long as the original: three characters per token is a
# generous count for English markdown, so a reply that reaches the bound has not shortened anything
# (a small local model looping until the model's max_tokens) and the full text is used instead. The
# floor leaves room for a short section a model elaborates on (a recorded run turned a 150-character
# purpose into 1,591 characters, about 400 tokens).
SHORTENING_CHARS_PER_TOKEN = 3
SHORTENING_MIN_TOKENS = 512


def shortening_budget(original: str) -> int:
    """The most tokens a shortened version of ``original`` may take."""
    return max(SHORTENING_MIN_TOKENS, len(original) // SHORTENING_CHARS_PER_TOKEN)


def _first_line(error: BaseException, limit: int = 300) -> str:
    message = one_line(f"{type(error).__name__}: {error}")
    return message if len(message) <= limit else message[: limit - 1] + "…"


@register("consolidate_assumptions_markdown")
def run_consolidate_assumptions_markdown(ctx: StepContext, inputs: StepInputs) -> StepResult:
    step = ctx.step
    originals: dict[str, str] = {}
    missing: dict[str, str] = {}
    for section in CONSOLIDATED_SECTIONS:
        text, problem = _optional_markdown(inputs, section.key)
        if problem is None:
            originals[section.title] = text.strip()
        else:
            missing[section.title] = problem
    if not originals:
        raise StepError(f"no upstream document to consolidate: {missing}")

    to_shorten = [s for s in CONSOLIDATED_SECTIONS if s.title in originals]

    def shorten(section: AssumptionSection) -> tuple[Shortened, dict]:
        user_prompt = bundle((section.pseudo_name, originals[section.title]))
        reply = ctx.llm.text(
            messages(SHORTEN_MARKDOWN_SYSTEM_PROMPT, user_prompt),
            label=f"shorten:{section.key}",
            max_tokens=shortening_budget(originals[section.title]),
        )
        shortened = extract_shortened(reply.text)
        if not shortened.markdown:
            raise StepError(
                f"the model returned no shortened text for '{section.title}'", kind=FailureKind.CONTENT
            )
        return shortened, reply.metadata

    def every_call_failed(failed_outcomes) -> str:
        failures = {to_shorten[o.index].title: _first_line(o.error) for o in failed_outcomes}
        return f"every shortening call failed: {failures}"

    outcomes = {
        to_shorten[o.index].title: o
        for o in ctx.map_concurrent(shorten, to_shorten, all_failed=every_call_failed)
    }

    full_parts: list[str] = []
    short_parts: list[str] = []
    failed: dict[str, str] = {}
    unterminated: list[str] = []
    calls: list[dict] = []
    for section in CONSOLIDATED_SECTIONS:
        heading = f"# {section.title}"
        if section.title in missing:
            note = "_Not available: the document is missing (see the notes at the end)._"
            full_parts.append(f"{heading}\n\n{note}")
            short_parts.append(f"{heading}\n\n{note}")
            continue
        original = originals[section.title]
        full_parts.append(f"{heading}\n\n{original}")
        outcome = outcomes[section.title]
        if outcome.ok:
            shortened, metadata = outcome.result()
            calls.append({"section": section.title, "markers": shortened.markers, "metadata": metadata})
            if shortened.markers == "unterminated":
                # The reply stopped before its end marker, so the shortened text is likely cut off;
                # the full text is kept rather than passing a truncated section on to later steps.
                unterminated.append(section.title)
                short_parts.append(f"{heading}\n\n{original}")
            else:
                short_parts.append(f"{heading}\n\n{shortened.markdown}")
        else:
            failed[section.title] = _first_line(outcome.failure())
            calls.append({"section": section.title, "error": failed[section.title]})
            short_parts.append(f"{heading}\n\n{original}")

    missing_notes = [("Documents missing", [f"{title}: {problem}" for title, problem in missing.items()])]
    short_notes = [
        *missing_notes,
        (
            "Sections kept in full",
            [
                f"{title}: shortening failed ({error}); the full text is used"
                for title, error in failed.items()
            ]
            + [
                f"{title}: the shortened reply ended without its end marker and looks cut off; "
                "the full text is used"
                for title in unterminated
            ],
        ),
    ]
    log_notes(ctx.logger, step.name, short_notes)

    return StepResult(
        files={
            step.outputs["full"]: "\n\n".join(full_parts) + notes_markdown(missing_notes) + "\n",
            step.outputs["short"]: "\n\n".join(short_parts) + notes_markdown(short_notes) + "\n",
        },
        notes={
            "llm_calls": len(to_shorten),
            "sections": len(CONSOLIDATED_SECTIONS),
            "shortened": len(to_shorten) - len(failed) - len(unterminated),
            "failed_sections": failed,
            "missing_sections": missing,
            "unterminated_replies": unterminated,
            "calls": calls,
        },
    )
