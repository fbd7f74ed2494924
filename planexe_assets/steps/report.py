"""The final report: every document of the plan in one self-contained, offline HTML page, and the
same sections as markdown for LLMs.

No LLM. ``029-report.html`` holds 22 collapsible sections (``SECTIONS``): the 21 of upstream PlanExe's
2026 report in its order (Gantt Interactive only, Self Audit, Prompt Screening inside Initial Prompt
Vetted, Prompt Adherence last), then our Constraints section (``steps/constraint_matrix.py``: every
constraint of the prompt with its verdict at each of the six constraint checks, violated ones
highlighted); a table of contents and, as title, the WBS level-1 project title. When the prompt
screening said UNUSABLE, a warning banner (reason, confidence, rationale) sits above the sections.
``029-report.md`` (the step's ``markdown`` side file) holds the title as H1, a generated-on line, the
warning as a blockquote, then every section but the Gantt chart as ``# Title`` and its source markdown
unchanged (the WBS as a fenced csv block; Initial Prompt Vetted from ``##`` parts, the prompt in a
fenced text block; missing inputs as a "Not available" line). The page extends the shared page template
(``steps/pages.py``, one stylesheet for every HTML output) and inlines one script of its own
(``static/report.js``); no CDN, nothing fetched.

Navigation. Each section is a ``<details>`` element with a readable, stable id (``executive-summary``,
``work-breakdown-structure``, ...; ``SECTION_IDS``). A contents link, a deep link ``#section`` on
load and any later ``hashchange`` open the section they point to and scroll it into view. On wide
screens the contents are a sticky sidebar, on narrow ones a plain list above the sections; a "Back to
top" control stays in the corner. Without JavaScript the links still scroll to the (closed) sections.

What goes into a section, by kind of input:

- **markdown** is converted with the ``markdown`` package with raw HTML switched off (a ``<tag>`` the
  model wrote is shown as text), then passed through ``sanitize_html``, an allow-list rebuild of the
  HTML: unknown tags and every ``on*`` attribute are dropped, links keep only http/https/mailto/#
  targets, images become their alt text (the report never fetches anything), every table gets a
  horizontally scrolling wrapper. A document's notes (``doc_notes``: how it was made, what went
  wrong) are split off and shown in a closed "Notes" block at the end of the section;
- the **WBS CSV** becomes a table (parsed with the ``csv`` module, empty rows and columns dropped) in
  a container that scrolls horizontally inside the section;
- the **Q&A page** goes through the same allow-list; of our own page only its ``<article>`` is kept
  (PlanExe's fragment, from an imported run, is kept whole);
- the two **Gantt pages** are embedded whole in sandboxed ``<iframe srcdoc>`` elements (escaped as an
  attribute, so nothing in them is parsed as part of the report). A page is embedded only when its
  scripts are our own (the Gantt viewer and the frame-height reporter) and it loads nothing from the
  network; anything else (such as PlanExe's CDN-based pages from an imported run) is shown as "not
  available" with the reason. The embedded page posts its height, and the report sizes the frame to
  the whole chart (a plain 85%-of-the-window frame without JavaScript);
- the **Initial Prompt Vetted** section shows the prompt as escaped text, then the prompt-screening,
  redline-gate and premise-attack documents;
- the **Constraints** section is built from the extraction's and the checks' JSON and rendered by
  the template with autoescaping (model text never becomes markup).

A missing or empty input never fails the step: its section says "Not available" and the step notes
list it. What the sanitizer removed from a section is listed in that section's notes.
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import markdown
from markdown.extensions import Extension
from markupsafe import Markup, escape

from planexe_assets.core import StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps import register
from planexe_assets.steps.common import humanize_key, one_line
from planexe_assets.steps.constraint_matrix import (
    ConstraintMatrix,
    constraint_matrix_markdown,
    matrix_from,
    parse_json_object,
)
from planexe_assets.steps.doc_notes import NoteGroup, log_notes, note_groups, parse_notes, split_notes
from planexe_assets.steps.pages import frame_script, render_page, report_script
from planexe_assets.steps.schedule import viewer_script
from planexe_assets.steps.wbs_tree import parse_project_title

UNTITLED = "Untitled plan"


@dataclass(frozen=True)
class SectionSource:
    title: str
    kind: str  # markdown | gantt | csv | fragment | vetted | constraints
    key: str = ""  # requires() key of the input
    output: str = ""  # output key of that upstream step
    md_output: str | None = None  # output key for report.md, when not ``output`` (None: same)

    @property
    def markdown_output(self) -> str:
        return self.output if self.md_output is None else self.md_output


# Upstream's 2026 order (21 sections), then our Constraints section.
SECTIONS: tuple[SectionSource, ...] = (
    SectionSource("Executive Summary", "markdown", "executive_summary", "markdown"),
    SectionSource("Gantt Interactive", "gantt", "create_schedule", "dhtmlx_html"),
    SectionSource("Pitch", "markdown", "pitch_markdown", "markdown"),
    SectionSource("Project Plan", "markdown", "project_plan", "markdown"),
    SectionSource("Strategic Decisions", "markdown", "strategic_decisions_markdown", "markdown"),
    SectionSource("Scenarios", "markdown", "scenarios_markdown", "markdown"),
    SectionSource("Assumptions", "markdown", "consolidate_assumptions_markdown", "full"),
    SectionSource("Governance", "markdown", "consolidate_governance", ""),
    SectionSource("Related Resources", "markdown", "related_resources", "markdown"),
    SectionSource("Data Collection", "markdown", "data_collection", "markdown"),
    SectionSource("Documents to Create and Find", "markdown", "documents_to_create_and_find", ""),
    SectionSource("SWOT Analysis", "markdown", "swot_analysis", "markdown"),
    SectionSource("Team", "markdown", "team_markdown", ""),
    SectionSource("Expert Criticism", "markdown", "expert_review", ""),
    SectionSource("Work Breakdown Structure", "csv", "wbs_project123", "csv"),
    SectionSource("Review Plan", "markdown", "review_plan", "markdown"),
    SectionSource("Questions & Answers", "fragment", "questions_and_answers", "html", md_output="markdown"),
    SectionSource("Premortem", "markdown", "premortem", "markdown"),
    SectionSource("Self Audit", "markdown", "self_audit", "markdown"),
    SectionSource("Initial Prompt Vetted", "vetted"),
    SectionSource("Prompt Adherence", "markdown", "prompt_adherence", "markdown"),
    SectionSource("Constraints", "constraints"),
)
SECTION_TITLES = tuple(s.title for s in SECTIONS)
OPEN_BY_DEFAULT = {"Executive Summary"}


def section_id(title: str) -> str:
    """The section's element id and deep-link name: its title in lower case, words joined by "-"."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


