"""report: the recorded real runs, hostile text through every section, and missing inputs."""

from __future__ import annotations

import html
import json
import re
from datetime import date
from html.parser import HTMLParser

import pytest

from planexe_assets.core import STEP_BY_NAME, StepInputs, UpstreamFiles, step_file
from planexe_assets.steps import step_function
from planexe_assets.steps.constraint_matrix import CONSTRAINT_CHECK_STEPS
from planexe_assets.steps.doc_notes import notes_markdown
from planexe_assets.steps.durations import DependencyMapping
from planexe_assets.steps.pages import frame_script, report_script
from planexe_assets.steps.qa import QuestionsAndAnswers, render_questions_and_answers_html
from planexe_assets.steps.report import (
    SECTION_IDS,
    SECTION_TITLES,
    SECTIONS,
    UNTITLED,
    read_table,
    render_markdown,
    run_report,
    safe_href,
    sanitize_html,
)
from planexe_assets.steps.schedule import (
    build_schedule,
    render_interactive_page,
    render_overview_page,
    run_schedule,
    viewer_script,
)
from planexe_assets.steps.wbs_tree import WBSNode
from tests.support.replay import ReplayLLM, context_for, inputs_from_run, load_run_file, load_run_json
from tests.support.runs_2026 import added_files_as_ours

RUNS = ["20250321_silo", "20260310_hong_kong_game"]
REPORT = step_file("report")
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "poster",
    "data",
    "background",
    "srcset",
}


class Page(HTMLParser):
    """Every tag with its attributes, script texts, and the section headings in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.headings: list[str] = []
        self._script: dict[str, str] | None = None
        self._text: list[str] = []
        self._summary_depth = 0
        self._heading: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script, self._text = attributes, []
        if tag == "summary":
            self._summary_depth += 1
        if tag == "h2" and self._summary_depth:
            self._heading = []

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._text)))
            self._script = None
        if tag == "summary":
            self._summary_depth -= 1
        if tag == "h2" and self._heading is not None:
            self.headings.append("".join(self._heading))
            self._heading = None

    def handle_data(self, data):
        if self._script is not None:
            self._text.append(data)
        if self._heading is not None:
            self._heading.append(data)


def parse(page: str) -> Page:
    parser = Page()
    parser.feed(page)
    parser.close()
    return parser


def _dangerous_url(value: str) -> bool:
    compact = re.sub(r"[\x00-\x20\x7f]+", "", value).lower()
    return compact.startswith(("javascript:", "vbscript:", "data:"))


def assert_safe(page: str, *, nested: bool = False) -> Page:
    """No script but our own, no event handler, no dangerous or external resource URL.

    The report runs only its navigation script; the Gantt pages inside ``srcdoc`` are checked as
    documents of their own, which may run only the Gantt viewer and the frame-height reporter.
    """
    parsed = parse(page)
    allowed = (
        {str(viewer_script()).strip(), str(frame_script()).strip()}
        if nested
        else {str(report_script()).strip()}
    )
    for attrs, text in parsed.scripts:
        if attrs.get("type") != "application/json" or not nested:
            assert text.strip() in allowed, "unknown inline script"
        assert "src" not in attrs
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            if name in URL_ATTRIBUTES:
                assert not _dangerous_url(value), f"{name}={value!r} on <{tag}>"
                if tag != "a":
                    assert not re.match(r"\s*(https?:)?//", value), f"external resource {value!r} on <{tag}>"
        if tag == "link":
            raise AssertionError(f"<link> in the page: {attrs}")
        if tag == "iframe":
            assert attrs.get("sandbox") in {"", "allow-scripts"}
            assert "src" not in attrs
            assert_safe(attrs["srcdoc"], nested=True)
    return parsed


def report_inputs(files: dict[str, str]) -> StepInputs:
    """StepInputs for the report from {filename: text}; each upstream step sees only its own files."""
    by_key = {}
    for key, upstream_name in STEP_BY_NAME["report"].all_requires.items():
        upstream = STEP_BY_NAME[upstream_name]
        own = {name: files[name] for name in upstream.outputs.values() if name in files}
        by_key[key] = UpstreamFiles(step=upstream, contents=own)
    return StepInputs(by_key)


# The 2026 steps' files (screening, constraints and their checks, self audit, adherence) exist for the
# silo prompt only (tests/fixtures/planexe_2026_run); the Hong Kong run shows their sections absent.
WITH_2026 = {"20250321_silo": True, "20260310_hong_kong_game": False}
SECTIONS_OF_2026 = {"Self Audit", "Prompt Adherence", "Constraints"}


def recorded_report_inputs(run: str) -> StepInputs:
    """The run's recorded files plus the two Gantt pages and the Q&A fragment made by our own steps
    (the recorded runs predate them), and for the silo run the 2026 steps' files."""
    schedule = run_schedule(
        context_for("schedule", ReplayLLM(answers=[]), run=run), inputs_from_run("schedule", run)
    )
    raw = load_run_json(run, step_file("questions_and_answers", "raw"))
    qa = QuestionsAndAnswers.model_validate(
        {k: v for k, v in raw.items() if k in QuestionsAndAnswers.model_fields}
    )
    recorded = inputs_from_run("report", run)
    files = {name: text for upstream in recorded.values() for name, text in upstream.contents.items()}
    files.update(schedule.files)
    files[step_file("questions_and_answers", "html")] = render_questions_and_answers_html(qa)
    if WITH_2026[run]:
        files.update(added_files_as_ours())
    return report_inputs(files)


