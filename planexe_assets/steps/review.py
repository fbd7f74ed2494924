"""Summary and review: a critical read-through of the finished plan, then the executive summary.

``review_plan`` puts a fixed series of sixteen review questions to one model in a single growing
conversation: the plan's documents arrive with the first question, every answer is appended as an
assistant turn, so later questions can avoid repeating earlier points. ``executive_summary`` then
condenses the same documents plus that review into the one-page summary that opens the final report.

Both steps read the same document bundle; ``read_plan_documents`` is shared with the Q&A and
premortem steps in ``qa.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from planexe_assets.core import ChatMessage, Items, StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import bundle, dump_json, messages, raw_record
from planexe_assets.steps.doc_notes import log_notes, notes_markdown

# ---------------------------------------------------------------------------------------------------
# The document bundle every summary/review step reads
# ---------------------------------------------------------------------------------------------------

# (name shown to the model, requires() key, upstream output key), in the order the model reads them.
PLAN_DOCUMENTS: tuple[tuple[str, str, str], ...] = (
    ("strategic_decisions.md", "strategic_decisions_markdown", "markdown"),
    ("scenarios.md", "scenarios_markdown", "markdown"),
    ("assumptions.md", "consolidate_assumptions_markdown", "short"),
    ("project-plan.md", "project_plan", "markdown"),
    ("data-collection.md", "data_collection", "markdown"),
    ("related-resources.md", "related_resources", "markdown"),
    ("swot-analysis.md", "swot_analysis", "markdown"),
    ("team.md", "team_markdown", ""),
    ("pitch.md", "pitch_markdown", "markdown"),
    ("expert-review.md", "expert_review", ""),
    ("work-breakdown-structure.csv", "wbs_project123", "csv"),
)
REVIEW_DOCUMENT = ("review-plan.md", "review_plan", "markdown")


def read_plan_documents(
    inputs: StepInputs, extra: Sequence[tuple[str, str, str]] = ()
) -> list[tuple[str, str]]:
    """The named documents for the user message; a missing or blank upstream file is a StepError."""
    blocks = []
    for shown_as, key, output in (*PLAN_DOCUMENTS, *extra):
        upstream = inputs[key]
        text = upstream.text(output)
        if not text.strip():
            raise StepError(
                f"upstream file {upstream.filename(output)} of step {upstream.step.name} is empty"
            )
        blocks.append((shown_as, text))
    return blocks


def separate_lists(text: str) -> str:
    """Put a blank line before a list that directly follows a paragraph line, so markdown renders it."""
    out: list[str] = []
    list_item = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
    for line in text.strip().splitlines():
        if list_item.match(line) and out and out[-1].strip() and not list_item.match(out[-1]):
            out.append("")
        out.append(line.rstrip())
    return "\n".join(out)


def _collapse(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------------
# review_plan
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewQuestion:
    title: str
    question: str


_THREE_POINTS = "Give exactly three bullet points."

REVIEW_QUESTIONS: tuple[ReviewQuestion, ...] = (
    ReviewQuestion(
        "Critical Issues",
        "Which three problems in these documents need attention first? For each, put a number on what "
        "it puts at stake (money, time or risk), say how the three problems feed into one another, and "
        f"propose one concrete fix. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Implementation Consequences",
        "What three consequences, good or bad, would follow from carrying this plan out? Estimate the "
        "size of each (cost, time, return), explain how they affect one another, and say what should be "
        f"done about each. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Recommended Actions",
        "Which three actions do the documents most clearly call for? For each, estimate the benefit in "
        f"numbers, state its priority (high, medium or low) and name the first practical step. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Showstopper Risks",
        "Name three risks that could stop the project outright and that the plan does not yet handle. "
        "For each, estimate the damage (budget, delay, lost return), rate its likelihood as High, Medium "
        "or Low, explain how it could compound with the others, recommend a mitigation, and add a "
        f"fallback to use if that mitigation is not enough. Do not repeat earlier points. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Critical Assumptions",
        "Which three assumptions must hold for the plan to work? For each, estimate what it costs if it "
        "turns out false, connect it to the risks already discussed, and say how to check it early. "
        f"{_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Key Performance Indicators",
        "Propose three indicators that would show, over the long run, whether the project succeeds. "
        "Give target values or ranges (and the level that should trigger corrective action), link each "
        f"to the risks or assumptions above, and say how it would be tracked. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Report Objectives",
        "What is this document trying to achieve? State who it is written for, which decisions it "
        f"should support, and how the next revision ought to improve on this one. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Data Quality Concerns",
        "Where are the figures or facts in the documents least reliable or incomplete? For three such "
        "areas, explain why the data matters, estimate what relying on wrong data would cost, and say "
        f"how to verify it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Stakeholder Feedback",
        "What three things should stakeholders confirm or clarify before the next revision? For each, "
        "say why it matters, estimate the effect if it stays unresolved, and suggest how to obtain the "
        f"answer. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Changed Assumptions",
        "Which three assumptions made early in planning may no longer hold, or deserve a second look? "
        "Estimate how a change would shift cost, schedule or return, connect it to earlier points, and "
        f"say how to re-check it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Budget Clarifications",
        "Which three budget questions must be settled before the next revision? For each, estimate the "
        "financial effect (adjustments, reserves, return), explain why it matters, and say how to "
        f"resolve it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Role Definitions",
        "Which three roles or responsibilities need a sharper definition? For each, explain why, "
        "estimate the cost of leaving it vague (delay, unclear accountability), and suggest how to pin "
        f"it down. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Timeline Dependencies",
        "Which three sequencing dependencies in the schedule need to be clarified? For each, estimate "
        "the effect of getting the order wrong (delay, extra cost), link it to earlier points, and say "
        f"how to settle it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Financial Strategy",
        "Which three long-term financial questions does the plan leave open? For each, estimate the "
        "effect of leaving it unanswered, connect it to the assumptions and risks above, and suggest "
        f"how to answer it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Motivation Factors",
        "What three factors will keep the people involved motivated and making steady progress? For "
        "each, estimate the setback if motivation fades (delay, lower success, extra cost), and say how "
        f"to sustain it. {_THREE_POINTS}",
    ),
    ReviewQuestion(
        "Automation Opportunities",
        "Where could three tasks or processes be automated or streamlined? For each, estimate the "
        "saving (time, people or money), explain how it fits the schedule and resource limits discussed "
        f"above, and suggest how to put it in place. {_THREE_POINTS}",
    ),
)
FAST_REVIEW_QUESTION_COUNT = 3

REVIEW_SYSTEM_PROMPT = """
You are a demanding but fair reviewer of project plans. The user's first message contains the
documents that make up one plan (strategic decisions, scenarios, assumptions, project plan, data
collection, related projects, SWOT analysis, team, pitch, expert criticism and the work breakdown
structure), followed by the first of a series of review questions. Each later message asks one more
question about the same plan.