SECTION_IDS = tuple(section_id(title) for title in SECTION_TITLES)
# Ids of the page itself; the sanitizer drops every id attribute, so document content has none.
PAGE_IDS = ("top", "contents", "main")
if len(set(SECTION_IDS + PAGE_IDS)) != len(SECTION_IDS) + len(PAGE_IDS):  # pragma: no cover - static data
    raise RuntimeError(f"report section ids are not unique: {SECTION_IDS}")

# ---------------------------------------------------------------------------------------------------
# Reading inputs (every one optional)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    text: str | None
    filename: str
    problem: str = ""  # why the text is missing


def load(inputs: StepInputs, key: str, output: str) -> Loaded:
    """An upstream file's text, or None with the reason (never raises for a missing or empty file)."""
    try:
        upstream = inputs[key]
    except StepError:
        return Loaded(None, key, f"the report was not given the '{key}' input")
    try:
        filename = upstream.filename(output)
    except StepError as exc:
        return Loaded(None, key, str(exc))
    try:
        text = upstream.text(output)
    except StepError:
        return Loaded(None, filename, f"{filename} was not produced")
    if not text.strip():
        return Loaded(None, filename, f"{filename} is empty")
    return Loaded(text, filename)


# ---------------------------------------------------------------------------------------------------
# Allow-list HTML sanitizer
# ---------------------------------------------------------------------------------------------------

