"""The pitch: the plan told as a persuasive case for backers, then written up as a markdown page.

- ``pitch`` (one structured call): the pitch itself plus why it should work, who it addresses, the
  ask, the risks and how they are handled, success metrics, benefits to stakeholders, ethics,
  partnerships and the long-term vision. The raw JSON is the step's only output.
- ``pitch_markdown`` (one free-text call): the model lays the pitch out as a markdown document
  between ``[START_MARKDOWN]`` and ``[END_MARKDOWN]`` markers. We keep the text between the markers
  (the whole reply when the markers are missing), drop stray markers and code fences, and tidy the
  bullet lists. PlanExe's version of this step could not run with its own LLM wrapper (SPEC §9.1);
  this one goes through ``ctx.llm.text`` like every other call.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, ValidationError

from planexe_assets.core import FailureKind, StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import (
    bundle,
    compact_json_for_prompt,
    dump_json,
    humanize_key,
    messages,
    raw_record,
)
from planexe_assets.steps.doc_notes import log_notes, notes_markdown

# ---------------------------------------------------------------------------------------------------
# The pitch
# ---------------------------------------------------------------------------------------------------

PITCH_SYSTEM_PROMPT = """
You write the pitch for a project: the short, persuasive case that wins over the people whose
support, money or permission the project needs. The user message holds the project's strategic
decisions, the chosen scenario, the project plan, its work breakdown structure (as JSON) and related
past projects.

Write every field as plain prose (a paragraph or a few sentences, no markdown):
- `pitch`: the pitch itself: what the project is, why it matters now, and why it will succeed.
- `why_this_pitch_works`: why this framing should persuade the audience.
- `target_audience`: who the pitch is for (investors, authorities, partners, the public, ...).
- `call_to_action`: the concrete next step you ask the audience to take.
- `risks_and_mitigation`: the main challenges, stated honestly, and how the plan handles them.
- `metrics_for_success`: how success will be measured, with concrete indicators.
- `stakeholder_benefits`: what each group of supporters gains.
- `ethical_considerations`: the ethical questions the project raises and the commitments it makes.
- `collaboration_opportunities`: where partners can join in and what they would contribute.
- `long_term_vision`: the lasting impact if the project succeeds.

Stay faithful to the documents: no invented figures, names or promises they do not support. Reply
with JSON only.
"""


class ProjectPitch(BaseModel):
    pitch: str = Field(
        description="The persuasive case for the project: what it is, why now, why it will work."
    )
    why_this_pitch_works: str = Field(description="Why this framing should convince the audience.")
    target_audience: str = Field(description="Who the pitch is addressed to.")
    call_to_action: str = Field(description="The concrete next step the audience is asked to take.")
    risks_and_mitigation: str = Field(description="The main challenges and how the plan deals with them.")
    metrics_for_success: str = Field(
        description="Concrete indicators that show whether the project succeeds."
    )
    stakeholder_benefits: str = Field(description="What each group of supporters gains.")
    ethical_considerations: str = Field(
        description="Ethical questions raised and the commitments made about them."
    )
    collaboration_opportunities: str = Field(description="Where partners can join and what they would add.")
    long_term_vision: str = Field(description="The lasting impact if the project succeeds.")


@register("pitch", models={"": ProjectPitch})
def run_pitch(ctx: StepContext, inputs: StepInputs) -> StepResult:
    wbs = inputs["wbs_project"].json()
    if not isinstance(wbs, dict):
        raise StepError("the level 1+2 WBS file must hold a JSON object")
    user_prompt = bundle(
        ("strategic_decisions.md", inputs["strategic_decisions_markdown"].text("markdown")),
        ("scenarios.md", inputs["scenarios_markdown"].text("markdown")),
        ("project-plan.md", inputs["project_plan"].text("markdown")),
        ("work-breakdown-structure.json", compact_json_for_prompt(wbs)),
        ("related-resources.md", inputs["related_resources"].text("markdown")),
    )
    reply = ctx.llm.structured(messages(PITCH_SYSTEM_PROMPT, user_prompt), ProjectPitch, label="pitch")
    empty = [name for name, value in reply.value.model_dump().items() if not value.strip()]
    if empty:
        ctx.logger.warning("pitch: the model left these fields empty: %s", empty)
    return StepResult(
        files={ctx.step.outputs[""]: dump_json(raw_record(reply, PITCH_SYSTEM_PROMPT.strip(), user_prompt))},
        notes={"empty_fields": empty},
    )


def render_pitch(pitch: ProjectPitch) -> str:
    """A plain rendering of the pitch JSON: the pitch first, then one section per field."""
    sections = ["# Pitch", pitch.pitch.strip() or "_Empty._"]
    for name, value in pitch.model_dump().items():
        if name != "pitch":
            sections.append(f"## {humanize_key(name)}\n\n{value.strip() or '_Empty._'}")
    return "\n\n".join(sections) + "\n"


# ---------------------------------------------------------------------------------------------------
# The pitch as a markdown document
# ---------------------------------------------------------------------------------------------------

START_MARKER = "[START_MARKDOWN]"
END_MARKER = "[END_MARKDOWN]"

PITCH_MARKDOWN_SYSTEM_PROMPT = f"""
You turn a project pitch into a polished markdown document for the people it addresses. The user
message holds the pitch as JSON: the pitch itself, why it works, the audience, the call to action,
risks and mitigation, success metrics, stakeholder benefits, ethics, collaboration opportunities and
the long-term vision.