Answer every question in the `bullet_points` field: a list with exactly three strings. Begin each
string with a short bold headline (for example "**Permit delays threaten the launch:**"), then one or
two sentences that are specific to this plan. Use figures from the documents where they exist; when
you have to estimate a number, say that it is an estimate. Base your points on the documents, not on
generic advice, and do not repeat points you made in earlier answers.
"""


class ReviewBullets(BaseModel):
    """The model's answer to one review question."""

    bullet_points: list[str] = Field(
        min_length=1,
        description="The answer to the current review question: three self-contained points, each "
        "opening with a short bold headline.",
    )


class ReviewAnswer(BaseModel):
    """One question of the review with its answer, as stored in the raw file."""

    title: str
    question: str
    answers: list[str] = Field(default_factory=list)
    error: str | None = None  # set when every model failed to answer this question


def _review_turn(index: int, question: ReviewQuestion) -> str:
    return f"Question {index}: {question.title}\n{question.question}"


def _duration_summary(metadata_list: list[dict[str, Any]]) -> dict[str, Any]:
    durations = [m.get("duration") or 0 for m in metadata_list]
    if not durations:
        return {"duration_total": 0, "duration_average": None, "duration_max": None, "duration_min": None}
    return {
        "duration_total": round(sum(durations), 3),
        "duration_average": round(sum(durations) / len(durations), 3),
        "duration_max": max(durations),
        "duration_min": min(durations),
    }