ALLOWED_TAGS = frozenset(
    "a abbr b blockquote br caption code dd del details div dl dt em h1 h2 h3 h4 h5 h6 hr i ins kbd li mark "
    "ol p pre q s small span strong sub summary sup table tbody td tfoot th thead tr u ul".split()
)
VOID_TAGS = frozenset({"br", "hr"})
# Removed together with everything inside them.
DROPPED_WITH_CONTENT = frozenset(
    "script style iframe frame frameset object embed applet template noscript textarea select "
    "title head svg math canvas audio video".split()
)
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "td": {"colspan", "rowspan", "style"},
    "th": {"colspan", "rowspan", "style"},
    "ol": {"start"},
    "abbr": {"title"},
}
COMMON_ATTRIBUTES = {"class"}
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_TEXT_ALIGN = re.compile(r"^\s*text-align:\s*(left|right|center)\s*;?\s*$", re.IGNORECASE)
_CLASS = re.compile(r"^[A-Za-z0-9_\- ]*$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_IGNORED_IN_URLS = re.compile(r"[\x00-\x20\x7f]+")  # browsers skip these when reading a scheme


def safe_href(value: str) -> str | None:
    """The link target if it is http(s), mailto or an in-page ``#`` fragment; None otherwise.

    ``value`` is the decoded attribute value (entities already resolved). Relative and
    protocol-relative targets are refused too: the report is a single file with nowhere to point.
    """
    compact = _IGNORED_IN_URLS.sub("", value)
    if not compact:
        return None
    if compact.startswith("#"):
        return value.strip()
    match = _SCHEME.match(compact)
    if match and match.group(1).lower() in SAFE_SCHEMES:
        return value.strip()
    return None


@dataclass
class Sanitized:
    html: Markup
    removed: list[str] = field(default_factory=list)  # what was taken out, for the notes


class _AllowListRebuilder(HTMLParser):
    """Re-emits only allowed tags and attributes; all text is escaped again on the way out.

    With ``root``, only what is inside ``<root>`` elements is kept (the element itself is not), and
    ``root_seen`` tells whether there was one. Every table is wrapped in ``<div class="table-scroll">``
    so a wide one scrolls inside its section instead of widening the page.
    """

    def __init__(self, root: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.removed: list[str] = []
        self.skipping: list[str] = []  # the stack of dropped-with-content elements we are inside
        self.root = root
        self.root_seen = False
        self._roots: list[int] = []  # len(self.open) at each open root element

    @property
    def _emitting(self) -> bool:
        return self.root is None or bool(self._roots)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        if self._outside_content(tag, self_closing):
            return
        if tag in DROPPED_WITH_CONTENT:
            self.removed.append(f"<{tag}> element")
            if not self_closing and tag not in VOID_TAGS:
                self.skipping.append(tag)
            return
        if tag == "img":
            alt = next((v for k, v in attrs if k == "alt" and v), "")
            self.removed.append("image (replaced by its description)")
            self.out.append(str(escape(f"[image: {alt}]" if alt else "[image]")))
            return
        if tag not in ALLOWED_TAGS:
            self.removed.append(f"<{tag}> tag")
            return
        kept = self._kept_attributes(tag, attrs)
        if tag == "table":
            self.out.append('<div class="table-scroll">')
        self.out.append(f"<{tag}{''.join(kept)}>")
        if tag in VOID_TAGS:
            return
        if self_closing:
            self._close(tag)
        else:
            self.open.append(tag)

    def _outside_content(self, tag: str, self_closing: bool) -> bool:
        """Handle a start tag that is not content to keep: inside a dropped element, the root element
        itself, or outside the root. Returns True when it was such a tag."""
        if self.skipping:
            if tag in DROPPED_WITH_CONTENT and not self_closing:
                self.skipping.append(tag)
            return True
        if self.root is not None and tag == self.root:
            self.root_seen = True
            if not self_closing:
                self._roots.append(len(self.open))
            return True
        if not self._emitting:
            if tag in DROPPED_WITH_CONTENT and not self_closing:
                self.skipping.append(tag)  # so a <script> outside the root cannot open one
            return True
        return False

    def _kept_attributes(self, tag: str, attrs: list[tuple[str, str | None]]) -> list[str]:
        """The allowed attributes, cleaned and escaped (` name="value"`); each dropped one is noted.
        A link that keeps its href gets rel="noopener noreferrer"."""
        kept = []
        allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | COMMON_ATTRIBUTES
        for name, value in attrs:
            value = value or ""
            clean = self._attribute(tag, name, value, allowed)
            if clean is None:
                self.removed.append(f"{name} attribute on <{tag}>")
                continue
            kept.append(f' {name}="{html.escape(clean, quote=True)}"')
        if tag == "a" and any(k.startswith(" href=") for k in kept):
            kept.append(' rel="noopener noreferrer"')
        return kept

    def _close(self, tag: str) -> None:
        self.out.append(f"</{tag}>")
        if tag == "table":
            self.out.append("</div>")

    @staticmethod
    def _attribute(tag: str, name: str, value: str, allowed: set[str]) -> str | None:
        if name not in allowed:
            return None
        if name == "href":
            return safe_href(value)
        if name == "style":
            return value if _TEXT_ALIGN.match(value) else None
        if name == "class":
            return value if _CLASS.match(value) else None
        if name in {"colspan", "rowspan", "start"}:
            return value if value.isdigit() else None
        return value

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            if tag == self.skipping[-1]:
                self.skipping.pop()
            return
        if self.root is not None and tag == self.root and self._roots:
            depth = self._roots.pop()
            while len(self.open) > depth:
                self._close(self.open.pop())
            return
        if not self._emitting:
            return
        floor = self._roots[-1] if self._roots else 0
        if tag in self.open[floor:]:
            while len(self.open) > floor:
                closing = self.open.pop()
                self._close(closing)
                if closing == tag:
                    break

    def handle_data(self, data: str) -> None:
        if not self.skipping and self._emitting:
            self.out.append(str(escape(data)))

    def handle_comment(self, data: str) -> None:
        pass  # comments are dropped (conditional comments could hide markup)

    def handle_decl(self, decl: str) -> None:
        pass

    def handle_pi(self, data: str) -> None:
        pass

    def unknown_decl(self, data: str) -> None:
        pass

    def result(self) -> Sanitized:
        self.close()
        while self.open:
            self._close(self.open.pop())
        return Sanitized(Markup("".join(self.out)), self.removed)


def sanitize_html(fragment: str, root: str | None = None) -> Sanitized:
    """Keep only harmless markup from ``fragment`` (see ``ALLOWED_TAGS`` and ``safe_href``).

    With ``root`` (a tag name), keep only the content of the ``<root>`` elements when there is one;
    a fragment without it is kept whole.
    """
    parser = _AllowListRebuilder(root)
    parser.feed(fragment)
    result = parser.result()
    if root is not None and not parser.root_seen:
        return sanitize_html(fragment)
    return result


# ---------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------


class _RawHtmlAsText(Extension):
    """Without the raw-HTML block and inline processors, ``<tag>`` in markdown is escaped like any text."""

    def extendMarkdown(self, md: markdown.Markdown) -> None:
        md.preprocessors.deregister("html_block")
        md.inlinePatterns.deregister("html")


def render_markdown(text: str) -> Sanitized:
    """Markdown to sanitized HTML. Tables and fenced code are on for every document: our upstream
    renderers use tables throughout (PlanExe enabled them for two sections only)."""
    converter = markdown.Markdown(
        extensions=[_RawHtmlAsText(), "tables", "fenced_code", "sane_lists"], output_format="html"
    )
    return sanitize_html(converter.convert(text))


def nl2br(text: str) -> Markup:
    """Escaped text with its line breaks kept as ``<br>``."""
    return Markup("<br>\n").join(escape(line) for line in text.strip().splitlines())


# ---------------------------------------------------------------------------------------------------
# The WBS table
# ---------------------------------------------------------------------------------------------------

CSV_DELIMITERS = ";,\t|"


def read_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a delimited file; the delimiter is the candidate most used in the header.

    Empty rows are dropped, and so are columns with no value below the header (as PlanExe's
    ``dropna``) unless there are no data rows at all.
    """
    rows = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=_delimiter(text))]
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    rows = _without_empty_columns(rows)
    return rows[0], rows[1:]


def _delimiter(text: str) -> str:
    """The candidate delimiter the header line uses most; ``;`` when it uses none."""
    first_line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    delimiter = max(CSV_DELIMITERS, key=first_line.count)
    return delimiter if first_line.count(delimiter) else ";"


def _without_empty_columns(rows: list[list[str]]) -> list[list[str]]:
    """Rows padded to one width, without the columns that have no value below the header (or, with
    no data rows, in the header)."""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    body = rows[1:] or rows
    keep = [i for i in range(width) if any(row[i].strip() for row in body)]
    return [[row[i] for i in keep] for row in rows]


# ---------------------------------------------------------------------------------------------------
# Gantt pages
# ---------------------------------------------------------------------------------------------------

_URL_ATTRIBUTES = frozenset(
    {"href", "src", "action", "formaction", "xlink:href", "poster", "data", "background", "srcset"}
)
_FORBIDDEN_IN_EMBEDS = frozenset({"iframe", "frame", "object", "embed", "base", "form", "applet"})
_REMOTE_CSS = re.compile(r"@import|url\(\s*['\"]?\s*(?:[a-z][a-z0-9+.\-]*:|//)", re.IGNORECASE)


class _EmbedInspector(HTMLParser):
    """Collects what a page would run or fetch: scripts, event handlers, URLs, embedded objects."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self.scripts: list[tuple[str, str]] = []  # (type, text) of inline scripts
        self._in_script: str | None = None
        self._script_text: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag in _FORBIDDEN_IN_EMBEDS:
            self.problems.append(f"a <{tag}> element")
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            self.problems.append("a meta refresh")
        for name, value in values.items():
            if name.startswith("on"):
                self.problems.append(f"an event handler attribute ({name}) on <{tag}>")
            elif name in _URL_ATTRIBUTES and value.strip():
                self.problems.append(f"a {name}= reference on <{tag}> ({value.strip()[:80]})")
            elif name == "style" and _REMOTE_CSS.search(value):
                self.problems.append(f"a style attribute that loads a resource on <{tag}>")
        if tag == "script":
            self._in_script = values.get("type", "").strip().lower()
            self._script_text = []
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script, "".join(self._script_text)))
            self._in_script = None
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            self._script_text.append(data)
        elif self._in_style and _REMOTE_CSS.search(data):
            self.problems.append("a stylesheet that loads a resource")


