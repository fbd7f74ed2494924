"""Deterministic, schema-valid placeholder answers for the ``offline`` provider.

The answer for a structured call is built by walking the JSON schema of the requested pydantic model
(``$ref``/``$defs``, nested objects, arrays with ``minItems``/``maxItems``/``uniqueItems``/
``prefixItems``, enums and consts, numbers with inclusive/exclusive bounds and ``multipleOf``,
``anyOf``/``oneOf`` including ``Optional``, ``additionalProperties`` dicts, string formats, lengths
and simple patterns). Everything is drawn from a ``random.Random`` seeded by the request, so the same
request always gets the same answer and no network is touched.

Enums are drawn like the rest, except the gates' verdicts: an enum offering ``USABLE``, ``usable`` or
``ALLOW`` gets it, so an offline plan is never screened out or refused by chance.

Free text carries the marker ``[offline]`` so nobody mistakes it for model output: every plain string
starts with ``"[offline] "`` (strings with a format, enum or pattern cannot, and don't).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import string
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

try:  # the regex parser behind ``re``; used to build strings for ``pattern`` constraints
    import re._parser as _sre_parse  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - older interpreters
    import sre_parse as _sre_parse

MARKER = "[offline]"
PREFIX = MARKER + " "
MAX_DEPTH = 6  # below this depth, lists shrink to their minimum and Optionals become null

_WORDS = (
    "plan milestone budget stakeholder risk schedule team supplier permit launch review scope "
    "resource contingency market pilot prototype funding approval training logistics vendor "
    "quality safety compliance timeline outreach partnership facility baseline metric forecast "
    "workshop inventory procurement audit integration rollout assessment dependency capacity "
    "deliverable roadmap governance sponsor charter feedback migration maintenance handover"
).split()
_VERBS = (
    "confirm prepare secure review estimate schedule assign validate document negotiate monitor "
    "test publish refine align track"
).split()
_SHORT_HINTS = (
    "name",
    "title",
    "label",
    "heading",
    "id",
    "key",
    "code",
    "category",
    "kind",
    "type",
    "status",
    "owner",
    "role",
    "unit",
    "currency",
    "location",
    "city",
    "country",
    "region",
    "tag",
    "level",
    "phase",
    "verdict",
    "decision",
    "short",
    "keyword",
)
_LONG_HINTS = (
    "description",
    "summary",
    "explanation",
    "rationale",
    "reasoning",
    "analysis",
    "details",
    "justification",
    "assessment",
    "narrative",
    "content",
    "markdown",
    "body",
    "answer",
    "response",
    "overview",
    "context",
    "discussion",
    "review",
    "approach",
    "strategy",
    "consequence",
)


def request_seed(messages: Sequence[dict[str, str]], schema: dict[str, Any] | None) -> int:
    """A stable seed from everything that defines the request."""
    canonical = json.dumps(
        {"messages": [dict(m) for m in messages], "schema": schema}, sort_keys=True, ensure_ascii=False
    )
    return int.from_bytes(hashlib.sha256(canonical.encode("utf-8")).digest()[:8], "big")


# The answers of the gates that stop or flag a plan: the prompt screening (verdict USABLE, reason
# usable) and the redline gate (ALLOW). An offline plan always passes them, so a demonstration run is
# not refused or bannered by a roll of the dice; tests that need the other verdicts script a reply.
_PASSING_VERDICTS = frozenset({"USABLE", "usable", "ALLOW"})

_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def known_ids(messages: Sequence[dict[str, str]]) -> list[str]:
    """The uuids the request mentions (levers, documents, WBS tasks, ...), in first-seen order.

    Fields named like an id are answered from these, so an offline plan's cross-references (which
    task a duration belongs to, which lever a decision concerns) point at things that exist, as a
    real model's would, and downstream steps get realistic structure to work on.
    """
    seen: dict[str, None] = {}
    for message in messages:
        for match in _UUID.findall(message.get("content", "")):
            seen.setdefault(match, None)
    return list(seen)


def offline_json(
    schema: dict[str, Any],
    seed: int,
    ids: Sequence[str] = (),
    list_sizes: Mapping[str, tuple[int, int]] | None = None,
) -> str:
    """A JSON text valid against ``schema``, the same for the same seed.

    ``list_sizes`` maps a property name to the (low, high) item count its lists get (still clipped to
    the schema's ``minItems``/``maxItems``); other lists keep the faker's small default sizes.
    """
    value = SchemaFaker(schema, random.Random(seed), ids, list_sizes).value()
    return json.dumps(value, ensure_ascii=False, indent=2)


def offline_markdown(messages: Sequence[dict[str, str]], seed: int) -> str:
    """Deterministic free-text markdown, clearly marked as offline content."""
    rng = random.Random(seed)
    faker = SchemaFaker({}, rng)
    user_turns = [m.get("content", "") for m in messages if m.get("role") == "user"]
    topic = " ".join(user_turns[-1].split()[:6]) if user_turns else ""
    lines = [f"# {PREFIX}{faker.words(3, 6).capitalize()}", ""]
    lines.append(
        f"{PREFIX}This text was produced without a language model, as a stand-in for a real answer"
        + (f" to a request starting with: {topic!r}." if topic else ".")
    )
    for _ in range(rng.randint(2, 3)):
        lines += ["", f"## {faker.words(2, 4).capitalize()}", "", faker.sentences(2, 3), ""]
        lines += [f"- {faker.sentence()}" for _ in range(rng.randint(2, 4))]
    return "\n".join(lines).strip() + "\n"


class SchemaFaker:
    """Walks one JSON schema and builds a value that validates against it."""

    def __init__(
        self,
        schema: dict[str, Any],
        rng: random.Random,
        ids: Sequence[str] = (),
        list_sizes: Mapping[str, tuple[int, int]] | None = None,
    ):
        self.root = schema
        self.defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
        self.rng = rng
        self.ids = list(ids)
        self.list_sizes = dict(list_sizes or {})
        for key, (low, high) in self.list_sizes.items():
            if not 0 <= low <= high:
                raise ValueError(f"list size for {key!r} must be 0 <= low <= high, got {(low, high)}")

    def value(self) -> Any:
        return self.build(self.root, name="", depth=0)

    # -- dispatch ---------------------------------------------------------------------------------

    def enum_value(self, values: Sequence[Any]) -> Any:
        """A gate's passing verdict when the enum offers one, else any of the values."""
        passing = [v for v in values if v in _PASSING_VERDICTS]
        return passing[0] if passing else self.rng.choice(values)

    def build(self, schema: dict[str, Any] | bool, name: str, depth: int) -> Any:
        if schema is True or schema == {}:
            return self.text_for(name, {})
        if schema is False:
            raise ValueError(f"schema for {name or 'the value'} allows nothing")
        if "$ref" in schema:
            target = self.resolve(schema["$ref"])
            merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            return self.build(merged, name, depth)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return self.enum_value(schema["enum"])
        combined = self.combined(schema, depth)
        if combined is not None:
            return self.build(combined, name, depth)
        kind = _schema_type(schema, depth)
        builder = getattr(self, f"build_{kind}", None)
        if builder is None:
            raise ValueError(f"unsupported JSON schema type {kind!r} for {name or 'the value'}")
        return builder(schema, name, depth)

    def combined(self, schema: dict[str, Any], depth: int) -> dict[str, Any] | None:
        """The schema to build for ``allOf`` (merged), ``anyOf`` or ``oneOf`` (one branch); else None."""
        if "allOf" in schema:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
            for part in schema["allOf"]:
                part = self.resolve(part["$ref"]) if "$ref" in part else part
                merged = _merge(merged, part)
            return merged
        if "anyOf" in schema:
            # The first branch is the declared type's main form (Decimal is number-or-string; the
            # string form has rules a schema does not spell out), so anyOf takes it.
            return self.pick_branch(schema["anyOf"], depth, first=True)
        if "oneOf" in schema:  # discriminated unions: any member will do
            return self.pick_branch(schema["oneOf"], depth)
        return None

    def resolve(self, ref: str) -> dict[str, Any]:
        if ref == "#":
            return self.root
        for prefix in ("#/$defs/", "#/definitions/"):
            if ref.startswith(prefix):
                key = ref[len(prefix) :]
                if key in self.defs:
                    return self.defs[key]
        raise ValueError(f"cannot resolve $ref {ref!r}")

    def pick_branch(self, branches: list[dict[str, Any]], depth: int, first: bool = False) -> dict[str, Any]:
        non_null = [b for b in branches if b.get("type") != "null"]
        if not non_null:
            return branches[0]
        if depth >= MAX_DEPTH and len(non_null) < len(branches):
            return {"type": "null"}
        return non_null[0] if first else self.rng.choice(non_null)

    # -- scalars ----------------------------------------------------------------------------------

    def build_null(self, schema: dict[str, Any], name: str, depth: int) -> None:
        return None

    def build_boolean(self, schema: dict[str, Any], name: str, depth: int) -> bool:
        return self.rng.random() < 0.5

    def build_integer(self, schema: dict[str, Any], name: str, depth: int) -> int:
        low, high = _int_bounds(schema)
        default_low, default_high = _int_defaults(name)
        # The defaults are ordered (low < high), so with neither bound given they are taken as they are.
        if low is None:
            low = default_low if high is None or default_low <= high else high - 10
        if high is None:
            high = default_high if default_high >= low else low + 100
        step = schema.get("multipleOf")
        if isinstance(step, int) and step > 0:
            first = -(-low // step) * step
            if first > high:
                raise ValueError(f"no multiple of {step} in [{low}, {high}] for {name}")
            return first + step * self.rng.randint(0, (high - first) // step)
        return self.rng.randint(low, high)

    def build_number(self, schema: dict[str, Any], name: str, depth: int) -> float | int:
        lo, hi = _number_range(schema, name)
        step = schema.get("multipleOf")
        if isinstance(step, int | float) and step > 0:
            first = math.ceil(lo / step)
            last = math.floor(hi / step)
            candidates = [k for k in range(first, last + 1) if _inside(k * step, schema)][:1000]
            if not candidates:
                raise ValueError(f"no multiple of {step} fits the bounds of {name}")
            return self.rng.choice(candidates) * step
        for _ in range(20):
            value = round(self.rng.uniform(lo, hi), 2)
            if _inside(value, schema):
                return value
        return (lo + hi) / 2

    def build_string(self, schema: dict[str, Any], name: str, depth: int) -> str:
        fmt = schema.get("format")
        if fmt:
            formatted = self.formatted(fmt)
            if formatted is not None:
                return formatted
        if "pattern" in schema:
            return self.matching(schema["pattern"], schema, name)
        return self.text_for(name, schema)

    def formatted(self, fmt: str) -> str | None:
        base = datetime(2026, 1, 5, 9, 0, tzinfo=UTC) + timedelta(days=self.rng.randint(0, 700))
        if fmt == "date-time":
            return base.isoformat().replace("+00:00", "Z")
        if fmt == "date":
            return base.date().isoformat()
        if fmt == "time":
            return f"{self.rng.randint(8, 17):02d}:{self.rng.choice(('00', '15', '30', '45'))}:00"
        if fmt == "duration":
            return f"P{self.rng.randint(1, 90)}D"
        if fmt == "uuid":
            return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        if fmt == "email":
            return f"offline.{self.rng.choice(_WORDS)}@example.com"
        if fmt in ("uri", "url", "iri"):
            return f"https://example.com/offline/{self.rng.choice(_WORDS)}"
        if fmt == "ipv4":
            return f"192.0.2.{self.rng.randint(1, 254)}"
        return None

    def matching(self, pattern: str, schema: dict[str, Any], name: str) -> str:
        regex = re.compile(pattern)
        candidates = [self.text_for(name, schema)]
        try:
            candidates += [_sample_regex(pattern, self.rng) for _ in range(5)]
        except (ValueError, re.error):
            pass
        for candidate in candidates:
            if regex.search(candidate) and _length_ok(candidate, schema):
                return candidate
        raise ValueError(f"cannot build a string matching {pattern!r} for {name or 'the value'}")

    # -- text -------------------------------------------------------------------------------------

    def text_for(self, name: str, schema: dict[str, Any]) -> str:
        lowered = name.lower()
        if self.ids and (lowered == "id" or lowered.endswith(("_id", "_uuid"))):
            candidate = self.rng.choice(self.ids)
            if _length_ok(candidate, schema):
                return candidate
        if any(h in lowered for h in _LONG_HINTS):
            body = self.sentences(2, 3)
        elif lowered.rsplit("_", 1)[-1] in _SHORT_HINTS:
            body = self.words(2, 5).capitalize()
        else:
            body = self.sentence()
        text = PREFIX + body
        min_len = schema.get("minLength", 0)
        max_len = schema.get("maxLength")
        while len(text) < min_len:
            text += " " + self.sentence()
        if max_len is not None and len(text) > max_len:
            text = text[:max_len].rstrip() if max_len > len(PREFIX) else text[:max_len]
            if len(text) < min_len:  # rstrip() went below the minimum
                text = (PREFIX + "x" * max_len)[:max_len]
        return text

    def words(self, low: int, high: int) -> str:
        return " ".join(self.rng.choice(_WORDS) for _ in range(self.rng.randint(low, high)))

    def sentence(self) -> str:
        return f"{self.rng.choice(_VERBS).capitalize()} the {self.words(1, 2)} for the {self.words(2, 4)}."

    def sentences(self, low: int, high: int) -> str:
        return " ".join(self.sentence() for _ in range(self.rng.randint(low, high)))

    # -- containers -------------------------------------------------------------------------------

    def build_array(self, schema: dict[str, Any], name: str, depth: int) -> list[Any]:
        prefix = schema.get("prefixItems")
        if prefix:
            return self.build_tuple(schema, prefix, name, depth)
        items = schema.get("items", {})
        min_items = schema.get("minItems", 0)
        count = self.item_count(schema, name, depth)
        item_name = _singular(name)
        values: list[Any] = []
        seen: set[str] = set()
        attempts = 0
        while len(values) < count:
            attempts += 1
            value = self.build(items, item_name, depth + 1)
            if schema.get("uniqueItems"):
                key = json.dumps(value, sort_keys=True)
                if key in seen:
                    value = _make_distinct(value, len(values) + 1)
                    key = json.dumps(value, sort_keys=True)
                if key in seen:
                    if attempts > count * 20:
                        if len(values) >= min_items:
                            break
                        raise ValueError(f"cannot build {min_items} distinct items for {name or 'the list'}")
                    continue
                seen.add(key)
            values.append(value)
        return values

    def build_tuple(self, schema: dict[str, Any], prefix: list[Any], name: str, depth: int) -> list[Any]:
        """``prefixItems``: one value per position, then ``items`` up to ``minItems``."""
        values = [self.build(item, name, depth + 1) for item in prefix]
        extra_schema = schema.get("items")
        min_items = schema.get("minItems", len(prefix))
        while len(values) < min_items and isinstance(extra_schema, dict):
            values.append(self.build(extra_schema, name, depth + 1))
        return values

    def item_count(self, schema: dict[str, Any], name: str, depth: int) -> int:
        """How many items a list gets: the configured size for ``name``, the minimum deep down, else
        a few (more near the top), always within ``minItems``/``maxItems``."""
        min_items = schema.get("minItems", 0)
        max_items = schema.get("maxItems")
        if name in self.list_sizes and depth < MAX_DEPTH:
            low, high = self.list_sizes[name]
            low, high = max(low, min_items), max(high, min_items)
            if max_items is not None:
                low, high = min(low, max_items), min(high, max_items)
            return self.rng.randint(low, high)
        if depth >= MAX_DEPTH:
            return min_items
        low = max(min_items, 2 if depth < 3 else 1)
        high = max(low, min_items + (4 if depth < 2 else 2))
        if max_items is not None:
            high = min(high, max_items)
            low = min(low, high)
        return self.rng.randint(low, high)

    def build_object(self, schema: dict[str, Any], name: str, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        for key, sub in properties.items():
            # Optional fields are filled too (richer content), except deep down where recursion lurks.
            if key not in required and depth >= MAX_DEPTH - 1:
                continue
            out[key] = self.build(sub, key, depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and not properties:
            min_props = schema.get("minProperties", 0)
            max_props = schema.get("maxProperties")
            count = max(min_props, 0 if depth >= MAX_DEPTH else self.rng.randint(2, 3))
            if max_props is not None:
                count = min(count, max_props)
            for index in range(1, count + 1):
                key = f"{_singular(name) or 'item'}_{index}"
                out[key] = self.build(extra, key, depth + 1)
        return out


# ------------------------------------------------------------------------------------------------
# helpers


def _infer_type(schema: dict[str, Any]) -> str:
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    if any(k in schema for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")):
        return "number"
    return "string"


def _schema_type(schema: dict[str, Any], depth: int) -> str:
    """The one JSON type to build: of a list, the first non-null one (null deep down, where
    recursion lurks, when the list allows it); without ``type``, what the keywords imply."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or ["null"]
        kind = kinds[0] if depth < MAX_DEPTH else (kind[0] if "null" not in kind else "null")
    if kind is None:
        kind = _infer_type(schema)
    return kind


def _number_range(schema: dict[str, Any], name: str) -> tuple[float, float]:
    """The range a number is drawn from: the schema's bounds (the tighter of inclusive and exclusive),
    a default for ``name`` on a missing side, widened past a single bound when the default misses it."""
    bounds = [schema.get(k) for k in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")]
    lows = [v for v in bounds[:2] if v is not None]
    highs = [v for v in bounds[2:] if v is not None]
    lo = max(lows) if lows else None
    hi = min(highs) if highs else None
    default_low, default_high = _number_defaults(name)
    # The defaults are ordered (low < high), so with neither bound given they are taken as they are.
    if lo is None:
        lo = default_low if hi is None or default_low < hi else hi - max(1.0, abs(hi))
    if hi is None:
        hi = default_high if default_high > lo else lo + max(1.0, abs(lo))
    return lo, hi


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if key == "properties":
            out["properties"] = {**out.get("properties", {}), **value}
        elif key == "required":
            out["required"] = sorted(set(out.get("required", [])) | set(value))
        else:
            out.setdefault(key, value)
    return out


def _int_bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if schema.get("exclusiveMinimum") is not None:
        candidate = math.floor(schema["exclusiveMinimum"]) + 1
        low = candidate if low is None else max(math.ceil(low), candidate)
    elif low is not None:
        low = math.ceil(low)
    if schema.get("exclusiveMaximum") is not None:
        candidate = math.ceil(schema["exclusiveMaximum"]) - 1
        high = candidate if high is None else min(math.floor(high), candidate)
    elif high is not None:
        high = math.floor(high)
    if low is not None and high is not None and low > high:
        raise ValueError(f"empty integer range [{low}, {high}]")
    return low, high


def _int_defaults(name: str) -> tuple[int, int]:
    lowered = name.lower()
    if "year" in lowered:
        return 2026, 2030
    if "percent" in lowered or "pct" in lowered:
        return 5, 95
    if any(h in lowered for h in ("score", "rating", "level", "rank", "priority")):
        return 1, 5
    if any(h in lowered for h in ("day", "duration", "week")):
        return 1, 60
    if any(h in lowered for h in ("count", "number", "quantity", "size")):
        return 1, 20
    return 1, 100


def _number_defaults(name: str) -> tuple[float, float]:
    lowered = name.lower()
    if any(h in lowered for h in ("probability", "confidence", "ratio", "share", "weight")):
        return 0.05, 0.95
    if "percent" in lowered:
        return 5.0, 95.0
    if any(h in lowered for h in ("cost", "budget", "price", "amount", "revenue")):
        return 1_000.0, 250_000.0
    return 1.0, 1_000.0


def _inside(value: float, schema: dict[str, Any]) -> bool:
    if schema.get("minimum") is not None and value < schema["minimum"]:
        return False
    if schema.get("maximum") is not None and value > schema["maximum"]:
        return False
    if schema.get("exclusiveMinimum") is not None and value <= schema["exclusiveMinimum"]:
        return False
    if schema.get("exclusiveMaximum") is not None and value >= schema["exclusiveMaximum"]:
        return False
    return True


def _length_ok(text: str, schema: dict[str, Any]) -> bool:
    if len(text) < schema.get("minLength", 0):
        return False
    return schema.get("maxLength") is None or len(text) <= schema["maxLength"]


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


def _make_distinct(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return f"{value} ({index})"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value + index
    return value


def _sample_regex(pattern: str, rng: random.Random) -> str:
    """A string matching a simple regular expression (literals, classes, repeats, groups, branches)."""
    parsed = _sre_parse.parse(pattern)
    return _emit(parsed, rng, depth=0)


_CATEGORY_CHARS = {
    "CATEGORY_DIGIT": string.digits,
    "CATEGORY_WORD": string.ascii_letters + string.digits + "_",
    "CATEGORY_SPACE": " ",
    "CATEGORY_NOT_DIGIT": string.ascii_letters,
    "CATEGORY_NOT_WORD": "-. ",
    "CATEGORY_NOT_SPACE": string.ascii_letters + string.digits,
}
_PRINTABLE = string.ascii_letters + string.digits + " -_.,"


def _emit(parsed: Any, rng: random.Random, depth: int) -> str:
    if depth > 20:
        raise ValueError("pattern nests too deeply")
    return "".join(_emit_element(str(op), arg, rng, depth) for op, arg in parsed)


def _emit_element(name: str, arg: Any, rng: random.Random, depth: int) -> str:
    """The text for one parsed pattern element (an anchor, ``AT``, matches the empty string)."""
    if name == "LITERAL":
        return chr(arg)
    if name == "NOT_LITERAL":
        return next(c for c in _PRINTABLE if ord(c) != arg)
    if name == "ANY":
        return rng.choice(string.ascii_letters)
    if name == "IN":
        return _emit_class(arg, rng)
    if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
        low, high, sub = arg
        high = low + 3 if high == _sre_parse.MAXREPEAT else high
        return "".join(_emit(sub, rng, depth + 1) for _ in range(rng.randint(low, min(high, low + 3))))
    if name == "SUBPATTERN":
        return _emit(arg[-1], rng, depth + 1)
    if name == "ATOMIC_GROUP":
        return _emit(arg, rng, depth + 1)
    if name == "BRANCH":
        return _emit(rng.choice(arg[1]), rng, depth + 1)
    if name == "AT":
        return ""
    raise ValueError(f"pattern element {name} is not supported")


def _emit_class(items: list[tuple[Any, Any]], rng: random.Random) -> str:
    if items and str(items[0][0]) == "NEGATE":
        banned: set[str] = set()
        for op, arg in items[1:]:
            if str(op) == "LITERAL":
                banned.add(chr(arg))
            elif str(op) == "RANGE":
                banned.update(chr(c) for c in range(arg[0], arg[1] + 1))
            elif str(op) == "CATEGORY":
                banned.update(_CATEGORY_CHARS.get(str(arg), ""))
        allowed = [c for c in _PRINTABLE if c not in banned]
        if not allowed:
            raise ValueError("negated class leaves nothing printable")
        return rng.choice(allowed)
    op, arg = rng.choice(items)
    if str(op) == "LITERAL":
        return chr(arg)
    if str(op) == "RANGE":
        return chr(rng.randint(arg[0], arg[1]))
    if str(op) == "CATEGORY":
        return rng.choice(_CATEGORY_CHARS.get(str(arg), string.ascii_letters))
    raise ValueError(f"class element {op} is not supported")
