"""Expert review: find the experts who should critique the plan, then consult some of them.

Two phases, all in one step:

1. Finder, a two-turn conversation: the model names a first round of experts, then (with its own
   answer in the history) is asked for more who do not overlap. Each expert gets a uuid4 id here.
   Side files: ``015-1-experts_raw.json`` (both answers merged) and ``015-2-experts.json``.
2. Criticism: the first ``MAX_EXPERTS_CONSULTED`` experts each review the same documents, in
   parallel. Side file per consulted expert: ``016-1-{n}-expert_criticism_raw.json``.

The reference pipeline also consults only the first two experts but says nothing about the rest.
Here the markdown states how many were found and how many consulted, lists the others so they can
be consulted later, and reports a failed second finder round or a failed consultation instead of
hiding it (logged, and in the notes at the end of the markdown). The step fails only when no expert could be found or every consultation failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from planexe_assets.core import (
    ChatMessage,
    Items,
    StepContext,
    StepError,
    StepInputs,
    StepResult,
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

# Consulting costs one call per expert; two keeps the step's cost close to the reference's.
MAX_EXPERTS_CONSULTED = 2

# ------------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------------

FINDER_PROMPT = """
You pick the outside experts whose critique would most improve a plan. The user message holds the
plan, its strategy, its scenario, a pre-project assessment, the project plan and a SWOT analysis.

Find where the plan is most likely to fail or is least informed, and name four experts, each from a
different field, who could judge exactly those weak spots. Real-world professions only; no famous
individuals. For each expert:
- expert_title: the profession or role, e.g. "Tunnel Construction Engineer".
- expert_knowledge: the industries and specialisations they draw on.
- expert_why: which weakness or open question in the documents makes them necessary.
- expert_what: which part of the material they should review and advise on.
- expert_relevant_skills: the skills that matter for this review.
- expert_search_query: a short query that would find such a person on a professional network.
"""

FINDER_FOLLOW_UP = """
Name four more experts in the same format. They must cover fields and weak spots that the experts
you already named do not, so that together the list gives the widest useful review of the plan.
"""

CRITICISM_PROMPT = """
Take on the role of the expert described in expert.md at the top of the user message: their title,
knowledge and skills are yours. The rest of the user message is a project's plan and its analysis.
The plan's owner has hired you for a frank review from your professional angle. Do not praise; find
what is wrong, missing or unrealistic, and say how to fix it.

Answer with:
- negative_feedback_list: the three to five most serious problems, most serious first, each with
  feedback_index (1, 2, ...), feedback_title (the problem in a few words), feedback_verbose (a
  detailed explanation that points at the documents), feedback_problem_tags (a few short lowercase
  tags), feedback_mitigation (concrete steps: whom to consult, what data or document to produce,
  what to read), feedback_consequence (what happens if nothing is done) and feedback_root_cause
  (why the problem arose).