REPORT_MD = step_file("report", "markdown")


def _report(inputs: StepInputs):
    llm = ReplayLLM(answers=[])
    result = run_report(context_for("report", llm), inputs)
    assert llm.calls == []
    assert set(result.files) == {REPORT} and set(result.side_files) == {REPORT_MD}
    result.files.update(result.side_files)  # the tests read both by name
    return result


# ---------------------------------------------------------------------------------------------------
# Recorded runs
# ---------------------------------------------------------------------------------------------------


def test_step_is_registered():
    assert step_function("report") is run_report


def test_twenty_two_sections_in_upstreams_2026_order_then_constraints():
    assert SECTION_TITLES == (
        "Executive Summary",
        "Gantt Interactive",
        "Pitch",
        "Project Plan",
        "Strategic Decisions",
        "Scenarios",
        "Assumptions",
        "Governance",
        "Related Resources",
        "Data Collection",
        "Documents to Create and Find",
        "SWOT Analysis",
        "Team",
        "Expert Criticism",
        "Work Breakdown Structure",
        "Review Plan",
        "Questions & Answers",
        "Premortem",
        "Self Audit",
        "Initial Prompt Vetted",
        "Prompt Adherence",
        "Constraints",
    )


@pytest.mark.parametrize("run", RUNS)
def test_recorded_runs_render_every_section(run):
    inputs = recorded_report_inputs(run)
    result = _report(inputs)
    page = result.files[REPORT]
    parsed = assert_safe(page)
    assert [text.strip() for _, text in parsed.scripts] == [str(report_script()).strip()]

    title = load_run_file(run, step_file("wbs_level1", "project_title")).strip()
    assert f"<title>{html.escape(title)}</title>" in page and f"<h1>{html.escape(title)}</h1>" in page
    assert parsed.headings[:22] == list(SECTION_TITLES)
    if WITH_2026[run]:
        assert result.notes["sections_available"] == 22 and result.notes["sections_not_available"] == {}
        assert "Not available" not in page
    else:  # a run before the 2026 steps: their sections say so, the rest is whole
        assert set(result.notes["sections_not_available"]) == SECTIONS_OF_2026
        assert result.notes["sections_available"] == 19
    # The contents link every section by its readable id, in order; ids are unique on the page.
    sections = [a["id"] for t, a in parsed.tags if t == "details" and "section" in a.get("class", "").split()]
    assert sections == list(SECTION_IDS) and SECTION_IDS[0] == "executive-summary"
    toc = page[page.index('<nav class="toc"') : page.index("</nav>")]
    assert re.findall(r'href="#([^"]+)"', toc) == list(SECTION_IDS)
    ids = [a["id"] for _, a in parsed.tags if "id" in a]
    assert len(ids) == len(set(ids))
    # One shared stylesheet, the same in the report as in the Q&A page it embeds.
    assert "The one stylesheet of every HTML page" in page

    # The WBS table: one row per CSV line after the header, in order.
    csv_text = load_run_file(run, step_file("wbs_project_level1_and_level2_and_level3", "csv"))
    header, rows = read_table(csv_text)
    assert header[0] == "Level 1" and header[-1] == "Task ID"
    assert len(rows) == len(csv_text.strip().splitlines()) - 1
    for row in rows[:20]:
        assert html.escape(row[-1]) in page

    # The interactive Gantt page is embedded verbatim, sandboxed, running only our scripts (the
    # viewer and the frame-height reporter); upstream's 2026 report has no Gantt overview.
    frames = [a for t, a in parsed.tags if t == "iframe"]
    schedule_files = inputs["create_schedule"].contents
    assert [f["srcdoc"] for f in frames] == [schedule_files[step_file("schedule", "dhtmlx_html")]]
    assert [f["sandbox"] for f in frames] == ["allow-scripts"]

    # Markdown became HTML (tables included), the prompt is escaped text with <br>.
    assert "<table>" in page and "<strong>" in page
    prompt = load_run_file(run, step_file("setup")).strip()
    first_line = prompt.splitlines()[0]
    assert html.escape(first_line) + "<br>" in page
    assert '<div class="question-answer-pair">' in page
    for marker in (
        "<h2>Initial Prompt</h2>",
        "<h2>Prompt Screening</h2>",
        "<h2>Redline Gate</h2>",
        "<h2>Premise Attack</h2>",
    ):
        assert marker in page
    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?(https?:)?//""", page, re.I)


