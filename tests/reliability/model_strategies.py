"""Hypothesis strategies for pydantic response models: random but valid instances whose every free-text
value carries a unique token, so a renderer's output can be searched for each field.

Strings mix markdown and HTML metacharacters, unicode, blank lines and control characters with a token
``tk<n>q`` (letters and digits only, so no renderer escaping can hide it). Lists, numbers and enums
respect the field's constraints; the drawn data is validated by the model itself (and rejected by
``assume`` in the rare case a cross-field validator refuses it).
"""

from __future__ import annotations

import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from hypothesis import assume
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

ALPHABET = st.sampled_from(
    list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789")
    + list("*_`#|[]()<>!~-+=.,:;\\/\"'&%$@{}^")
    + [
        "\n",
        "\n\n",
        "\t",
        "\r\n",
        "é",
        "ß",
        "中",
        "文",
        "😀",
        "\u200b",
        "\u00a0",
        "---",
        "```",
        "| a | b |",
        "<script>",
        "&amp;",
    ]
)
FREE_TEXT = st.lists(ALPHABET, max_size=12).map("".join)


@dataclass
class Drawn:
    """Tokens of one drawn instance: token -> dotted path of the field that carries it."""

    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, path: str) -> str:
        token = f"tk{len(self.tokens)}q"
        self.tokens[token] = path
        return token


def _metadata(items: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        for name in ("min_length", "max_length", "ge", "gt", "le", "lt"):
            value = getattr(item, name, None)
            if value is not None:
                out[name] = value
    return out


def _unwrap(annotation: Any, meta: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    while typing.get_origin(annotation) is typing.Annotated:
        args = typing.get_args(annotation)
        annotation = args[0]
        meta = {**meta, **_metadata(list(args[1:]))}
    return annotation, meta


def draw_value(draw, annotation: Any, meta: dict[str, Any], drawn: Drawn, path: str, depth: int = 0) -> Any:
    annotation, meta = _unwrap(annotation, meta)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return draw(FREE_TEXT) + " " + drawn.token(path)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if type(None) in args and (depth > 3 or draw(st.booleans())):
            return None
        return draw_value(draw, draw(st.sampled_from(options)), meta, drawn, path, depth)
    if origin is typing.Literal:
        return draw(st.sampled_from(args))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return draw(st.sampled_from(list(annotation))).value
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return draw_model_data(draw, annotation, drawn, path, depth + 1)
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        item = args[0] if args else str
        low = int(meta.get("min_length", 0))
        high = int(meta.get("max_length", low + (3 if depth < 2 else 1)))
        high = max(low, min(high, low + (3 if depth < 2 else 1)))
        count = draw(st.integers(low, high))
        return [draw_value(draw, item, {}, drawn, f"{path}[]", depth + 1) for _ in range(count)]
    if origin is dict or annotation is dict:
        value_type = args[1] if len(args) == 2 else str
        count = draw(st.integers(0, 2))
        return {
            f"key{i}": draw_value(draw, value_type, {}, drawn, f"{path}{{}}", depth + 1) for i in range(count)
        }
    if annotation is bool:
        return draw(st.booleans())
    if annotation is int:
        low = meta.get("ge", meta["gt"] + 1 if "gt" in meta else -5)
        high = meta.get("le", meta["lt"] - 1 if "lt" in meta else 10_000)
        return draw(st.integers(int(low), int(high)))
    if annotation is float:
        low = float(meta.get("ge", meta.get("gt", -1e6)))
        high = float(meta.get("le", meta.get("lt", 1e6)))
        value = draw(
            st.floats(
                low,
                high,
                allow_nan=False,
                allow_infinity=False,
                exclude_min="gt" in meta,
                exclude_max="lt" in meta,
            )
        )
        return value
    if annotation is str:
        token = drawn.token(path)
        text = draw(FREE_TEXT)
        value = f"{text} {token}" if draw(st.booleans()) else f"{token} {text}"
        if "max_length" in meta and len(value) > meta["max_length"]:
            value = token[: meta["max_length"]]
        if "min_length" in meta and len(value) < meta["min_length"]:
            value = value + "x" * (meta["min_length"] - len(value))
        return value
    raise NotImplementedError(f"no strategy for {annotation!r} at {path}")


def draw_model_data(
    draw, model: type[BaseModel], drawn: Drawn, path: str = "", depth: int = 0
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        data[key] = draw_value(
            draw,
            info.annotation,
            _metadata(list(info.metadata)),
            drawn,
            f"{path}.{name}" if path else name,
            depth,
        )
    return data


@st.composite
def instances(draw, model: type[BaseModel]) -> tuple[BaseModel, Drawn]:
    drawn = Drawn()
    data = draw_model_data(draw, model, drawn)
    try:
        instance = model.model_validate(data)
    except ValidationError:
        assume(False)
        raise  # unreachable: assume(False) stops the example
    return instance, drawn