Write one document that carries all of that content; rephrase for flow, but drop nothing and add no
facts. Start with a level-1 heading that names the project, use level-2 headings for the sections,
write lists with "- " bullets, and use bold sparingly for the key points. End with the call to action.

Put the document between the line {START_MARKER} and the line {END_MARKER}, and write nothing
outside those markers: no code fences, no comments.
"""


class PitchMarkdownRecord(BaseModel):
    """``020-2-pitch_to_markdown_raw.json``: a free-text reply and the markdown taken from it."""

    response_content: str
    markdown: str = Field(min_length=1)


@register("pitch_markdown", models={"raw": PitchMarkdownRecord})
def run_pitch_markdown(ctx: StepContext, inputs: StepInputs) -> StepResult:
    try:
        pitch = ProjectPitch.model_validate(inputs["pitch"].json())
    except ValidationError as exc:
        raise StepError(f"the pitch file is not a valid pitch: {exc}") from exc
    user_prompt = bundle(("pitch.json", compact_json_for_prompt(pitch)))
    try:
        reply = ctx.llm.text(messages(PITCH_MARKDOWN_SYSTEM_PROMPT, user_prompt), label="pitch_markdown")
        markdown, had_markers = extract_marked_markdown(reply.text)
        if not markdown.strip():
            raise StepError(
                f"the model ({reply.usage.model_id}) returned no markdown for the pitch",
                kind=FailureKind.CONTENT,
            )
    except StepError as exc:
        if exc.kind != FailureKind.CONTENT:
            raise  # an outage or a refusal: retrying the step may help, a plain rendering would hide it
        return _plain_pitch(ctx, pitch, user_prompt, exc)
    markdown = normalise_bullets(markdown).strip() + "\n"
    if not had_markers:
        ctx.logger.warning(
            "pitch_markdown: the reply had no %s/%s markers; kept the whole reply", START_MARKER, END_MARKER
        )
    return _pitch_markdown_result(
        ctx, user_prompt, reply.text, markdown, reply.metadata, {"markers_found": had_markers}
    )


def _plain_pitch(ctx: StepContext, pitch: ProjectPitch, user_prompt: str, error: StepError) -> StepResult:
    """The pitch as the pitch step rendered it, when no model reply could be used (a small local
    model echoed the instructions until max_tokens): the content is all there, only unpolished, and
    the document's notes say why."""
    reason = str(error).splitlines()[0][:300]
    note = f"The model's rewrite could not be used ({reason}); this is the pitch as written, unpolished."
    markdown = render_pitch(pitch).rstrip() + notes_markdown([note]) + "\n"
    log_notes(ctx.logger, ctx.step.name, [note])
    metadata = {"fallback": "render_pitch", "error": reason}
    return _pitch_markdown_result(
        ctx, user_prompt, "", markdown, metadata, {"markers_found": False, "fallback": reason}
    )


def _pitch_markdown_result(
    ctx: StepContext, user_prompt: str, response: str, markdown: str, metadata: dict, notes: dict
) -> StepResult:
    """The raw record (reply, markdown, prompts) and the markdown file of ``pitch_markdown``."""
    record = {
        "response_content": response,
        "markdown": markdown,
        "metadata": metadata,
        "system_prompt": PITCH_MARKDOWN_SYSTEM_PROMPT.strip(),
        "user_prompt": user_prompt,
    }
    outputs = ctx.step.outputs
    return StepResult(
        files={outputs["raw"]: dump_json(record), outputs["markdown"]: markdown},
        notes={**notes, "markdown_chars": len(markdown)},
    )


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)


def extract_marked_markdown(reply: str) -> tuple[str, bool]:
    """The text between the markers, and whether both markers were there.

    With only the start marker, everything after it is kept (the reply was cut short); with neither,
    the whole reply. Stray markers and a code fence wrapped around the document are removed.
    """
    start, end = reply.find(START_MARKER), reply.rfind(END_MARKER)
    had_markers = start != -1 and end != -1 and end > start
    if had_markers:
        body = reply[start + len(START_MARKER) : end]
    elif start != -1:
        body = reply[start + len(START_MARKER) :]
    else:
        body = reply
    body = body.replace(START_MARKER, "").replace(END_MARKER, "").strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1).strip()
    return body, had_markers


_BULLET = re.compile(r"^(\s*)(?:[*+•·▪‣–]|-)\s+(?=\S)")


def normalise_bullets(markdown: str) -> str:
    """Write every bullet as ``- `` and make sure a list is set off from the paragraph before it.

    ``**bold**`` at the start of a line is not a bullet (the marker must be followed by a space).
    Text inside code fences is left alone.
    """
    out: list[str] = []
    in_fence = False
    previous = ""
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            out.append(line)
            previous = line
            continue
        if not in_fence:
            match = _BULLET.match(line)
            if match:
                line = f"{match.group(1)}- {line[match.end() :]}"
                starts_list = (
                    previous.strip() and not _BULLET.match(previous) and not previous.startswith(" ")
                )
                if starts_list and not match.group(1):
                    out.append("")
        out.append(line)
        previous = line
    return "\n".join(out)
