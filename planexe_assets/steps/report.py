"""The final report: every document of the plan in one self-contained, offline HTML page.

No LLM. ``029-report.html`` holds 20 collapsible sections in PlanExe's order (``SECTIONS``), a table of
contents and, as title, the WBS level-1 project title. Sections are ``<details>`` elements, so the page
needs no script of its own.

What goes into a section, by kind of input:

- **markdown** is converted with the ``markdown`` package with raw HTML switched off (a ``<tag>`` the
  model wrote is shown as text), then passed through ``sanitize_html``, an allow-list rebuild of the
  HTML: unknown tags and every ``on*`` attribute are dropped, links keep only http/https/mailto/#
  targets, images become their alt text (the report never fetches anything);
- the **WBS CSV** becomes a table (parsed with the ``csv`` module, empty rows and columns dropped);
- the **Q&A fragment** goes through the same allow-list;
- the two **Gantt pages** are embedded whole in sandboxed ``<iframe srcdoc>`` elements (escaped as an
  attribute, so nothing in them is parsed as part of the report). A page is embedded only when its
  only script is our own Gantt viewer and it loads nothing from the network; anything else (such as
  PlanExe's CDN-based pages from an imported run) is shown as "not available" with the reason;
- the **Initial Prompt Vetted** section shows the prompt as escaped text, then the redline-gate and
  premise-attack documents.

A missing or empty input never fails the step: its section says "Not available" and the notes list it.
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
from jinja2 import Environment, PackageLoader, StrictUndefined
from markdown.extensions import Extension
from markupsafe import Markup, escape

from planexe_assets.steps import register
from planexe_assets.steps.base import StepContext, StepError, StepInputs, StepResult
from planexe_assets.steps.schedule import viewer_script
from planexe_assets.steps.wbs_tree import parse_project_title

UNTITLED = "Untitled plan"


@dataclass(frozen=True)
class SectionSource:
    title: str
    kind: str  # markdown | gantt | csv | fragment | vetted
    key: str = ""  # requires() key of the input
    output: str = ""  # output key of that upstream step


SECTIONS: tuple[SectionSource, ...] = (
    SectionSource("Executive Summary", "markdown", "executive_summary", "markdown"),
    SectionSource("Gantt Overview", "gantt", "create_schedule", "mermaid_html"),
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
    SectionSource("Questions & Answers", "fragment", "questions_and_answers", "html"),
    SectionSource("Premortem", "markdown", "premortem", "markdown"),
    SectionSource("Initial Prompt Vetted", "vetted"),
)
SECTION_TITLES = tuple(s.title for s in SECTIONS)
OPEN_BY_DEFAULT = {"Executive Summary"}

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
    "a abbr b blockquote br caption code dd del div dl dt em h1 h2 h3 h4 h5 h6 hr i ins kbd li mark ol p "
    "pre q s small span strong sub sup table tbody td tfoot th thead tr u ul".split()
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
    """Re-emits only allowed tags and attributes; all text is escaped again on the way out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.removed: list[str] = []
        self.skipping: list[str] = []  # the stack of dropped-with-content elements we are inside

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, self_closing=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], self_closing: bool) -> None:
        if self.skipping:
            if tag in DROPPED_WITH_CONTENT and not self_closing:
                self.skipping.append(tag)
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
        self.out.append(f"<{tag}{''.join(kept)}>")
        if tag in VOID_TAGS:
            return
        if self_closing:
            self.out.append(f"</{tag}>")
        else:
            self.open.append(tag)

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
        if tag in self.open:
            while self.open:
                closing = self.open.pop()
                self.out.append(f"</{closing}>")
                if closing == tag:
                    break

    def handle_data(self, data: str) -> None:
        if not self.skipping:
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
            self.out.append(f"</{self.open.pop()}>")
        return Sanitized(Markup("".join(self.out)), self.removed)


def sanitize_html(fragment: str) -> Sanitized:
    """Keep only harmless markup from ``fragment`` (see ``ALLOWED_TAGS`` and ``safe_href``)."""
    parser = _AllowListRebuilder()
    parser.feed(fragment)
    return parser.result()


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
    first_line = text.lstrip("\ufeff").splitlines()[0] if text.strip() else ""
    delimiter = max(CSV_DELIMITERS, key=first_line.count)
    if first_line.count(delimiter) == 0:
        delimiter = ";"
    rows = [row for row in csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)]
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        return [], []
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    body = rows[1:] or rows
    keep = [i for i in range(width) if any(row[i].strip() for row in body)]
    rows = [[row[i] for i in keep] for row in rows]
    return rows[0], rows[1:]


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