def known_page_scripts() -> tuple[str, ...]:
    """The scripts a Gantt page may run to be embedded: our viewer and our frame-height reporter."""
    return (str(viewer_script()).strip(), str(frame_script()).strip())


def inspect_gantt_page(page: str) -> tuple[list[str], bool]:
    """What stops ``page`` from being embedded, and whether it runs any (known) script.

    Allowed: inline styles without remote resources, ``application/json`` data blocks, and inline
    scripts whose text is exactly one of ``known_page_scripts``. Anything else is a problem to report.
    """
    inspector = _EmbedInspector()
    inspector.feed(page)
    inspector.close()
    problems = list(inspector.problems)
    known = known_page_scripts()
    runs_script = False
    for script_type, text in inspector.scripts:
        if script_type == "application/json":
            continue
        if text.strip() in known:
            runs_script = True
        else:
            problems.append("a script that is not the planexe Gantt viewer")
    return problems, runs_script


# ---------------------------------------------------------------------------------------------------
# Building the sections
# ---------------------------------------------------------------------------------------------------


@dataclass
class Section:
    title: str
    anchor: str
    kind: str  # missing | html | table | gantt | vetted
    available: bool = True
    note: str = ""  # for "missing": why
    html: Markup = Markup("")
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    srcdoc: str = ""
    sandbox: str = ""
    parts: list[dict[str, Any]] = field(default_factory=list)  # for "vetted"
    removed: list[str] = field(default_factory=list)
    doc_notes: list[NoteGroup] = field(default_factory=list)  # the document's own notes
    matrix: ConstraintMatrix | None = None  # for "constraints"
    markdown: str = ""  # the section's body in report.md

    @property
    def open(self) -> bool:
        # The Constraints section opens itself when a stage violated a constraint.
        return self.title in OPEN_BY_DEFAULT or bool(self.matrix and self.matrix.violations)

    @property
    def notes(self) -> list[NoteGroup]:
        """The closed "Notes" block at the end of the section: the document's notes, then what the
        sanitizer removed (each kind once, with its count)."""
        groups = list(self.doc_notes)
        if self.removed:
            counts: dict[str, int] = {}
            for item in self.removed:
                counts[item] = counts.get(item, 0) + 1
            lines = [f"{item} ({n}x)" if n > 1 else item for item, n in counts.items()]
            groups += note_groups([("Removed from this section's source as unsafe or unsupported", lines)])
        return groups

    @property
    def notes_count(self) -> int:
        return sum(len(g.lines) for g in self.notes)


