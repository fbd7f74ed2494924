"""Is an HTML document inert? A static reading of what a browser would execute.

The document is parsed the way a browser tokenizes it (``html.parser``: script and style contents are
raw text up to their end tag; entities in attribute values are decoded), and every way text can turn
into code is reported:

- any event-handler attribute (``on...``) on any element: our templates use none, so any one is an
  injection;
- ``javascript:``/``vbscript:``/``data:text/html`` targets in URL-carrying attributes, and
  ``javascript:`` inside ``style`` attributes (entities and the blanks browsers skip are resolved first);
- elements that load or redirect code: ``object``, ``embed``, ``applet``, ``base``, ``form``,
  ``meta http-equiv=refresh``, ``iframe``/``frame`` with a ``src``;
- ``iframe srcdoc`` documents are checked the same way, recursively (with the iframe's sandbox noted);
- inline scripts: ``application/json`` ones must hold valid JSON (nothing broke out of them); any other
  inline script must not contain the attacker's text (``taint``) and must not turn strings into markup
  or code (``innerHTML``, ``outerHTML``, ``insertAdjacentHTML``, ``document.write``, ``eval``,
  ``new Function``, string timers).

``visible_text`` returns the text a reader sees (outside scripts), to prove payloads did arrive, as text.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

URL_ATTRIBUTES = frozenset(
    "href src action formaction data poster background cite codebase longdesc ping xlink:href lowsrc dynsrc manifest".split()
)
DANGEROUS_SCHEMES = ("javascript:", "vbscript:", "data:text/html", "data:image/svg")
FORBIDDEN_ELEMENTS = frozenset({"object", "embed", "applet", "base", "form", "frame", "frameset", "portal"})
SINKS = re.compile(
    r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\s*\(|set(?:Timeout|Interval)\s*\(\s*['\"`]"
)
_SKIPPED = re.compile(r"[\x00-\x20\x7f]+")


class _Inspector(HTMLParser):
    def __init__(self, where: str, taint: tuple[str, ...], depth: int):
        super().__init__(convert_charrefs=True)
        self.where = where
        self.taint = taint
        self.depth = depth
        self.findings: list[str] = []
        self.text: list[str] = []
        self._script: dict | None = None
        self._raw_text_tag: str | None = None

    def _found(self, message: str) -> None:
        self.findings.append(f"{self.where}: {message}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._element(tag, attrs)

    def _element(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name.lower(): (value or "") for name, value in attrs}
        if tag in FORBIDDEN_ELEMENTS:
            self._found(f"<{tag}> element")
        for name, value in attributes.items():
            compact = _SKIPPED.sub("", value).lower()
            if name.startswith("on"):
                self._found(f"event handler {name}={value[:80]!r} on <{tag}>")
            if name in URL_ATTRIBUTES and compact.startswith(DANGEROUS_SCHEMES):
                self._found(f"{name}={value[:80]!r} on <{tag}>")
            if name == "style" and ("javascript:" in compact or "expression(" in compact):
                self._found(f"style={value[:80]!r} on <{tag}>")
        if tag == "meta" and attributes.get("http-equiv", "").lower() == "refresh":
            self._found(f"meta refresh {attributes.get('content', '')[:80]!r}")
        if tag in ("iframe", "frame") and "src" in attributes:
            self._found(f"<{tag} src={attributes['src'][:80]!r}>")
        if tag == "iframe" and "srcdoc" in attributes:
            inner = inspect_html(
                attributes["srcdoc"],
                f"{self.where} > iframe[sandbox={attributes.get('sandbox')!r}]",
                self.taint,
                self.depth + 1,
            )
            self.findings.extend(inner.findings)
            self.text.extend(inner.text)
            if "sandbox" not in attributes:
                self._found("iframe srcdoc without a sandbox")
        if tag == "script":
            if attributes.get("src"):
                self._found(f"external script {attributes['src'][:80]!r}")
            self._script = {"type": attributes.get("type", "").lower(), "text": []}
        elif tag == "style":
            self._raw_text_tag = "style"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self._finish_script("".join(self._script["text"]), self._script["type"])
            self._script = None
        elif tag == "style":
            self._raw_text_tag = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script["text"].append(data)
        elif self._raw_text_tag is None:
            self.text.append(data)

    def _finish_script(self, text: str, kind: str) -> None:
        if kind in ("application/json", "application/ld+json"):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                self._found(f"a JSON data script does not hold JSON (something broke out of it): {exc}")
            return
        for mark in self.taint:
            if mark in text:
                self._found(f"attacker text {mark!r} inside an executable <script>")
        sink = SINKS.search(text)
        if sink:
            self._found(f"inline script uses {sink.group(0)!r}, which can turn data into markup or code")


class Inspection:
    def __init__(self, findings: list[str], text: list[str]):
        self.findings = findings
        self.text = text

    @property
    def visible_text(self) -> str:
        return "".join(self.text)


def inspect_html(
    document: str, where: str = "document", taint: tuple[str, ...] = (), depth: int = 0
) -> Inspection:
    if depth > 3:
        return Inspection([f"{where}: srcdoc nested too deep"], [])
    parser = _Inspector(where, taint, depth)
    parser.feed(document)
    parser.close()
    if parser._script is not None:
        parser._found("a <script> element is never closed")
    return Inspection(parser.findings, parser.text)