def inspect_gantt_page(page: str) -> tuple[list[str], bool]:
    """What stops ``page`` from being embedded, and whether it runs our viewer.

    Allowed: inline styles without remote resources, ``application/json`` data blocks, and inline
    scripts whose text is exactly our Gantt viewer. Anything else is a problem to report.
    """
    inspector = _EmbedInspector()
    inspector.feed(page)
    inspector.close()
    problems = list(inspector.problems)
    known_viewer = str(viewer_script()).strip()
    runs_viewer = False
    for script_type, text in inspector.scripts:
        if script_type == "application/json":
            continue
        if text.strip() == known_viewer:
            runs_viewer = True
        else:
            problems.append("a script that is not the planexe Gantt viewer")
    return problems, runs_viewer


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

    @property
    def open(self) -> bool:
        return self.title in OPEN_BY_DEFAULT


def _anchor(index: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"section-{index}-{slug}"


def _missing(title: str, anchor: str, reason: str) -> Section:
    return Section(title=title, anchor=anchor, kind="missing", available=False, note=reason)


def build_section(index: int, source: SectionSource, inputs: StepInputs) -> Section:
    anchor = _anchor(index, source.title)
    if source.kind == "vetted":
        return _vetted_section(source.title, anchor, inputs)
    loaded = load(inputs, source.key, source.output)
    if loaded.text is None:
        return _missing(source.title, anchor, loaded.problem)
    if source.kind == "markdown":
        rendered = render_markdown(loaded.text)
        return Section(source.title, anchor, "html", html=rendered.html, removed=rendered.removed)
    if source.kind == "fragment":
        cleaned = sanitize_html(loaded.text)
        return Section(source.title, anchor, "html", html=cleaned.html, removed=cleaned.removed)
    if source.kind == "csv":
        header, rows = read_table(loaded.text)
        if not header:
            return _missing(source.title, anchor, f"{loaded.filename} has no rows")
        return Section(source.title, anchor, "table", header=header, rows=rows)
    problems, runs_viewer = inspect_gantt_page(loaded.text)
    if problems:
        listed = "; ".join(dict.fromkeys(problems))
        return _missing(
            source.title,
            anchor,
            f"{loaded.filename} was not embedded because it contains {listed}. "
            "Re-run the schedule step to get an offline chart.",
        )
    return Section(
        source.title, anchor, "gantt", srcdoc=loaded.text, sandbox="allow-scripts" if runs_viewer else ""
    )


def _vetted_section(title: str, anchor: str, inputs: StepInputs) -> Section:
    prompt = load(inputs, "setup", "")
    parts: list[dict[str, Any]] = [
        {
            "heading": None,
            "html": nl2br(prompt.text) if prompt.text is not None else None,
            "note": prompt.problem,
        }
    ]
    removed: list[str] = []
    for heading, key in (("Redline Gate", "redline_gate"), ("Premise Attack", "premise_attack")):
        loaded = load(inputs, key, "markdown")
        rendered = render_markdown(loaded.text) if loaded.text is not None else None
        if rendered is not None:
            removed.extend(rendered.removed)
        parts.append(
            {"heading": heading, "html": rendered.html if rendered else None, "note": loaded.problem}
        )
    if all(part["html"] is None for part in parts):
        return _missing(title, anchor, "; ".join(part["note"] for part in parts))
    return Section(title, anchor, "vetted", parts=parts, removed=removed)


def report_title(inputs: StepInputs) -> tuple[str, str]:
    """The WBS level-1 project title (JSON string, object or PlanExe's plain text) and any problem."""
    loaded = load(inputs, "wbs_level1", "project_title")
    if loaded.text is None:
        return UNTITLED, loaded.problem
    try:
        return parse_project_title(loaded.text), ""
    except StepError as exc:
        return UNTITLED, str(exc)


_ENV = Environment(
    loader=PackageLoader("planexe_assets", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=StrictUndefined,
)


def render_report(title: str, created: str, sections: list[Section]) -> str:
    return _ENV.get_template("report.html.j2").render(title=title, created=created, sections=sections)


@register("report")
def run_report(ctx: StepContext, inputs: StepInputs) -> StepResult:
    title, title_problem = report_title(inputs)
    sections = [build_section(i, source, inputs) for i, source in enumerate(SECTIONS, start=1)]
    created = ctx.plan_created_at.strftime("%Y-%m-%d %H:%M UTC")
    page = render_report(title, created, sections)

    missing = {s.title: s.note for s in sections if not s.available}
    cleaned = {s.title: s.removed for s in sections if s.removed}
    for name, reason in missing.items():
        ctx.logger.warning("report: section %r not available: %s", name, reason)
    if title_problem:
        ctx.logger.warning("report: no project title (%s); using %r", title_problem, UNTITLED)
    return StepResult(
        files={ctx.step.outputs[""]: page},
        notes={
            "title": title,
            "title_problem": title_problem,
            "sections": len(sections),
            "sections_available": sum(1 for s in sections if s.available),
            "sections_not_available": missing,
            "removed_from_sections": cleaned,
        },
    )