def _missing(title: str, anchor: str, reason: str) -> Section:
    return Section(title=title, anchor=anchor, kind="missing", available=False, note=reason)


def _markdown_section(title: str, anchor: str, text: str) -> Section:
    body, notes = split_notes(text)
    rendered = render_markdown(body)
    return Section(
        title,
        anchor,
        "html",
        html=rendered.html,
        removed=rendered.removed,
        doc_notes=parse_notes(notes),
        markdown=text.strip(),
    )


def _fence(text: str, info: str) -> str:
    """``text`` in a fenced code block whose fence is longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip()}\n{fence}"


def _not_available_md(reason: str) -> str:
    return f"_Not available: {one_line(reason)}_"


def build_section(source: SectionSource, inputs: StepInputs) -> Section:
    anchor = section_id(source.title)
    if source.kind == "vetted":
        return _vetted_section(source.title, anchor, inputs)
    if source.kind == "constraints":
        return _constraints_section(source.title, anchor, inputs)
    section = _html_section(source, anchor, inputs)
    if source.kind == "gantt":
        return section  # HTML only: report.md leaves the Gantt section out
    loaded = load(inputs, source.key, source.markdown_output)
    if loaded.text is None:
        section.markdown = _not_available_md(loaded.problem)
    elif source.kind == "csv":
        section.markdown = _fence(loaded.text, "csv")
    else:
        section.markdown = loaded.text.strip()
    return section


def _html_section(source: SectionSource, anchor: str, inputs: StepInputs) -> Section:
    loaded = load(inputs, source.key, source.output)
    if loaded.text is None:
        return _missing(source.title, anchor, loaded.problem)
    if source.kind == "markdown":
        return _markdown_section(source.title, anchor, loaded.text)
    if source.kind == "fragment":
        cleaned = sanitize_html(loaded.text, root="article")
        return Section(source.title, anchor, "html", html=cleaned.html, removed=cleaned.removed)
    if source.kind == "csv":
        header, rows = read_table(loaded.text)
        if not header:
            return _missing(source.title, anchor, f"{loaded.filename} has no rows")
        return Section(source.title, anchor, "table", header=header, rows=rows)
    problems, runs_script = inspect_gantt_page(loaded.text)
    if problems:
        listed = "; ".join(dict.fromkeys(problems))
        return _missing(
            source.title,
            anchor,
            f"{loaded.filename} was not embedded because it contains {listed}. "
            "Re-run the schedule step to get an offline chart.",
        )
    return Section(
        source.title, anchor, "gantt", srcdoc=loaded.text, sandbox="allow-scripts" if runs_script else ""
    )


VETTED_PARTS = (
    ("Prompt Screening", "screen_planning_prompt"),
    ("Redline Gate", "redline_gate"),
    ("Premise Attack", "premise_attack"),
)


def _vetted_section(title: str, anchor: str, inputs: StepInputs) -> Section:
    prompt = load(inputs, "setup", "")
    parts: list[dict[str, Any]] = [
        {
            "heading": "Initial Prompt",
            "prompt": True,
            "html": nl2br(prompt.text) if prompt.text is not None else None,
            "note": prompt.problem,
        }
    ]
    md = [
        "## Initial Prompt",
        "",
        _fence(prompt.text, "text") if prompt.text is not None else _not_available_md(prompt.problem),
    ]
    removed: list[str] = []
    notes: list[NoteGroup] = []
    for heading, key in VETTED_PARTS:
        loaded = load(inputs, key, "markdown")
        part = _markdown_section(heading, "", loaded.text) if loaded.text is not None else None
        if part is not None:
            removed.extend(part.removed)
            notes += [
                NoteGroup(f"{heading}: {g.heading}" if g.heading else heading, g.lines)
                for g in part.doc_notes
            ]
        parts.append(
            {"heading": heading, "prompt": False, "html": part.html if part else None, "note": loaded.problem}
        )
        md += [
            "",
            f"## {heading}",
            "",
            loaded.text.strip() if loaded.text is not None else _not_available_md(loaded.problem),
        ]
    if all(part["html"] is None for part in parts):
        section = _missing(title, anchor, "; ".join(part["note"] for part in parts))
    else:
        section = Section(title, anchor, "vetted", parts=parts, removed=removed, doc_notes=notes)
    section.markdown = "\n".join(md)
    return section


def _constraints_section(title: str, anchor: str, inputs: StepInputs) -> Section:
    def read(key: str, output: str) -> tuple[str | None, str]:
        loaded = load(inputs, key, output)
        return loaded.text, loaded.problem

    matrix = matrix_from(read)
    markdown_body = constraint_matrix_markdown(matrix).strip()
    if not matrix.rows and not matrix.any_check and matrix.extraction_problem:
        section = _missing(
            title, anchor, f"no extracted constraints ({matrix.extraction_problem}) and no constraint check"
        )
        section.markdown = markdown_body
        return section
    notes = note_groups([("How the checks were read", matrix.notes)]) if matrix.notes else []
    return Section(title, anchor, "constraints", matrix=matrix, doc_notes=notes, markdown=markdown_body)


# ---------------------------------------------------------------------------------------------------
# The prompt-screening banner
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screening:
    verdict: str
    reason: str
    confidence: str
    rationale: str

    @property
    def unusable(self) -> bool:
        return self.verdict == "UNUSABLE"

    @property
    def reason_label(self) -> str:
        return humanize_key(self.reason) if self.reason else "unspecified"


def read_screening(inputs: StepInputs) -> tuple[Screening | None, str]:
    """The prompt screening's verdict (``screen_planning_prompt`` raw JSON), or None and why not."""
    loaded = load(inputs, "screen_planning_prompt", "raw")
    data, problem = parse_json_object(loaded.text) if loaded.text is not None else (None, loaded.problem)
    if data is None:
        return None, f"prompt screening: {problem}"
    verdict = str(data.get("verdict") or "").strip().upper()
    if verdict not in {"USABLE", "UNUSABLE"}:
        return None, f"prompt screening: {loaded.filename} has no USABLE/UNUSABLE verdict"
    return (
        Screening(
            verdict,
            one_line(data.get("reason") or ""),
            one_line(data.get("confidence") or ""),
            str(data.get("rationale") or "").strip(),
        ),
        "",
    )