def test_recorded_markdown_keeps_its_text():
    run = RUNS[0]
    page = _report(recorded_report_inputs(run)).files[REPORT]
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    flat = " ".join(text.split())
    for line in load_run_file(run, step_file("executive_summary", "markdown")).splitlines():
        words = re.sub(r"[#*_`>|\-]+", " ", line).split()
        if len(words) > 3:
            assert " ".join(words[:4]) in flat.replace("*", "")


# ---------------------------------------------------------------------------------------------------
# Hostile text through every section
# ---------------------------------------------------------------------------------------------------

MARKDOWN_PAYLOAD = """# Heading <script>alert('h')</script>

Text <script>alert(1)</script> and <img src=x onerror="alert(2)"> and <svg onload=alert(3)>.

[plain js](javascript:alert(4)) [tabbed](java&#x09;script:alert(5)) [entity](&#106;avascript:alert(6))
[data](data:text/html;base64,PHNjcmlwdD5hbGVydCg3KTwvc2NyaXB0Pg==) [ok](https://example.org/x?a=1&b=2)
<a href="javascript:alert(8)" onclick="alert(9)">raw link</a> <http://example.org/auto>

<div onmouseover="alert(10)">block html</div>

![pixel](https://tracker.example/p.png)

| a | b |
|---|---|
| <iframe src="javascript:alert(11)"></iframe> | [cell](JAVASCRIPT:alert(12)) |

```
</code></pre><script>alert(13)</script>
```
"""

# The diagnostics a step appends (doc_notes) are rendered by the report as well: payloads there too.
NOTES_PAYLOAD = notes_markdown(
    [
        "note <script>alert('note')</script> [js](javascript:alert(20))",
        ("<img src=x onerror=alert(21)>", ["<iframe src=javascript:alert(22)>"]),
    ]
)

