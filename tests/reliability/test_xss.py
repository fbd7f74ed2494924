"""Model output with script elements, event handlers and javascript: links renders inert in the report
and in every HTML export (the two Gantt pages and the Q&A page).

The shared hostile run appends an XSS payload to every free-text field of every model answer and puts
some into the prompt. ``html_check.inspect_html`` reads each page as a browser would and reports
every way text could become code; the payloads must be there, as text.
"""

from __future__ import annotations

import pytest

from planexe_assets.core import step_file
from tests.reliability.hostile import PAYLOAD_TAG, PAYLOADS
from tests.reliability.html_check import inspect_html

HTML_OUTPUTS = [
    step_file("report"),
    step_file("questions_and_answers", "html"),
    step_file("schedule", "mermaid_html"),
    step_file("schedule", "dhtmlx_html"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", HTML_OUTPUTS)
def test_html_output_is_inert(hostile_run, name):
    document = (hostile_run.run_dir / name).read_text(encoding="utf-8")
    assert PAYLOAD_TAG in document, f"no payload reached {name}: the test would prove nothing"
    inspection = inspect_html(document, name, taint=(PAYLOAD_TAG,))
    assert inspection.findings == []


@pytest.mark.slow
def test_payloads_show_as_text_in_the_report(hostile_run):
    document = (hostile_run.run_dir / step_file("report")).read_text(encoding="utf-8")
    visible = inspect_html(document, taint=(PAYLOAD_TAG,)).visible_text
    assert "<script>alert('XSS-P1')</script>" in visible  # the prompt, shown as text
    shown = [p for p in PAYLOADS if p.split("XSS-")[1][:2] in visible]
    assert len(shown) >= 5


@pytest.mark.slow
def test_every_html_file_of_the_run_is_checked(hostile_run):
    produced = sorted(p.name for p in hostile_run.run_dir.iterdir() if p.suffix == ".html")
    assert produced == sorted(HTML_OUTPUTS)


@pytest.mark.parametrize(
    "bad",
    [
        '<p>x</p><script>alert("XSS-1")</script>',
        "<img src=x onerror=alert(1)>",
        '<a href=" &#106;avascript:alert(1)">x</a>',
        "<a href='JaVaScRiPt:alert(1)'>x</a>",
        "<iframe srcdoc='&lt;img src=x onerror=alert(1)&gt;' sandbox></iframe>",
        '<script type="application/json">{"a": "</script><script>alert(1)</script>"}</script>',
        '<div style="background:url(javascript:alert(1))">x</div>',
        "<form action='javascript:alert(1)'></form>",
        "<script>document.body.innerHTML = data.name</script>",
    ],
)
def test_the_checker_catches_known_injections(bad):
    assert inspect_html(bad, taint=(PAYLOAD_TAG,)).findings


def test_the_checker_accepts_escaped_text():
    good = "<p>&lt;script&gt;alert('XSS-1')&lt;/script&gt; [x](javascript:alert(1))</p><a href='https://example.com'>ok</a>"
    assert inspect_html(good, taint=(PAYLOAD_TAG,)).findings == []