def banner_markdown(screening: Screening) -> str:
    text = (
        f"**Prompt quality warning.** The prompt was screened as unusable for planning "
        f"(reason: {screening.reason_label}"
        + (f", confidence: {screening.confidence}" if screening.confidence else "")
        + "). The plan below was generated anyway; read it with that in mind."
    )
    lines = [text]
    if screening.rationale:
        lines += ["", one_line(screening.rationale)]
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def report_title(inputs: StepInputs) -> tuple[str, str]:
    """The WBS level-1 project title (JSON string, object or PlanExe's plain text) and any problem."""
    loaded = load(inputs, "wbs_level1", "project_title")
    if loaded.text is None:
        return UNTITLED, loaded.problem
    try:
        return parse_project_title(loaded.text), ""
    except StepError as exc:
        return UNTITLED, str(exc)


def render_report(
    title: str, created: str, sections: list[Section], screening: Screening | None = None
) -> str:
    return render_page(
        "report.html.j2",
        title=title,
        created=created,
        sections=sections,
        banner=screening if screening is not None and screening.unusable else None,
        report_script=report_script(),
    )


def render_report_markdown(
    title: str, created: str, sections: list[Section], screening: Screening | None = None
) -> str:
    """report.md: the same sections as markdown, for LLMs (no Gantt; the WBS as a csv block)."""
    out = [f"# {one_line(title)}", "", f"Generated on {created}."]
    if screening is not None and screening.unusable:
        out += ["", banner_markdown(screening)]
    for section in sections:
        if section.kind == "gantt" or (section.kind == "missing" and section.title.startswith("Gantt")):
            continue
        body = section.markdown or _not_available_md(section.note or "no content")
        out += ["", f"# {section.title}", "", body]
    return "\n".join(out).rstrip() + "\n"