# Our own Q&A page is a whole document; the report keeps its <article>. Payloads inside and outside.
QA_PAGE_PAYLOAD = (
    "<!DOCTYPE html><html><head><title>x</title><script>alert('head')</script>"
    '<meta http-equiv="refresh" content="0;url=javascript:alert(30)"></head><body>'
    '<script>alert(31)</script><header onclick="alert(32)">outside</header><article class="card">'
    '<div class="question-answer-list"><p onclick="alert(1)">Q <script>alert(2)</script></p>'
    '<img src=x onerror=alert(3)><a href="javascript:alert(4)">x</a><a href=" jav&#x0A;ascript:alert(5)">y</a>'
    "<style>body{background:url(https://evil.example/x)}</style><!-- <script>alert(6)</script> -->"
    '<form action="javascript:alert(7)"><button formaction="javascript:alert(8)">b</button></form></div>'
    '<details class="doc-notes" open ontoggle="alert(33)"><summary onclick="alert(34)">Notes</summary>'
    "<ul><li>&lt;script&gt;alert(35)&lt;/script&gt;</li></ul></details></article>"
    "<svg onload=alert(36)></svg></body></html>"
)

QA_PAYLOAD = (
    '<div class="question-answer-list"><p onclick="alert(1)">Q <script>alert(2)</script></p>'
    '<img src=x onerror=alert(3)><a href="javascript:alert(4)">x</a><a href=" jav&#x0A;ascript:alert(5)">y</a>'
    "<style>body{background:url(https://evil.example/x)}</style><!-- <script>alert(6)</script> -->"
    '<form action="javascript:alert(7)"><button formaction="javascript:alert(8)">b</button></form></div>'
)


def _hostile_gantt_pages() -> dict[str, str]:
    """The schedule step's real pages, made from a WBS full of payloads."""
    root = WBSNode(
        id="root",
        description="</script><script>alert('t')</script>",
        children=[
            WBSNode(id="a", description='<img src=x onerror="alert(1)">'),
            WBSNode(id="b", description="b"),
        ],
    )
    mapping = DependencyMapping(task_dependency_details=[])
    schedule = build_schedule(root, [], mapping, date(2026, 1, 1), "<script>alert('title')</script>")
    return {
        step_file("schedule", "mermaid_html"): render_overview_page(schedule),
        step_file("schedule", "dhtmlx_html"): render_interactive_page(schedule),
    }


def hostile_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for upstream_name in STEP_BY_NAME["report"].all_requires.values():
        for name in STEP_BY_NAME[upstream_name].outputs.values():
            if name.endswith(".md"):
                files[name] = MARKDOWN_PAYLOAD + NOTES_PAYLOAD + "\n"
    files[step_file("setup")] = "Plan:\n<script>alert('plan')</script>\n<img src=x onerror=alert(1)>"
    files[step_file("wbs_level1", "project_title")] = "</title><script>alert('title')</script>"
    files[step_file("wbs_project_level1_and_level2_and_level3", "csv")] = (
        'Level 1;Level 2;Task ID\n<script>alert(1)</script>;"<img src=x onerror=alert(2)>";id-1\n'
        ';<a href="javascript:alert(3)">x</a>;id-2\n'
    )
    files[step_file("questions_and_answers", "html")] = QA_PAGE_PAYLOAD
    files.update(_hostile_gantt_pages())
    files[step_file("screen_planning_prompt", "raw")] = json.dumps(
        {"verdict": "UNUSABLE", "reason": "prompt_injection", "confidence": "high", "rationale": HOSTILE_TEXT}
    )
    files[step_file("extract_constraints", "raw")] = json.dumps(
        {"constraints": [{"classification": "negative", "constraint_text": HOSTILE_TEXT}]}
    )
    for check in CONSTRAINT_CHECK_STEPS:
        files[step_file(check)] = json.dumps(
            {
                "constraint_violations": [
                    {
                        "constraint_text": HOSTILE_TEXT,
                        "constraint_classification": "negative",
                        "status": "violated",
                        "evidence": HOSTILE_TEXT,
                        "explanation": '" onmouseover="alert(41)',
                    }
                ],
                "overall_status": "fail",
                "summary": HOSTILE_TEXT,
            }
        )
    return files


HOSTILE_TEXT = "<script>alert('llm')</script><img src=x onerror=alert(40)>"


