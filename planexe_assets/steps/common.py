"""Small helpers every stage uses: prompt assembly, JSON files, markdown fragments."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from planexe_assets.core import ChatMessage, StructuredReply

_DROP_FROM_QUERY = ("metadata", "query", "user_prompt", "system_prompt")


def dump_json(data: Any) -> str:
    """The on-disk form of every JSON file: 2-space indent, UTF-8 kept readable, trailing newline."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def compact_json_for_prompt(data: Any) -> str:
    """Compact JSON for a prompt, without the bookkeeping keys of raw files."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k not in _DROP_FROM_QUERY}
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def bundle(*blocks: tuple[str, str]) -> str:
    """Join named documents into one user message: ``File 'name':`` then the content, blank-line separated."""
    parts = []
    for name, content in blocks:
        parts.append(f"File '{name}':\n{content.strip()}")
    return "\n\n".join(parts)


def messages(system: str, user: str) -> list[ChatMessage]:
    """A system instruction plus the user's data. User text is only ever data in the user turn."""
    return [{"role": "system", "content": system.strip()}, {"role": "user", "content": user}]


def raw_record(reply: StructuredReply, system_prompt: str | None, user_prompt: str, **extra: Any) -> dict:
    """A raw file: the response fields at the top level, then metadata and the prompts used."""
    record = reply.value.model_dump(mode="json")
    record.update(extra)
    record["metadata"] = reply.metadata
    if system_prompt is not None:
        record["system_prompt"] = system_prompt
    record["user_prompt"] = user_prompt
    return record


def md_escape_inline(text: str) -> str:
    """Keep model text on one line inside a markdown table cell or heading."""
    return re.sub(r"\s*\n\s*", " ", str(text)).replace("|", "\\|").strip()


def md_bullets(items: Iterable[Any]) -> str:
    lines = [f"- {str(item).strip()}" for item in items if str(item).strip()]
    return "\n".join(lines) if lines else "_None._"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        out.append("| " + " | ".join(md_escape_inline(c) for c in row) + " |")
    return "\n".join(out)


def humanize_key(key: str) -> str:
    """``purpose_detailed`` -> ``Purpose Detailed``."""
    return " ".join(word.capitalize() for word in key.replace("-", "_").split("_") if word)


def one_line(text: Any) -> str:
    """Model text collapsed to one line with single spaces (for headings, list items, table cells)."""
    return " ".join(str(text).split())


def describe_error(error: BaseException | None) -> str:
    """``Type: message`` on one line, for reporting a failed fan-out item in an output file."""
    if error is None:
        return ""
    text = one_line(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
