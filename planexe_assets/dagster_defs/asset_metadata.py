"""What the Dagster UI shows about a step: definition metadata, materialization metadata, run tags.

Conventions (documented in the README, "Asset metadata"):

- LLM usage of one materialization follows dagster-openai's keys: ``openai.calls`` (calls that
  returned a reply), ``openai.prompt_tokens``, ``openai.completion_tokens``, ``openai.total_tokens``;
  beside them ``planexe.llm_attempts`` counts every attempt the step made (retries, fail-overs to
  another model and calls that failed for good included) and ``planexe.llm_failed_attempts`` the
  failed ones, so completed calls and attempts are both shown, each under its own name;
- the report's materialization adds the same totals for the whole plan under ``plan.*`` keys, and
  ``plan.cost_usd``;
- ``preview`` is Markdown: a header naming the file and its format, then the content. JSON is
  pretty-printed and always valid: when it is too long, lists and long strings are shortened (and
  marked so), never cut mid-structure. Markdown and text are cut at a paragraph or line boundary.

Nothing here imports the step modules' internals; previews work on the files a step returned.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from dagster import (
    AnchorBasedFilePathMapping,
    BetaWarning,
    CodeReferencesMetadataValue,
    LocalFileCodeReference,
    MetadataValue,
    link_code_references_to_git,
)

from planexe_assets.core import Step, step_table
from planexe_assets.lifecycle.versions import Fingerprint
from planexe_assets.steps import step_function
from resources.config import ConfigError

PREVIEW_LIMIT = 4000
PROMPT_TAG = "planexe/prompt"
PROMPT_TAG_LIMIT = 200
OWNERS_ENV = "PLANEXE_ASSET_OWNERS"
DEFAULT_OWNERS = ("team:planexe",)
GIT_URL_ENV = "PLANEXE_GIT_URL"
GIT_BRANCH_ENV = "PLANEXE_GIT_BRANCH"
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- definitions ----------------------------------------------------------------------------------------
def asset_owners() -> list[str]:
    """``PLANEXE_ASSET_OWNERS`` (comma-separated e-mail addresses or ``team:NAME``), default
    ``team:planexe``."""
    raw = os.environ.get(OWNERS_ENV, "").strip()
    owners = [o.strip() for o in raw.split(",") if o.strip()] if raw else list(DEFAULT_OWNERS)
    for owner in owners:
        if not (owner.startswith("team:") and len(owner) > 5) and not re.fullmatch(
            r"[^@\s]+@[^@\s]+\.[^@\s]+", owner
        ):
            raise ConfigError(f"{OWNERS_ENV}: {owner!r} is neither an e-mail address nor team:NAME")
    return owners


def code_references(step: Step) -> CodeReferencesMetadataValue:
    """Links to the step function and to the step's row in the step table (local files; with
    ``PLANEXE_GIT_URL`` set, ``definitions`` turns them into links to the repository)."""
    fn = step_function(step.name)
    with warnings.catch_warnings():  # code references are a beta API of Dagster 1.13
        warnings.simplefilter("ignore", BetaWarning)
        return _code_references(step, fn, inspect.getsourcefile(step_table))


def _code_references(step: Step, fn: Any, table: str | None) -> CodeReferencesMetadataValue:
    code = fn.__code__  # the `def` line (inspect.getsourcelines would parse the module for each step)
    references = [
        LocalFileCodeReference(
            file_path=code.co_filename, line_number=code.co_firstlineno, label=f"step function {fn.__name__}"
        )
    ]
    line = _table_line(step.name)
    if table and line:
        references.append(LocalFileCodeReference(file_path=table, line_number=line, label="step table row"))
    return CodeReferencesMetadataValue(code_references=references)


def _table_line(name: str) -> int | None:
    return _table_lines(step_table.__file__).get(name)


_TABLE_LINES: dict[str, dict[str, int]] = {}


def _table_lines(path: str) -> dict[str, int]:
    if path not in _TABLE_LINES:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        found: dict[str, int] = {}
        for i, line in enumerate(lines[:-1]):
            if line.strip() == "Step(":
                match = re.fullmatch(r'\s*"([a-z0-9_]+)",', lines[i + 1])
                if match:
                    found[match.group(1)] = i + 1
        _TABLE_LINES[path] = found
    return _TABLE_LINES[path]


def link_to_git(assets: Sequence[Any]) -> Sequence[Any]:
    """With ``PLANEXE_GIT_URL`` (e.g. ``https://github.com/ORG/planexe-dagster``) set, code references
    point at that repository (branch ``PLANEXE_GIT_BRANCH``, default ``main``) instead of local files."""
    url = os.environ.get(GIT_URL_ENV, "").strip()
    if not url:
        return assets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BetaWarning)
        return _link(assets, url)


def _link(assets: Sequence[Any], url: str) -> Sequence[Any]:
    return link_code_references_to_git(
        assets,
        git_url=url,
        git_branch=os.environ.get(GIT_BRANCH_ENV, "").strip() or "main",
        file_path_mapping=AnchorBasedFilePathMapping(
            local_file_anchor=REPO_ROOT / "pyproject.toml", file_anchor_path_in_repository="pyproject.toml"
        ),
    )


def definition_metadata(step: Step, fingerprint: Fingerprint, code_version: str) -> dict[str, Any]:
    return {
        "planexe_class": step.luigi_class,
        "stage": step.stage,
        "output_files": list(step.filenames),
        "per_item_file_templates": list(step.side_outputs),
        "llm_calls": step.llm_calls,
        "code_version_covers": MetadataValue.md(
            f"`{code_version}`: this step's code ({fingerprint.summary()}) and the code versions of its "
            f"upstream steps ({', '.join(f'`{d}`' for d in step.deps) or 'none'})."
        ),
        "dagster/code_references": code_references(step),
    }


# -- materializations -----------------------------------------------------------------------------------
def usage_metadata(usage: Sequence[Any], attempts: int, failed_attempts: int) -> dict[str, Any]:
    """dagster-openai's key names for the completed calls, plus the attempts (see the module doc)."""
    prompt_tokens = sum(u.input_tokens or 0 for u in usage)
    completion_tokens = sum(u.output_tokens or 0 for u in usage)
    return {
        "openai.calls": len(usage),
        "openai.prompt_tokens": prompt_tokens,
        "openai.completion_tokens": completion_tokens,
        "openai.total_tokens": prompt_tokens + completion_tokens,
        "planexe.llm_attempts": attempts,
        "planexe.llm_failed_attempts": failed_attempts,
    }


def plan_totals_metadata(totals: Any) -> dict[str, Any]:
    """The plan's usage over all its runs (``llm_interactions``), for the report's materialization."""
    return {
        "plan.openai.calls": totals.completed,
        "plan.openai.prompt_tokens": totals.input_tokens,
        "plan.openai.completion_tokens": totals.output_tokens,
        "plan.openai.total_tokens": totals.total_tokens,
        "plan.llm_attempts": totals.attempts,
        "plan.llm_failed_attempts": totals.failed,
        "plan.cost_usd": round(totals.cost_usd, 6),
    }


def prompt_tag(prompt: str | None) -> str:
    """The plan's prompt as one line of at most ``PROMPT_TAG_LIMIT`` characters (a run tag)."""
    text = " ".join((prompt or "").split())
    if len(text) <= PROMPT_TAG_LIMIT:
        return text
    cut = text[: PROMPT_TAG_LIMIT - 1]
    space = cut.rfind(" ")
    if space >= PROMPT_TAG_LIMIT // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "…"


# -- previews -------------------------------------------------------------------------------------------
_FORMATS = {".md": "Markdown", ".json": "JSON", ".txt": "text", ".csv": "CSV", ".html": "HTML"}


def main_file(files: Mapping[str, str]) -> str | None:
    """The file a reader wants to see first: Markdown, then text/CSV, then JSON, then HTML."""
    for suffixes in ((".md",), (".txt", ".csv"), (".json",), (".html",)):
        for name in files:
            if name.endswith(suffixes):
                return name
    return None


def preview(files: Mapping[str, str], limit: int = PREVIEW_LIMIT) -> str:
    """Markdown preview of a step's main output file, labelled with its name and format."""
    name = main_file(files)
    if name is None:
        return ""
    text = files[name]
    suffix = Path(name).suffix
    kind = _FORMATS.get(suffix, "text")
    size = len(text.encode("utf-8"))
    header = f"**`{name}`** · {kind} · {size:,} bytes"
    if suffix == ".json":
        body, note = json_preview(text, limit)
        return f"{header}{note}\n\n```json\n{body}\n```"
    if suffix == ".html":
        outline = html_outline(text)
        listed = "\n".join(f"{i}. {t}" for i, t in enumerate(outline, 1)) or "(no headings)"
        return f"{header}\n\nOutline:\n\n{listed}"
    body, cut = clip_text(text, limit)
    note = f"\n\n*… {size - len(body.encode('utf-8')):,} more bytes in the file*" if cut else ""
    if suffix == ".md":
        return f"{header}\n\n---\n\n{body}{note}"
    return f"{header}\n\n```\n{body}\n```{note}"


def clip_text(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters, cut at a paragraph (else line) boundary; code fences stay closed."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    cut = head.rfind("\n\n")
    if cut < limit // 2:
        cut = head.rfind("\n")
    if cut < limit // 4:
        cut = limit
    body = head[:cut].rstrip()
    if body.count("```") % 2:
        body += "\n```"
    return body, True


def json_preview(text: str, limit: int) -> tuple[str, str]:
    """(pretty JSON that parses, a note on what was shortened). Invalid JSON is shown as text, cut
    at a line boundary, and says so."""
    try:
        data = json.loads(text)
    except ValueError:
        body, cut = clip_text(text, limit)
        return body, " · not valid JSON" + (", shortened" if cut else "")
    pretty = json.dumps(data, indent=2, ensure_ascii=False)
    if len(pretty) <= limit:
        return pretty, ""
    for items, chars in ((10, 400), (5, 200), (3, 120), (2, 80), (1, 60), (1, 30), (0, 20)):
        shortened = _shorten(data, items, chars)
        pretty = json.dumps(shortened, indent=2, ensure_ascii=False)
        if len(pretty) <= limit:
            return pretty, f" · shortened: at most {items} items per list, long texts cut (marked …)"
    summary = _summary(data)
    return json.dumps(summary, indent=2, ensure_ascii=False), " · too large to show: its outline"


def _shorten(value: Any, items: int, chars: int) -> Any:
    if isinstance(value, dict):
        keys = list(value)
        kept = {k: _shorten(value[k], items, chars) for k in keys[: max(items * 4, 8)]}
        if len(keys) > len(kept):
            kept["…"] = f"{len(keys) - len(kept)} more keys"
        return kept
    if isinstance(value, list):
        kept_list = [_shorten(v, items, chars) for v in value[:items]]
        if len(value) > items:
            kept_list.append(f"… {len(value) - items} more items")
        return kept_list
    if isinstance(value, str) and len(value) > chars:
        return value[:chars].rstrip() + "…"
    return value


def _summary(value: Any, depth: int = 0) -> Any:
    """The shape of a JSON value: keys with the type or length of what they hold."""
    if isinstance(value, dict):
        if depth >= 2:
            return f"object with {len(value)} keys"
        return {k: _summary(v, depth + 1) for k, v in list(value.items())[:30]}
    if isinstance(value, list):
        return f"list of {len(value)} items"
    if isinstance(value, str):
        return f"text, {len(value)} characters"
    return value


class _Outline(HTMLParser):
    """Texts of ``<summary>`` elements (the report's sections), else of ``<h2>`` headings."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.summaries: list[str] = []
        self.headings: list[str] = []
        self._into: list[str] | None = None
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if self._into is None and tag in ("summary", "h2"):
            self._into = self.summaries if tag == "summary" else self.headings
            self._into.append("")
            self._tag = tag
        elif self._into is not None and tag == self._tag:
            self._depth += 1

    def handle_endtag(self, tag: str) -> None:
        if self._into is not None and tag == self._tag:
            if self._depth:
                self._depth -= 1
            else:
                self._into[-1] = " ".join(self._into[-1].split())
                self._into = None

    def handle_data(self, data: str) -> None:
        if self._into is not None:
            self._into[-1] += data


def html_outline(html: str) -> list[str]:
    parser = _Outline()
    parser.feed(html)
    parser.close()
    return [t for t in (parser.summaries or parser.headings) if t]


def report_preview(html: str, path: Path) -> str:
    outline = html_outline(html)
    listed = "\n".join(f"{i}. {title}" for i, title in enumerate(outline, 1)) or "(no sections found)"
    size = len(html.encode("utf-8"))
    return (
        f"**`{path.name}`** · HTML · {size:,} bytes · {len(outline)} sections\n\n"
        f"Open it in a browser: [`{path}`]({path.as_uri()})\n\n"
        f"Outline:\n\n{listed}"
    )
