"""Diagnostics about a document (a failed round, an id the model made up, an estimate not used).

They are facts about how a document was made, not part of what it says, so they never open a
document: a step logs each one through its logger (the Dagster event log, or the Luigi run log) and
appends them at the very end of the document, under one "Notes" block that the report and the HTML
pages show collapsed. Every step that has such notes goes through this module:

- ``log_notes(logger, step, notes)`` logs each note as a warning, prefixed with the step name;
- ``notes_markdown(notes)`` is the block to append to a markdown document: a marker comment, a
  ``## Notes`` heading and one bullet per note (under ``###`` group headings when grouped);
- ``notes_context(notes)`` is what ``_notes.html.j2`` renders: a closed ``<details class="doc-notes">``;
- ``split_notes(markdown)`` and ``parse_notes`` give the report the body and the notes of a markdown
  document apart, so the report shows the notes in the same closed block at the end of the section.

Notes are either a flat sequence of lines or a sequence of ``(group heading, lines)`` pairs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from planexe_assets.steps.common import one_line

NOTES_MARKER = "<!-- planexe:notes -->"
NOTES_HEADING = "Notes"

NoteGroups = Sequence[tuple[str, Sequence[str]]]


@dataclass(frozen=True)
class NoteGroup:
    heading: str  # "" for ungrouped notes
    lines: tuple[str, ...]


def note_groups(notes: Iterable[str] | NoteGroups) -> list[NoteGroup]:
    """Normalise flat lines or ``(heading, lines)`` pairs; empty lines and empty groups are dropped."""
    flat: list[str] = []
    groups: list[NoteGroup] = []
    for item in notes:
        if isinstance(item, str):
            if item.strip():
                flat.append(one_line(item))
            continue
        heading, lines = item
        kept = tuple(one_line(line) for line in lines if str(line).strip())
        if kept:
            groups.append(NoteGroup(one_line(heading), kept))
    if flat:
        groups.insert(0, NoteGroup("", tuple(flat)))
    return groups


def count_notes(notes: Iterable[str] | NoteGroups) -> int:
    return sum(len(g.lines) for g in note_groups(notes))


def log_notes(
    logger: logging.Logger | logging.LoggerAdapter,
    step: str,
    notes: Iterable[str] | NoteGroups,
    level: int = logging.WARNING,
) -> None:
    """One log record per note: ``step: [group: ]note``."""
    for group in note_groups(notes):
        prefix = f"{step}: {group.heading.lower()}: " if group.heading else f"{step}: "
        for line in group.lines:
            logger.log(level, "%s%s", prefix, line)


def notes_markdown(notes: Iterable[str] | NoteGroups) -> str:
    """The block to append at the end of a markdown document ("" when there are no notes).

    It starts with a blank line and ends without a newline, so ``document.rstrip() +
    notes_markdown(notes) + "\n"`` is well formed.
    """
    groups = note_groups(notes)
    if not groups:
        return ""
    out = ["", "", NOTES_MARKER, f"## {NOTES_HEADING}", ""]
    for group in groups:
        if group.heading:
            out += [f"### {group.heading}", ""]
        out += [f"- {_md_line(line)}" for line in group.lines]
        out.append("")
    return "\n".join(out).rstrip()


def _md_line(text: str) -> str:
    # A note is plain text: emphasis and code characters in it are shown as they are.
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("`", "\\`")


def notes_context(notes: Iterable[str] | NoteGroups) -> dict:
    """Template variables for ``_notes.html.j2``: ``doc_notes`` (groups) and ``doc_notes_count``."""
    groups = note_groups(notes)
    return {"doc_notes": groups, "doc_notes_count": sum(len(g.lines) for g in groups)}


def split_notes(markdown_text: str) -> tuple[str, str]:
    """``(body, notes)`` of a markdown document: the notes block after the last marker, without its
    ``## Notes`` heading ("" when the document has none)."""
    body, marker, notes = markdown_text.rpartition(NOTES_MARKER)
    if not marker:
        return markdown_text, ""
    lines = notes.strip().splitlines()
    if lines and lines[0].strip() == f"## {NOTES_HEADING}":
        lines = lines[1:]
    return body.rstrip() + "\n", "\n".join(lines).strip()


_MD_ESCAPED = re.compile(r"\\([\\*`])")


def parse_notes(notes_text: str) -> list[NoteGroup]:
    """The groups of a notes block written by ``notes_markdown`` (the text ``split_notes`` returns).

    ``### heading`` starts a group, ``- `` starts a note, any other line continues the last note.
    """
    groups: list[tuple[str, list[str]]] = [("", [])]
    for line in notes_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("### "):
            groups.append((stripped[4:], []))
        elif stripped.startswith(("- ", "* ")):
            groups[-1][1].append(_MD_ESCAPED.sub(r"\1", stripped[2:]))
        elif stripped and groups[-1][1]:
            groups[-1][1][-1] += " " + _MD_ESCAPED.sub(r"\1", stripped)
        elif stripped:
            groups[-1][1].append(_MD_ESCAPED.sub(r"\1", stripped))
    return note_groups(groups)
