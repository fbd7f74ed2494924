"""The HTML pages the pipeline writes, rendered with one Jinja environment from ``templates/``.

Every page extends ``_base.html.j2``, which inlines the one shared stylesheet (``planexe.css``), so
the report, the two Gantt pages and the Q&A page look alike and each file works offline on its own.
Scripts a page needs come from ``static/`` and are inlined too (``static_script``).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from planexe_assets.core import StepError

ENV = Environment(
    loader=PackageLoader("planexe_assets", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=StrictUndefined,
)


def nl2br(text: Any) -> Markup:
    """Escaped text with its line breaks kept as ``<br>`` (the only markup added to model text)."""
    return Markup("<br>\n").join(escape(line) for line in str(text).strip().splitlines())


ENV.filters["nl2br"] = nl2br


def render_page(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


@cache
def static_script(name: str) -> Markup:
    """``planexe_assets/static/<name>``, to inline into a ``<script>`` element of a page."""
    source = (resources.files("planexe_assets") / "static" / name).read_text(encoding="utf-8")
    if "</" in source:
        raise StepError(f"{name} must not contain '</' (it is inlined into a <script> element)")
    return Markup(source)


def frame_script() -> Markup:
    """Tells the page that embeds this one (the report) how tall it is; see ``static/frame_height.js``."""
    return static_script("frame_height.js")


def report_script() -> Markup:
    """The report's navigation (``static/report.js``)."""
    return static_script("report.js")