def test_payloads_through_every_section_are_inert():
    files = hostile_files()
    inputs = report_inputs(files)
    # Every section's inputs carry a payload (the check that the test covers them all).
    for source in SECTIONS:
        if source.kind == "vetted":
            keys = ["setup", "screen_planning_prompt", "redline_gate", "premise_attack"]
        elif source.kind == "constraints":
            keys = ["extract_constraints", *CONSTRAINT_CHECK_STEPS]
        else:
            keys = [source.key]
        for key in keys:
            assert inputs[key].contents, f"section {source.title} has no hostile input"
    result = _report(inputs)
    page = result.files[REPORT]
    parsed = assert_safe(page)
    assert len(parsed.scripts) == 1  # the report's own navigation
    assert result.notes["sections_available"] == 22
    # The banner, the constraint matrix and the violations show the model's text as text only.
    assert "alert(40)" in page and "onerror=alert(40)>" not in page
    assert "&lt;script&gt;alert(&#39;llm&#39;)&lt;/script&gt;" in page
    assert 'title="&#34; onmouseover=&#34;alert(41)"' in page
    lowered = page.lower()
    assert lowered.count("<script") == 1 and "<img" not in lowered and "<svg" not in lowered
    assert "<iframe src" not in lowered and "<form" not in lowered and "<style>body" not in lowered
    # The payloads are still there, as text.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>&lt;/title&gt;&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;</title>" in page
    assert "&lt;script&gt;alert(&#39;plan&#39;)&lt;/script&gt;<br>" in page
    assert "[image: pixel]" in page
    # Links: only the safe ones keep an href.
    hrefs = [a["href"] for t, a in parsed.tags if t == "a" and "href" in a]
    external = [h for h in hrefs if not h.startswith("#")]
    assert set(external) == {"https://example.org/x?a=1&b=2", "http://example.org/auto"}
    assert result.notes["removed_from_sections"]["Questions & Answers"]
    # The notes of every markdown section are there, as text, in the closed notes block.
    assert page.count("note &lt;script&gt;alert(&#39;note&#39;)&lt;/script&gt;") >= 15
    assert "ontoggle=" not in lowered and "http-equiv=" not in lowered and "outside" not in page
    assert "alert(31)" not in page and "alert(&#39;head&#39;)" not in page  # outside the Q&A <article>
    # The embedded Gantt pages are our own: their only script is the viewer.
    frames = [a for t, a in parsed.tags if t == "iframe"]
    assert len(frames) == 1 and frames[0]["sandbox"] == "allow-scripts"
    inner = parse(frames[0]["srcdoc"])
    assert sorted(a.get("type", "") for a, _ in inner.scripts) == ["", "", "application/json"]


def test_foreign_gantt_pages_are_not_embedded():
    cdn_page = (
        '<html><head><script type="module" src="https://cdn.jsdelivr.net/npm/mermaid@10/dist/mermaid.esm.min.mjs">'
        '</script></head><body><pre class="mermaid">gantt</pre></body></html>'
    )
    tampered = _hostile_gantt_pages()[step_file("schedule", "dhtmlx_html")].replace(
        "</body>", "<script>alert('extra')</script></body>"
    )
    handler = "<html><body><div onclick=\"alert(1)\">x</div><a href='javascript:alert(2)'>y</a></body></html>"
    page = _report(report_inputs({step_file("schedule", "dhtmlx_html"): cdn_page})).files[REPORT]
    assert_safe(page)
    assert "<iframe" not in page
    assert "cdn.jsdelivr.net" in page  # named in the reason, as text
    page = _report(report_inputs({step_file("schedule", "dhtmlx_html"): tampered})).files[REPORT]
    assert "<iframe" not in page and "a script that is not the planexe Gantt viewer" in page
    page = _report(report_inputs({step_file("schedule", "dhtmlx_html"): handler})).files[REPORT]
    assert "<iframe" not in page and "event handler attribute (onclick)" in page


