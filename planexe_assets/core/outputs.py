"""What a step's JSON outputs must look like: the layouts a step declares per output key.

A step module registers its function with its response models per output key
(``@register("identify_purpose", models={"raw": PlanPurposeInfo})``, see ``planexe_assets.steps``). A
value is one layout or a tuple of layouts, all of which must pass:

- a pydantic model class, short for ``Fields(model)``: a JSON object whose response fields validate
  against the model (raw files keep bookkeeping keys such as ``metadata``, ``system_prompt`` and
  ``user_prompt`` beside them; only the model's fields are validated);
- ``Fields(model, at=key)`` / ``Items(model, at=key)``: the object, or the list of objects, at ``key``;
- ``Reader(fn, takes=...)``: read with the reader the downstream step uses (it raises ``StepError``),
  so a passing check means the downstream step can read the file;
- ``OneOf(...)``: any one of several layouts (ours first, then PlanExe's, e.g. ``or_planexe(model)``
  for a response nested under ``response`` in imported runs).

The asset check ``json_valid`` (``planexe_assets.dagster_defs.checks``) applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from planexe_assets.core.contract import UpstreamFiles
from planexe_assets.core.failures import StepError
from planexe_assets.core.step_table import Step


def _response_fields(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that are fields of ``model`` (by name or alias): the response part."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return {k: v for k, v in data.items() if k in names}


def _at(data: Any, key: str | None) -> Any:
    if key is None:
        return data
    if not isinstance(data, dict):
        raise StepError(f"expected a JSON object with key {key!r}, found {type(data).__name__}")
    if key not in data:
        raise StepError(f"key {key!r} is missing")
    return data[key]


def _validation_summary(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
    ]
    more = len(exc.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


@dataclass(frozen=True)
class Fields:
    """A JSON object (or the object at ``at``) whose response fields validate against ``model``."""

    model: type[BaseModel]
    at: str | None = None

    def describe(self) -> str:
        where = f" at {self.at!r}" if self.at else ""
        return f"{_model_name(self.model)} (response fields{where})"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        obj = _at(data, self.at)
        if not isinstance(obj, dict):
            raise StepError(f"expected a JSON object, found {type(obj).__name__}")
        try:
            self.model.model_validate(_response_fields(self.model, obj))
        except ValidationError as exc:
            raise StepError(f"not a valid {self.model.__name__}: {_validation_summary(exc)}") from None


@dataclass(frozen=True)
class Items:
    """A JSON list (or the list at ``at``) of objects, each validating against ``model``."""

    model: type[BaseModel]
    at: str | None = None

    def describe(self) -> str:
        where = f" at {self.at!r}" if self.at else ""
        return f"list of {_model_name(self.model)}{where}"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        items = _at(data, self.at)
        if not isinstance(items, list):
            raise StepError(f"expected a list, found {type(items).__name__}")
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                raise StepError(f"item {position} is {type(item).__name__}, expected a JSON object")
            try:
                self.model.model_validate(_response_fields(self.model, item))
            except ValidationError as exc:
                raise StepError(
                    f"item {position} is not a valid {self.model.__name__}: {_validation_summary(exc)}"
                ) from None


@dataclass(frozen=True)
class Reader:
    """Read with a step module's own reader (it raises ``StepError``), as the downstream step does.

    ``takes``: ``"data"`` (the decoded JSON), ``"text"`` (the file's text) or ``"upstream"`` (an
    ``UpstreamFiles`` of the producing step holding just this file, as the downstream step gets it).
    ``at``: read the member ``at`` of the decoded object instead. ``args``: passed after the input.
    """

    read: Callable[..., Any]
    takes: str = "data"
    at: str | None = None
    args: tuple[Any, ...] = ()

    def describe(self) -> str:
        where = f" of {self.at!r}" if self.at else ""
        return f"{self.read.__module__.rsplit('.', 1)[-1]}.{self.read.__name__}{where}"

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        if self.takes == "text":
            self.read(text, *self.args)
        elif self.takes == "upstream":
            self.read(UpstreamFiles(step=step, contents={filename: text}), *self.args)
        else:
            self.read(_at(data, self.at), *self.args)


@dataclass(frozen=True)
class OneOf:
    """Any one of several layouts: ours first, then PlanExe's (imported runs nest the response under
    ``response``). Fails with the problems of every layout when none fits."""

    layouts: tuple[Fields | Items | Reader, ...]

    def describe(self) -> str:
        return " or ".join(layout.describe() for layout in self.layouts)

    def validate(self, data: Any, text: str, step: Step, filename: str) -> None:
        problems = []
        for layout in self.layouts:
            try:
                layout.validate(data, text, step, filename)
                return
            except StepError as exc:
                problems.append(f"as {layout.describe()}: {exc}")
        raise StepError("; ".join(problems))


OutputSpec = Fields | Items | Reader | OneOf


def or_planexe(model: type[BaseModel], nested: str = "response") -> OneOf:
    """Our raw layout (response fields at the top level) or PlanExe's (the response under ``nested``)."""
    return OneOf((Fields(model), Fields(model, at=nested)))


def _model_name(model: type[BaseModel]) -> str:
    return f"{model.__module__.rsplit('.', 1)[-1]}.{model.__name__}"


OutputModels = type[BaseModel] | OutputSpec | tuple["type[BaseModel] | OutputSpec", ...]
"""What ``register(..., models={key: ...})`` takes per output key: a model, a layout, or several."""


def as_specs(value: OutputModels) -> tuple[OutputSpec, ...]:
    """The layouts of one ``models`` value, a bare model class meaning ``Fields(model)``."""
    items = value if isinstance(value, tuple) else (value,)
    specs: list[OutputSpec] = []
    for item in items:
        if isinstance(item, type) and issubclass(item, BaseModel):
            specs.append(Fields(item))
        elif isinstance(item, (Fields, Items, Reader, OneOf)):
            specs.append(item)
        else:
            raise TypeError(
                f"{item!r} is neither a pydantic model nor an output layout (Fields, Items, Reader, OneOf)"
            )
    if not specs:
        raise ValueError("an output needs at least one model or layout")
    return tuple(specs)