- user_primary_actions: the actions the owner must take first.
- user_secondary_actions: useful follow-up actions of lower urgency.
- follow_up_consultation: what to discuss and what to bring to the next session with you.
"""

# ------------------------------------------------------------------------------------------------
# Response models
# ------------------------------------------------------------------------------------------------


class ProposedExpert(BaseModel):
    expert_title: str = Field(description="The expert's profession or role.")
    expert_knowledge: str = Field(description="Industries and specialisations the expert draws on.")
    expert_why: str = Field(description="Which weakness or open question makes this expert necessary.")
    expert_what: str = Field(description="Which part of the material the expert should review.")
    expert_relevant_skills: str = Field(description="Skills that matter for this review.")
    expert_search_query: str = Field(
        description="Query that would find such a person on a professional network."
    )


class ProposedExperts(BaseModel):
    experts: list[ProposedExpert] = Field(description="The proposed experts, each from a different field.")


class FirstRoundExperts(ProposedExperts):
    """The first round's answer: at least one expert, or the step has nobody to consult. Stated in
    the schema, a reply of ``{"experts": []}`` (Gemma 3 270M gave it four times in a row) fails
    validation and is repaired once, and a grammar-constrained server (llama.cpp) cannot write it.
    The second round, asking for more, may rightly find none."""

    experts: list[ProposedExpert] = Field(
        min_length=1, description="The proposed experts, each from a different field; at least one."
    )


class NegativeFeedbackItem(BaseModel):
    feedback_index: int = Field(description="Position of the problem in the list, starting at 1.")
    feedback_title: str = Field(description="The problem in a few words.")
    feedback_verbose: str = Field(
        description="Detailed explanation of the problem, pointing at the documents."
    )
    feedback_problem_tags: list[str] = Field(
        description="A few short lowercase tags classifying the problem."
    )
    feedback_mitigation: str = Field(description="Concrete steps to mitigate the problem.")
    feedback_consequence: str = Field(description="What happens if nothing is done.")
    feedback_root_cause: str = Field(description="Why the problem arose.")


class ExpertConsultation(BaseModel):
    negative_feedback_list: list[NegativeFeedbackItem] = Field(
        description="The most serious problems found, most serious first."
    )
    user_primary_actions: list[str] = Field(description="Actions the plan's owner must take first.")
    user_secondary_actions: list[str] = Field(description="Useful follow-up actions of lower urgency.")
    follow_up_consultation: str = Field(description="What to discuss and bring to the next session.")


class ExpertRecord(BaseModel):
    """One entry of ``015-2-experts.json``: an expert as ``clean_expert`` stores it."""

    id: str
    title: str
    knowledge: str
    why: str
    what: str
    skills: str
    search_query: str


# ------------------------------------------------------------------------------------------------
# Step function
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsultationResult:
    """One consulted expert: the consultation, or why it failed."""

    expert: dict[str, Any]
    consultation: ExpertConsultation | None = None
    error: str | None = None


def clean_expert(expert: ProposedExpert) -> dict[str, Any]:
    """The stored form of an expert, with an id of ours."""
    return {
        "id": str(uuid.uuid4()),
        "title": expert.expert_title,
        "knowledge": expert.expert_knowledge,
        "why": expert.expert_why,
        "what": expert.expert_what,
        "skills": expert.expert_relevant_skills,
        "search_query": expert.expert_search_query,
    }


def expert_profile(expert: dict[str, Any]) -> str:
    return (
        f"Title: {expert['title']}\nKnowledge: {expert['knowledge']}\nSkills: {expert['skills']}\n"
        f"Asked to review: {expert['what']}\nWhy consulted: {expert['why']}"
    )


@register(
    "expert_review",
    models={
        "experts_raw": ProposedExperts,
        "experts": Items(ExpertRecord),
        "criticism_raw": ExpertConsultation,
    },
)
def run_expert_review(ctx: StepContext, inputs: StepInputs) -> StepResult:
    query = bundle(
        ("plan.txt", inputs["setup"].text()),
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("pre-project-assessment.json", compact_json_for_prompt(inputs["preproject"].json("clean"))),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("swot-analysis.md", inputs["swot_analysis"].text("markdown")),
    )

    # Phase 1: the finder conversation.
    first_turn = messages(FINDER_PROMPT, query)
    first = ctx.llm.structured(first_turn, FirstRoundExperts, label="expert_finder_1")
    second_turn: list[ChatMessage] = [
        *first_turn,
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": FINDER_FOLLOW_UP.strip()},
    ]
    metadata: dict[str, Any] = {"result1": {**first.metadata, "expert_count": len(first.value.experts)}}
    found = list(first.value.experts)
    rounds = [len(first.value.experts)]
    finder_error: str | None = None
    try:
        second = ctx.llm.structured(second_turn, ProposedExperts, label="expert_finder_2")
    except StepError as exc:
        # The first round's experts are still worth consulting; the gap is reported below.
        finder_error = str(exc)
        metadata["result2"] = {"error": finder_error}
    else:
        found.extend(second.value.experts)
        rounds.append(len(second.value.experts))
        metadata["result2"] = {**second.metadata, "expert_count": len(second.value.experts)}

    experts = [clean_expert(expert) for expert in found]
    experts_raw = {
        "experts": [expert.model_dump(mode="json") for expert in found],
        "metadata": metadata,
        "system_prompt": FINDER_PROMPT.strip(),
        "user_prompt": query,
        "follow_up_prompt": FINDER_FOLLOW_UP.strip(),
    }

    # Phase 2: the consulted experts review the same documents, concurrently.
    consulted = experts[:MAX_EXPERTS_CONSULTED]
    system_prompt = CRITICISM_PROMPT.strip()

    def consult(item: tuple[int, dict[str, Any]]):
        number, expert = item
        user_prompt = bundle(("expert.md", expert_profile(expert))) + "\n\n" + query
        label = f"expert_criticism_{number}"
        reply = ctx.llm.structured(messages(system_prompt, user_prompt), ExpertConsultation, label=label)
        return reply, user_prompt

    def every_consultation_failed(failed_outcomes) -> str:
        details = "; ".join(
            f"{consulted[o.index]['title']}: {type(o.error).__name__}: {o.error}" for o in failed_outcomes
        )
        return f"every expert consultation failed ({details})"

    outcomes = ctx.map_concurrent(
        consult, list(enumerate(consulted, start=1)), all_failed=every_consultation_failed
    )
    step = ctx.step
    side_files = {
        step.side_file("experts_raw"): dump_json(experts_raw),
        step.side_file("experts"): dump_json(experts),
    }
    results: list[ConsultationResult] = []
    for outcome in outcomes:
        expert = consulted[outcome.index]
        if not outcome.ok:
            message = f"{type(outcome.error).__name__}: {outcome.error}"
            results.append(ConsultationResult(expert=expert, error=message))
            continue
        reply, user_prompt = outcome.result()
        record = raw_record(
            reply, system_prompt, user_prompt, expert_id=expert["id"], expert_title=expert["title"]
        )
        side_files[step.side_file("criticism_raw", outcome.index + 1)] = dump_json(record)
        results.append(ConsultationResult(expert=expert, consultation=reply.value))

    failed = [r for r in results if r.error is not None]
    log_notes(ctx.logger, "expert_review", expert_review_notes(results, finder_error))
    markdown = render_expert_review(experts, results, rounds=rounds, finder_error=finder_error)
    return StepResult(
        files={ctx.step.outputs[""]: markdown},
        side_files=side_files,
        notes={
            "experts_found": len(experts),
            "experts_consulted": len(results),
            "failed_consultations": [r.expert["title"] for r in failed],
            "finder_rounds": rounds,
            "finder_error": finder_error,
        },
    )


# ------------------------------------------------------------------------------------------------
# Markdown
# ------------------------------------------------------------------------------------------------


def _render_profile(expert: dict[str, Any]) -> str:
    return "\n\n".join(
        [
            f"**Knowledge:** {expert['knowledge'].strip()}",
            f"**Why this expert:** {expert['why'].strip()}",
            f"**What to review:** {expert['what'].strip()}",
            f"**Relevant skills:** {expert['skills'].strip()}",
            f"**How to find one:** {expert['search_query'].strip()}",
        ]
    )


def _render_consultation(number: int, consultation: ExpertConsultation) -> str:
    parts = [
        f"### {number}.1 Primary actions\n\n{md_bullets(consultation.user_primary_actions)}",
        f"### {number}.2 Secondary actions\n\n{md_bullets(consultation.user_secondary_actions)}",
        f"### {number}.3 Follow-up consultation\n\n{consultation.follow_up_consultation.strip() or '_None given._'}",
    ]
    if not consultation.negative_feedback_list:
        parts.append("_The expert raised no issues._")
    for position, item in enumerate(consultation.negative_feedback_list, start=1):
        heading = f"### {number}.{position + 3} Issue: {one_line(item.feedback_title)}"
        if item.feedback_index != position:
            heading += f" (the expert's number {item.feedback_index})"
        tags = ", ".join(tag.strip() for tag in item.feedback_problem_tags if tag.strip()) or "none"
        parts.append(
            "\n\n".join(
                [
                    heading,
                    item.feedback_verbose.strip(),
                    f"**Tags:** {tags}",
                    f"**Mitigation:** {item.feedback_mitigation.strip()}",
                    f"**Consequence if ignored:** {item.feedback_consequence.strip()}",
                    f"**Root cause:** {item.feedback_root_cause.strip()}",
                ]
            )
        )
    return "\n\n".join(parts)


def render_expert_review(
    experts: Sequence[dict[str, Any]],
    results: Sequence[ConsultationResult],
    *,
    rounds: Sequence[int] = (),
    finder_error: str | None = None,
) -> str:
    """Who was found, who was consulted and what they said; the others listed for later."""
    found, consulted = len(experts), len(results)
    rounds_text = (
        f" over {len(rounds)} round{'s' if len(rounds) != 1 else ''} ({' + '.join(map(str, rounds))})"
        if rounds
        else ""
    )
    summary = (
        f"The expert finder proposed **{found}** expert{'s' if found != 1 else ''}{rounds_text}. "
        f"**{consulted}** {'was' if consulted == 1 else 'were'} consulted: the first {consulted} in the order "
        f"proposed, because this pipeline consults at most {MAX_EXPERTS_CONSULTED} experts per plan."
    )
    if found > consulted:
        summary += f" The other {found - consulted} are listed at the end and were not consulted."
    parts = ["# Expert review", summary]

    for number, result in enumerate(results, start=1):
        title = one_line(result.expert["title"])
        if result.consultation is None:
            parts.append(f"## {number}. {title} (consultation failed)")
            parts.append(_render_profile(result.expert))
            parts.append(
                "_The consultation failed, so this expert's review is missing (the reason is in the notes at the end)._"
            )
            continue
        parts.append(f"## {number}. {title}")
        parts.append(_render_profile(result.expert))
        parts.append(_render_consultation(number, result.consultation))

    remaining = experts[consulted:]
    if remaining:
        parts.append("## Experts not consulted")
        for number, expert in enumerate(remaining, start=consulted + 1):
            parts.append(f"### {number}. {one_line(expert['title'])}")
            parts.append(_render_profile(expert))
    notes = expert_review_notes(results, finder_error)
    return "\n\n".join(parts).rstrip() + notes_markdown(notes) + "\n"


def expert_review_notes(results: Sequence[ConsultationResult], finder_error: str | None) -> list[str]:
    """What went wrong while finding and consulting experts, for the log and the document's notes."""
    notes = []
    if finder_error:
        notes.append(
            "The second round of the expert search failed, so only the first round's experts are "
            f"included: {one_line(finder_error)}"
        )
    for number, result in enumerate(results, start=1):
        if result.error is not None:
            notes.append(
                f"Consultation {number} ({one_line(result.expert['title'])}) failed: {one_line(result.error)}"
            )
    return notes