# ---------------------------------------------------------------------------------------------------
# Missing inputs
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", [report_inputs({}), StepInputs({})], ids=["empty-files", "no-inputs"])
def test_missing_inputs_show_not_available(inputs):
    result = _report(inputs)
    page = result.files[REPORT]
    parsed = assert_safe(page)
    assert parsed.headings[:22] == list(SECTION_TITLES)
    assert page.count('<p class="not-available">Not available:') == 22
    assert f"<h1>{UNTITLED}</h1>" in page and result.notes["title_problem"]
    assert set(result.notes["sections_not_available"]) == set(SECTION_TITLES)
    assert '<aside class="banner-unusable"' not in page
    markdown_report = result.files[REPORT_MD]
    # Every section but the Gantt chart, Initial Prompt Vetted once per part (4).
    assert markdown_report.count("_Not available:") == 24


def test_some_inputs_missing_or_empty():
    run = RUNS[1]
    inputs = recorded_report_inputs(run)
    files = {name: text for upstream in inputs.values() for name, text in upstream.contents.items()}
    del files[step_file("executive_summary", "markdown")]
    del files[step_file("schedule", "dhtmlx_html")]
    files[step_file("swot_analysis", "markdown")] = "  \n"
    files[step_file("redline_gate", "markdown")] = ""
    result = _report(report_inputs(files))
    missing = result.notes["sections_not_available"]
    assert set(missing) == {"Executive Summary", "Gantt Interactive", "SWOT Analysis"} | SECTIONS_OF_2026
    assert "025-2-executive_summary.md was not produced" in missing["Executive Summary"]
    assert "014-2-swot_analysis.md is empty" in missing["SWOT Analysis"]
    page = result.files[REPORT]
    assert "Not available: 002-2-redline_gate.md is empty" in page  # a part of the vetted section
    assert "<h2>Premise Attack</h2>" in page


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("Silo Construction\n", "Silo Construction"),
        ('"Hong Kong Game"', "Hong Kong Game"),
        ('{"project_title": "X"}', "X"),
    ],
)
def test_title_from_plain_text_json_string_or_object(text, title):
    page = _report(report_inputs({step_file("wbs_level1", "project_title"): text})).files[REPORT]
    assert f"<title>{title}</title>" in page and f"<h1>{title}</h1>" in page


# ---------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "kept"),
    [
        ("https://example.org", True),
        ("HTTP://EXAMPLE.ORG", True),
        ("mailto:a@example.org", True),
        ("#section-3", True),
        ("javascript:alert(1)", False),
        (" JaVa\tScRiPt:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("data:text/html,x", False),
        ("vbscript:x", False),
        ("//evil.example/x", False),
        ("relative/page.html", False),
        ("", False),
    ],
)
def test_safe_href(href, kept):
    assert (safe_href(href) is not None) is kept


def test_markdown_escapes_raw_html_instead_of_passing_it_through():
    rendered = render_markdown("Hi <b>there</b>\n\n<script>alert(1)</script>\n")
    assert "&lt;b&gt;there&lt;/b&gt;" in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert rendered.removed == []
    table = render_markdown("| a | b |\n|:--|--:|\n| 1 | 2 |\n").html
    assert '<th style="text-align: left;">a</th>' in table and "<td" in table


def test_sanitizer_rebuilds_only_allowed_markup():
    cleaned = sanitize_html(
        '<p class="x" onclick="a()" style="color:red">one<script>bad()</script>'
        '<a href="&#106;avascript:alert(1)" title="t">two</a><svg><a href="#">in svg</a></svg>'
        "<custom>three</custom><!-- note --><b>unclosed"
    )
    assert str(cleaned.html) == '<p class="x">one<a title="t">two</a>three<b>unclosed</b></p>'
    assert "onclick attribute on <p>" in cleaned.removed and "<script> element" in cleaned.removed
    assert "href attribute on <a>" in cleaned.removed and "<custom> tag" in cleaned.removed