@register("review_plan", models={"raw": Items(ReviewAnswer, at="question_answers_list")})
def run_review_plan(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """Ask the review questions one after another in one conversation.

    The first question must be answered (without it there is no review). A later question that no
    model could answer is recorded with its error, shown in the markdown and listed in the notes, and
    the conversation continues with the next question.
    """
    documents = bundle(*read_plan_documents(inputs))
    questions = REVIEW_QUESTIONS[:FAST_REVIEW_QUESTION_COUNT] if ctx.fast else REVIEW_QUESTIONS
    system_prompt = REVIEW_SYSTEM_PROMPT.strip()

    conversation: list[ChatMessage] = [{"role": "system", "content": system_prompt}]
    answers: list[ReviewAnswer] = []
    metadata_list: list[dict[str, Any]] = []
    for number, question in enumerate(questions, start=1):
        turn = _review_turn(number, question)
        if number == 1:
            turn = f"{documents}\n\n{turn}"
        attempt = [*conversation, {"role": "user", "content": turn}]
        try:
            reply = ctx.llm.structured(attempt, ReviewBullets, label=f"review_question_{number}")
        except StepError as exc:
            if number == 1:
                raise
            answers.append(ReviewAnswer(title=question.title, question=question.question, error=str(exc)))
            continue
        conversation = [*attempt, {"role": "assistant", "content": reply.text}]
        answers.append(
            ReviewAnswer(title=question.title, question=question.question, answers=reply.value.bullet_points)
        )
        metadata_list.append({"question": number, **reply.metadata})

    failed = [a.title for a in answers if a.error is not None]
    log_notes(ctx.logger, "review_plan", review_notes(answers))
    raw = {
        "question_answers_list": [a.model_dump(mode="json", exclude_none=True) for a in answers],
        "metadata": {**_duration_summary(metadata_list), "metadata_list": metadata_list},
        "system_prompt": system_prompt,
        "user_prompt": documents,
    }
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw),
            step.outputs["markdown"]: render_review_plan(answers),
        },
        notes={
            "questions_asked": len(questions),
            "questions_answered": len(questions) - len(failed),
            "failed_questions": failed,
        },
    )


def render_review_plan(answers: Sequence[ReviewAnswer]) -> str:
    """One section per question: the question asked, then its numbered points (or that it has none);
    why a question has no answer is in the notes at the end."""
    sections = []
    for number, item in enumerate(answers, start=1):
        lines = [
            f"## Review {number}: {_collapse(item.title)}",
            "",
            f"_Question:_ {_collapse(item.question)}",
            "",
        ]
        if item.error is not None:
            lines.append("**Not answered:** every model failed on this question (see the notes at the end).")
        elif not item.answers:
            lines.append("_The model gave no points for this question._")
        else:
            for point_number, point in enumerate(item.answers, start=1):
                # Continuation lines are indented so a multi-line point stays inside its list item.
                body = "\n   ".join(line.strip() for line in point.strip().splitlines() if line.strip())
                lines.append(f"{point_number}. {body}")
        sections.append("\n".join(lines))
    if not sections:
        return "_No review questions were asked._\n"
    return "\n\n".join(sections).rstrip() + notes_markdown(review_notes(answers)) + "\n"


def review_notes(answers: Sequence[ReviewAnswer]) -> list[str]:
    """The questions every model failed on, with the error, for the log and the document's notes."""
    return [
        f"Review {number} ({_collapse(item.title)}) was not answered: {_collapse(item.error)}"
        for number, item in enumerate(answers, start=1)
        if item.error is not None
    ]


# ---------------------------------------------------------------------------------------------------
# executive_summary
# ---------------------------------------------------------------------------------------------------