def report_notes(
    title: str, title_problem: str, sections: list[Section], screening: Screening | None
) -> dict[str, Any]:
    """The step's notes (the asset's metadata): sections, sanitizer removals, screening, constraints."""
    constraints = next((s.matrix for s in sections if s.matrix is not None), None)
    return {
        "title": title,
        "title_problem": title_problem,
        "sections": len(sections),
        "sections_available": sum(1 for s in sections if s.available),
        "sections_not_available": {s.title: s.note for s in sections if not s.available},
        "removed_from_sections": {s.title: s.removed for s in sections if s.removed},
        "screening": screening.verdict if screening is not None else None,
        "constraints": len(constraints.rows) if constraints is not None else 0,
        "constraints_violated": len(constraints.violated_rows) if constraints is not None else 0,
    }


@register("report")
def run_report(ctx: StepContext, inputs: StepInputs) -> StepResult:
    title, title_problem = report_title(inputs)
    sections = [build_section(source, inputs) for source in SECTIONS]
    screening, screening_problem = read_screening(inputs)
    created = ctx.plan_created_at.strftime("%Y-%m-%d %H:%M UTC")
    page = render_report(title, created, sections, screening)
    markdown_report = render_report_markdown(title, created, sections, screening)
    notes = report_notes(title, title_problem, sections, screening)
    problems = [
        (
            "Sections not available",
            [f"{name}: {reason}" for name, reason in notes["sections_not_available"].items()],
        ),
        ("Title", [f"no project title ({title_problem}); using {UNTITLED!r}"] if title_problem else []),
        ("Prompt screening", [screening_problem] if screening_problem else []),
    ]
    log_notes(ctx.logger, "report", problems)
    return StepResult(
        files={ctx.step.output(""): page},
        side_files={ctx.step.side_file("markdown"): markdown_report},
        notes=notes,
    )
