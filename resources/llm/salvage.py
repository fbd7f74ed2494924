"""What can be kept of a JSON reply that was cut off at ``max_tokens``.

Small local models often loop inside a JSON array until ``max_tokens`` ends the reply: the items
before the loop are complete and usable, the loop repeats one item, and the object is never closed.
``complete_prefixes`` yields the reply's prefixes that end right after a complete array item, each
closed with the brackets still open at that point, longest first; the executor takes the first that
parses and validates against the call's schema (so a reply whose cut-off part was required still
fails). ``drop_repeated_items`` then removes list items that repeat an earlier item exactly, which is
what a loop leaves behind.

A prefix that lacks only top-level fields the loop never reached (a ``summary`` after the looping
list) is not thrown away: ``missing_fields`` names them, and the executor asks for just those in a
second call (``rest_model``, ``rest_messages``) and merges the answers.

Nothing here guesses content: every kept character is the model's, only closing brackets are added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

MAX_CANDIDATES = 40  # prefixes tried, longest first, before giving up


def complete_prefixes(text: str, limit: int = MAX_CANDIDATES) -> Iterator[str]:
    """Closed prefixes of ``text`` ending after a complete item of an array, longest first.

    Scans from the first ``{``: tracks the open objects/arrays and whether it is inside a string
    (with escapes); after each value that completes an array item (a closing bracket, or the end of
    a string or scalar followed by ``,``/``]``), the prefix up to it plus the closing brackets of
    everything still open is a candidate.
    """
    start = text.find("{")
    if start < 0:
        return
    cuts = _item_cuts(text, start)
    if cuts is None:
        return
    seen: set[str] = set()
    for end, closers in reversed(cuts):
        candidate = text[start:end].rstrip().rstrip(",").rstrip() + closers
        if candidate in seen:
            continue
        seen.add(candidate)
        yield candidate
        if len(seen) >= limit:
            return


class _StringState:
    """Whether the scan is inside a JSON string, honouring backslash escapes."""

    def __init__(self) -> None:
        self.inside = False
        self.escaped = False

    def consume(self, char: str) -> bool:
        """Take ``char``; True when it belongs to a string (its opening quote included)."""
        if not self.inside:
            self.inside = char == '"'
            return self.inside
        if self.escaped:
            self.escaped = False
        elif char == "\\":
            self.escaped = True
        elif char == '"':
            self.inside = False
        return True


def _item_cuts(text: str, start: int) -> list[tuple[int, str]] | None:
    """(end index, closing brackets) after each complete array item from ``start`` on; None when
    the object closes (nothing was cut off, nothing to salvage)."""
    stack: list[str] = []
    strings = _StringState()
    cuts: list[tuple[int, str]] = []
    for index in range(start, len(text)):
        char = text[index]
        if strings.consume(char):
            continue
        if char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]":
            if not stack or stack[-1] != char:
                break  # not JSON past here
            stack.pop()
            if not stack:
                return None
            if stack[-1] == "]":
                cuts.append((index + 1, "".join(reversed(stack))))
        elif char == "," and stack and stack[-1] == "]":
            # The item before this comma is complete (strings and scalars end here too).
            cuts.append((index, "".join(reversed(stack))))
    return cuts


def drop_repeated_items(data: Any) -> tuple[Any, int]:
    """``data`` with every list item that equals an earlier item of the same list removed (at every
    depth), and how many were removed."""
    removed = 0

    def walk(value: Any) -> Any:
        nonlocal removed
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        if isinstance(value, list):
            kept: list[Any] = []
            seen: set[str] = set()
            for item in value:
                item = walk(item)
                key = json.dumps(item, sort_keys=True, ensure_ascii=False)
                if key in seen:
                    removed += 1
                    continue
                seen.add(key)
                kept.append(item)
            return kept
        return value

    return walk(data), removed


# -- the rest of an object cut off inside an earlier field ----------------------------------------------
#
# A reply that loops inside its first list never writes the fields after it: the salvaged prefix has
# the list but lacks, say, ``summary``. When lacking top-level fields is all that keeps it from
# validating, a second, short call asks for just those fields, showing the model its own (closed)
# answer; the two are merged and validated against the full schema.


def missing_fields(model: type[BaseModel], error: ValidationError) -> list[str] | None:
    """The top-level fields of ``model`` whose absence is the only reason a value failed to
    validate (``error``, from validating it against ``model``); None when something else is wrong."""
    errors = error.errors()
    names = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    if len(names) != len(errors) or not all(name in model.model_fields for name in names):
        return None
    return names


def rest_model(model: type[BaseModel], names: list[str]) -> type[BaseModel]:
    """A model of only ``names``, with the original fields' types and descriptions."""
    fields: dict[str, Any] = {
        name: (model.model_fields[name].annotation, model.model_fields[name]) for name in names
    }
    return create_model(f"{model.__name__}Rest", **fields)


def rest_messages(
    messages: list[dict[str, str]], partial: dict[str, Any], names: list[str]
) -> list[dict[str, str]]:
    """The conversation asking for the fields a cut-off answer did not reach."""
    wanted = ", ".join(f'"{name}"' for name in names)
    return [
        *messages,
        {"role": "assistant", "content": json.dumps(partial, ensure_ascii=False)},
        {
            "role": "user",
            "content": (
                f"Your answer was cut off before it reached {wanted}; what it gave is kept as shown. "
                f"Reply with one JSON object that holds only {wanted}, written to fit the answer above."
            ),
        },
    ]