EXECUTIVE_SUMMARY_SYSTEM_PROMPT = """
You write the executive summary that opens a project plan. The user's message contains the plan's
documents (strategic decisions, scenarios, assumptions, project plan, data collection, related
projects, SWOT analysis, team, pitch, expert criticism, the work breakdown structure and a critical
review of the plan). Read them and fill in every field:

- focus_and_context: the problem or opportunity that makes this plan necessary, in two or three sentences.
- purpose_and_goals: the main objectives and the measures by which success will be judged.
- key_deliverables_and_outcomes: the concrete results the project will produce; a short bullet list
  (lines starting with "- ") is welcome.
- timeline_and_budget: the overall duration, the main milestones and the money involved, using the
  figures in the documents.
- risks_and_mitigations: the two or three most serious risks and how the plan responds to them.
- audience_tailoring: who this summary is written for and how its tone and level of detail suit them.
- action_orientation: the immediate next steps: who does what, and by when.
- overall_takeaway: the single message a busy decision maker should remember.
- feedback: concrete suggestions for making this summary more persuasive or complete.

Be concise, specific to this plan and factual; do not invent figures that contradict the documents.
"""


class ExecutiveSummary(BaseModel):
    """The executive summary of the plan, section by section."""

    audience_tailoring: str = Field(
        description="Who the summary addresses and how its tone and detail are chosen for them."
    )
    focus_and_context: str = Field(description="The situation that makes the plan necessary.")
    purpose_and_goals: str = Field(description="Main objectives and the criteria for success.")
    key_deliverables_and_outcomes: str = Field(description="The concrete results the project delivers.")
    timeline_and_budget: str = Field(description="Overall duration, milestones and the money involved.")
    risks_and_mitigations: str = Field(description="The most serious risks and the planned responses.")
    action_orientation: str = Field(description="Immediate next steps with owners and dates.")
    overall_takeaway: str = Field(description="The one message a decision maker should keep.")
    feedback: str = Field(description="Suggestions for making the summary stronger.")


# Section order of the rendered summary (it differs from the field order on purpose: context first).
EXECUTIVE_SUMMARY_SECTIONS: tuple[tuple[str, str], ...] = (
    ("focus_and_context", "Focus and Context"),
    ("purpose_and_goals", "Purpose and Goals"),
    ("key_deliverables_and_outcomes", "Key Deliverables and Outcomes"),
    ("timeline_and_budget", "Timeline and Budget"),
    ("risks_and_mitigations", "Risks and Mitigations"),
    ("audience_tailoring", "Audience Tailoring"),
    ("action_orientation", "Action Orientation"),
    ("overall_takeaway", "Overall Takeaway"),
    ("feedback", "Feedback"),
)


@register("executive_summary", models={"raw": ExecutiveSummary})
def run_executive_summary(ctx: StepContext, inputs: StepInputs) -> StepResult:
    """One structured call over the plan's documents and the review."""
    user_prompt = bundle(*read_plan_documents(inputs, extra=(REVIEW_DOCUMENT,)))
    system_prompt = EXECUTIVE_SUMMARY_SYSTEM_PROMPT.strip()
    reply = ctx.llm.structured(
        messages(system_prompt, user_prompt), ExecutiveSummary, label="executive_summary"
    )
    step = ctx.step
    return StepResult(
        files={
            step.outputs["raw"]: dump_json(raw_record(reply, system_prompt, user_prompt)),
            step.outputs["markdown"]: render_executive_summary(reply.value),
        },
    )


def render_executive_summary(summary: ExecutiveSummary) -> str:
    """Nine ``##`` sections in a fixed order; lists inside a section get the blank line markdown needs."""
    sections = []
    for field_name, heading in EXECUTIVE_SUMMARY_SECTIONS:
        text = getattr(summary, field_name).strip()
        sections.append(f"## {heading}\n\n{separate_lists(text) if text else '_Not provided._'}")
    return "\n\n".join(sections) + "\n"