def test_read_table_finds_the_delimiter_and_drops_empty_rows_and_columns():
    header, rows = read_table("Level 1;Level 2;Empty;Task ID\nA, with comma;;;1\n;;;\n;B;;2\n")
    assert header == ["Level 1", "Level 2", "Task ID"]
    assert rows == [["A, with comma", "", "1"], ["", "B", "2"]]
    assert read_table("a,b\n1,2\n") == (["a", "b"], [["1", "2"]])
    assert read_table("") == ([], [])


def test_qa_fragment_of_an_imported_run_is_kept_whole():
    # PlanExe's 027-3 is a bare fragment: no <article>, so the whole of it is sanitized and shown.
    page = _report(report_inputs({step_file("questions_and_answers", "html"): QA_PAYLOAD})).files[REPORT]
    assert_safe(page)
    assert page.lower().count("<script") == 1
    assert '<div class="question-answer-list"><p>Q </p>' in page


def test_qa_page_contributes_its_article_and_its_notes():
    qa = QuestionsAndAnswers.model_validate(
        {
            "question_answer_pairs": [
                {"item_index": 1, "question": "Why <b>?", "answer": "Because.", "rationale": "r"}
            ],
            "summary": "s",
        }
    )
    own_page = render_questions_and_answers_html(qa, ["Follow-up round failed: timeout"])
    assert own_page.startswith("<!DOCTYPE html>") and "The one stylesheet of every HTML page" in own_page
    result = _report(report_inputs({step_file("questions_and_answers", "html"): own_page}))
    page = result.files[REPORT]
    section = page[page.index('id="questions-answers"') : page.index('id="premortem"')]
    assert "Why &lt;b&gt;?" in section and "Follow-up round failed: timeout" in section
    assert '<details class="doc-notes">' in section and "<h1>" not in section  # no page header
    assert "card" not in section  # the page's own frame is not nested in the section
    assert "Questions & Answers" not in result.notes["removed_from_sections"]


def test_markdown_notes_close_the_section_and_tables_scroll():
    body = "# Premortem\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    text = body.rstrip() + notes_markdown([("Rounds that failed", ["Round 2 of 3 failed: x"])]) + "\n"
    page = _report(report_inputs({step_file("premortem", "markdown"): text})).files[REPORT]
    section = page[page.index('id="premortem"') : page.index('id="initial-prompt-vetted"')]
    assert section.index("<table>") < section.index('<details class="doc-notes">')
    assert '<div class="table-scroll"><table>' in section and "</table></div>" in section
    notes = section[section.index('<details class="doc-notes">') :]
    assert "<summary>Notes (1)</summary>" in notes and "<h3>Rounds that failed</h3>" in notes
    assert "<li>Round 2 of 3 failed: x</li>" in notes
    assert "planexe:notes" not in page and "<h2>Notes</h2>" not in section


def test_sanitizer_keeps_only_the_root_element_when_asked():
    doc = "<html><head><title>t</title></head><body><h1>Head</h1><article class='card'><p>in</p><table><tr><td>1"
    assert str(sanitize_html(doc, root="article").html) == (
        '<p>in</p><div class="table-scroll"><table><tr><td>1</td></tr></table></div>'
    )
    assert str(sanitize_html("<p>no root</p>", root="article").html) == "<p>no root</p>"


# ---------------------------------------------------------------------------------------------------
# 2026: the screening banner, the Constraints section, report.md
# ---------------------------------------------------------------------------------------------------


def _silo_files() -> dict[str, str]:
    inputs = recorded_report_inputs(RUNS[0])
    return {name: text for upstream in inputs.values() for name, text in upstream.contents.items()}


def test_unusable_screening_puts_a_banner_above_the_sections_and_in_report_md():
    files = _silo_files()
    files[step_file("screen_planning_prompt", "raw")] = json.dumps(
        {
            "verdict": "UNUSABLE",
            "reason": "vague_wishful_thinking",
            "confidence": "medium",
            "rationale": "Only a wish & no <goal>.",
        }
    )
    result = _report(report_inputs(files))
    page = result.files[REPORT]
    banner = page.index('<aside class="banner-unusable"')
    assert banner < page.index('<nav class="toc"') < page.index('id="executive-summary"')
    assert "reason: Vague Wishful Thinking, confidence: medium" in page
    assert "Only a wish &amp; no &lt;goal&gt;." in page
    assert result.notes["screening"] == "UNUSABLE"
    md = result.files[REPORT_MD]
    lines = md.splitlines()
    assert lines[0].startswith("# ") and lines[2].startswith("Generated on ")
    assert lines[4].startswith("> **Prompt quality warning.**") and "Vague Wishful Thinking" in lines[4]
    assert md.index("> **Prompt quality warning.**") < md.index("# Executive Summary")


def test_usable_screening_has_no_banner():
    result = _report(recorded_report_inputs(RUNS[0]))
    assert result.notes["screening"] == "USABLE"
    assert '<aside class="banner-unusable"' not in result.files[REPORT]
    assert "Prompt quality warning" not in result.files[REPORT_MD]


def test_constraints_section_shows_each_constraint_at_every_stage_with_violations_highlighted():
    result = _report(recorded_report_inputs(RUNS[0]))
    assert result.notes["constraints"] == 4 and result.notes["constraints_violated"] == 2
    page = result.files[REPORT]
    section = page[page.index('id="constraints"') :]
    section = section[: section.index("</details>\n")]
    assert section.startswith('id="constraints" open')  # a violation opens the section
    table = section[section.index('<table class="constraints">') : section.index("</table>")]
    headers = re.findall(r"<th>([^<]+)", table[: table.index("</thead>")])
    assert headers[:2] == ["Constraint", "Kind"] and headers[2:] == [
        "Potential levers",
        "Deduplicated levers",
        "Enriched levers",
        "Vital few levers",
        "Candidate scenarios",
        "Selected scenario",
    ]
    rows = table.split("<tr")[2:]
    assert len(rows) == 4
    violated = [r for r in rows if 'class="violated"' in r]
    assert len(violated) == 2
    info = next(r for r in rows if "uncontrolled information" in r)
    assert [c for c in re.findall(r'class="status-([a-z-]+)"', info)] == [
        "satisfied",
        "satisfied",
        "violated",
        "violated",
        "satisfied",
        "satisfied",
    ]
    assert "Open information policy with curated access to outside news" in section  # the evidence
    assert "<h3>Violations</h3>" in section and section.count("<li><strong>") == 3
    # report.md: the same matrix as a markdown table, violated constraints in bold.
    md = result.files[REPORT_MD]
    body = md[md.index("# Constraints") :]
    assert (
        "| **Residents must not receive uncontrolled information about the outside world.** | negative |"
        in body
    )
    assert "✗ violated" in body and "## Violations" in body


def test_report_md_has_every_section_but_the_gantt_in_order():
    result = _report(recorded_report_inputs(RUNS[0]))
    md = result.files[REPORT_MD]
    positions = [md.find(f"\n# {t}\n") for t in SECTION_TITLES if t != "Gantt Interactive"]
    assert -1 not in positions and positions == sorted(positions)
    assert "# Gantt Interactive" not in md
    # The WBS as a fenced csv block, the prompt in a fenced text block under ## headings.
    wbs = md[md.index("# Work Breakdown Structure") :]
    assert wbs.split("\n", 3)[2] == "```csv"
    vetted = md[md.index("# Initial Prompt Vetted") : md.index("# Prompt Adherence")]
    assert [line for line in vetted.splitlines() if line.startswith("## ")][:4] == [
        "## Initial Prompt",
        "## Prompt Screening",
        "## Redline Gate",
        "## Premise Attack",
    ]
    assert "```text\nPlan:\nConstruct a massive" in vetted
    # Source markdown is kept unchanged.
    summary = load_run_file(RUNS[0], step_file("executive_summary", "markdown")).strip()
    assert summary in md


def test_report_md_fences_survive_backticks_in_the_source():
    files = {step_file("wbs_project_level1_and_level2_and_level3", "csv"): "Level 1;Task ID\n```x```;id\n"}
    md = _report(report_inputs(files)).files[REPORT_MD]
    assert "````csv\nLevel 1;Task ID\n```x```;id\n````" in md
