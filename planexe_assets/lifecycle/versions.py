"""Code versions of the steps and data versions of their outputs (Dagster's staleness, "Unsynced").

No Dagster import: the assets turn these strings into ``code_version`` and ``DataVersion``.

**Code version.** A step's *own fingerprint* is a sha256 over everything in ``planexe_assets.steps``
that its registered function reaches: the source of every function it calls (renderers, parsers,
prompt builders, shared helpers), the value of every module-level constant it reads (the system
prompts are such constants), the JSON schema and source of every pydantic response model it uses
(with the models their fields name), the source of other classes and enums it uses, the package
data files it names (Jinja2 templates, the Gantt viewer script, and the templates they include),
and its row of the step table (its output file names). Reachability is followed through the names
a function's code looks up in its module, recursively, so changing one prompt changes only the
steps that send it. Exceptions are left out (their text never reaches an output).

The asset's **code version** is a hash of its own fingerprint and the code versions of its upstream
steps, i.e. of all the code that produced it. Dagster 1.13 calls an asset stale for its own code
version or for a new data version of an upstream asset, but not because an upstream asset is itself
stale; with per-step versions alone, a changed prompt would mark one asset stale and its downstream
only after it re-ran, one layer per "Materialize stale". With lineage versions the changed step and
everything downstream of it are stale at once, and "Materialize stale" re-runs exactly those, in one
run. The cost: when the re-run step happens to produce byte-identical content, its downstream steps
re-run anyway.

**Data version.** A sha256 over the step's output files (names and contents, per-item files
included; in JSON files without the top-level ``metadata`` member, the per-run call bookkeeping): a
re-materialization that writes the same content keeps the same data version, so it does not make
downstream assets stale.

Everything here is deterministic across processes (source text, sorted sets, JSON schemas with
sorted keys, never ``id()``-based reprs), so every process of a deployment computes the same versions.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import hashlib
import inspect
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from typing import Any, get_args

from pydantic import BaseModel

from planexe_assets.core import STEP_BY_NAME, Step
from planexe_assets.steps import step_function

STEPS_PACKAGE = "planexe_assets.steps"
# Package data the steps read by file name (templates, inlined scripts).
DATA_DIRS = ("templates", "static")
CODE_VERSION_LENGTH = 16


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def data_version(files: Mapping[str, str]) -> str:
    """sha256 over the output files (name -> content), in file-name order.

    A JSON file's top-level ``metadata`` member is left out: it is the bookkeeping of the calls
    that made the file (model, duration, tokens, attempts), which differs on every run, and no step
    reads it (``common._DROP_FROM_QUERY``). Everything else, byte for byte, is the content.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(
            name.encode("utf-8") + b"\0" + _sha(_content(name, files[name])).encode("ascii") + b"\n"
        )
    return digest.hexdigest()


def _content(name: str, text: str) -> str:
    if not name.endswith(".json") or '"metadata"' not in text:
        return text
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if not isinstance(data, dict) or "metadata" not in data:
        return text
    del data["metadata"]
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


# -- what a step's code reaches ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Part:
    """One thing a step's output depends on: its kind, a readable name, and the sha256 of its text."""

    kind: str  # function | prompt | constant | response model | class | enum | data file | step table row
    name: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    step: str
    parts: tuple[Part, ...]

    @property
    def digest(self) -> str:
        return _sha("\n".join(f"{p.kind}\0{p.name}\0{p.sha256}" for p in self.parts))

    def summary(self) -> str:
        """A one-line account of what the version covers, for asset metadata."""
        by_kind: dict[str, list[str]] = {}
        for part in self.parts:
            short = (
                part.name if part.kind in ("data file", "step table row") else part.name.rsplit(".", 1)[-1]
            )
            by_kind.setdefault(part.kind, []).append(short)
        order = (
            "prompt",
            "response model",
            "function",
            "class",
            "enum",
            "constant",
            "module",
            "data file",
            "step table row",
        )
        chunks = []
        for kind in order:
            names = by_kind.get(kind)
            if not names:
                continue
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            label = kind if len(names) == 1 else ("classes" if kind == "class" else f"{kind}s")
            chunks.append(f"{len(names)} {label} ({shown})")
        return "; ".join(chunks)


def _ours(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == STEPS_PACKAGE or module.startswith(STEPS_PACKAGE + ".")


def _source(obj: Any) -> str | None:
    """The source text, or None for code made at run time (no file behind it)."""
    if isinstance(obj, (type, types.FunctionType)):
        found = _definition_sources(obj.__module__).get(obj.__qualname__)
        if found is not None or isinstance(obj, type):
            return found
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return None


@cache
def _definition_sources(module_name: str) -> dict[str, str]:
    """Source of every class and function of a module by qualified name (decorators included), from
    one parse of the module (``inspect.getsource`` re-parses the whole module for each class)."""
    module = sys.modules.get(module_name)
    try:
        text = inspect.getsource(module) if module is not None else None
    except (OSError, TypeError):
        text = None
    if text is None:
        return {}
    found: dict[str, str] = {}
    lines = text.splitlines(keepends=True)

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found[name] = "".join(lines[first - 1 : child.end_lineno])
                visit(child, f"{name}.")
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                found[name] = "".join(lines[first - 1 : child.end_lineno])
                visit(child, f"{name}.<locals>.")

    visit(ast.parse(text), "")
    return found


def _canonical(value: Any) -> str | None:
    """A process-independent text of a constant, or None when ``value`` is no plain constant."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}={value.value!r}"
    if isinstance(value, re.Pattern):
        return f"re({value.pattern!r}, {value.flags})"
    if isinstance(value, (tuple, list, set, frozenset, Mapping)):
        return _canonical_collection(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and _ours(type(value)):
        fields = [(f.name, _canonical(getattr(value, f.name))) for f in dataclasses.fields(value)]
        if any(v is None for _, v in fields):
            return None
        return f"{type(value).__qualname__}(" + ", ".join(f"{n}={v}" for n, v in fields) + ")"
    return None


def _canonical_collection(value: tuple | list | set | frozenset | Mapping) -> str | None:
    """A sequence in order, a set sorted, a mapping in insertion order; None when an item is no
    plain constant."""
    if isinstance(value, Mapping):
        pairs = [(_canonical(k), _canonical(v)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "dict{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    items = [_canonical(v) for v in value]
    if None in items:
        return None
    if isinstance(value, (set, frozenset)):
        return f"set[{', '.join(sorted(items))}]"  # type: ignore[arg-type]
    return f"{type(value).__name__}[{', '.join(items)}]"  # type: ignore[arg-type]


@cache
def _data_files() -> dict[str, str]:
    """Package data files by base name -> their text."""
    found: dict[str, str] = {}
    root = resources.files("planexe_assets")
    for folder in DATA_DIRS:
        directory = root / folder
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.is_file():
                found[entry.name] = entry.read_text(encoding="utf-8")
    return found


class _Walker:
    """Collects the parts reachable from one object; shared across steps (results are cached)."""

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Part | None, tuple[Any, ...]]] = {}

    def reach(self, roots: Iterable[Any]) -> list[Part]:
        seen: set[Any] = set()
        parts: dict[tuple[str, str], Part] = {}
        stack = list(roots)
        while stack:
            obj = stack.pop()
            key = obj if isinstance(obj, (_Named, _DataFile)) else id(obj)
            if key in seen:
                continue
            seen.add(key)
            part, children = self._describe(obj)
            if part is not None:
                parts[(part.kind, part.name)] = part
            stack.extend(children)
        return [parts[k] for k in sorted(parts)]

    def _describe(self, obj: Any) -> tuple[Part | None, tuple[Any, ...]]:
        if isinstance(obj, (_Named, _DataFile)):
            return self._compute(obj)
        # Functions and classes live as long as their modules, so their ids are stable keys.
        cached = self._parts.get(id(obj))
        if cached is None:
            cached = self._parts[id(obj)] = self._compute(obj)
        return cached

    def _compute(self, obj: Any) -> tuple[Part | None, tuple[Any, ...]]:
        if isinstance(obj, _Named):
            return obj.part, ()
        if isinstance(obj, _DataFile):
            text = _data_files()[obj.name]
            return Part("data file", obj.name, _sha(text)), tuple(
                _DataFile(n) for n in _data_file_names(text) if n != obj.name
            )
        if isinstance(obj, (types.FunctionType, types.MethodType)):
            fn = obj.__func__ if isinstance(obj, types.MethodType) else obj
            source = _source(fn)
            if (
                not _ours(fn) or source is None
            ):  # e.g. dataclass-generated methods: the class source covers them
                return None, ()
            return Part("function", f"{fn.__module__}.{fn.__qualname__}", _sha(source)), tuple(
                self._function_children(fn)
            )
        if isinstance(obj, type):
            return self._class(obj)
        return None, ()

    def _function_children(self, fn: types.FunctionType) -> Iterable[Any]:
        """What a function reaches: the globals and data files its code names, and our functions and
        classes held by its closure cells and default values."""
        namespace = fn.__globals__
        for code in _code_objects(fn.__code__):
            for name in code.co_names:
                if name in namespace:
                    yield from self._global(fn.__module__, name, namespace[name])
            for const in code.co_consts:
                if isinstance(const, str) and const in _data_files():
                    yield _DataFile(const)
        for value in (*_closure_values(fn), *(fn.__defaults__ or ()), *(fn.__kwdefaults__ or {}).values()):
            if isinstance(value, (types.FunctionType, type)) and _ours(value):
                yield value

    def _global(self, module: str, name: str, value: Any) -> Iterable[Any]:
        if name.startswith("__") and name.endswith("__"):  # __name__, __file__: not content
            return
        if isinstance(value, types.ModuleType):
            if value.__name__.startswith(STEPS_PACKAGE):
                yield _Named(Part("module", value.__name__, _sha(_source(value) or value.__name__)))
            return
        wrapped = getattr(value, "__wrapped__", None)  # functools.cache / lru_cache / wraps
        if isinstance(wrapped, types.FunctionType) and not isinstance(value, types.FunctionType):
            value = wrapped
        if isinstance(value, (types.FunctionType, type)):
            if _ours(value):
                yield value
            return
        yield from _constant_parts(module, name, value)

    def _class(self, cls: type) -> tuple[Part | None, tuple[Any, ...]]:
        if not _ours(cls) or issubclass(cls, BaseException):
            return None, ()
        name = f"{cls.__module__}.{cls.__qualname__}"
        children: list[Any] = _class_functions(cls)
        schema = _pydantic_schema(cls)
        if schema is not None:
            children.extend(_annotation_classes(cls))
            return Part("response model", name, _sha(schema + "\0" + (_source(cls) or ""))), tuple(children)
        if issubclass(cls, enum.Enum):
            members = ", ".join(f"{m.name}={m.value!r}" for m in cls)
            return Part("enum", name, _sha(members + "\0" + (_source(cls) or ""))), tuple(children)
        if dataclasses.is_dataclass(cls):
            children.extend(_annotation_classes(cls))
        return Part("class", name, _sha(_source(cls) or name)), tuple(children)


def _closure_values(fn: types.FunctionType) -> list[Any]:
    """The values of a function's closure cells (an empty cell has none)."""
    values = []
    for cell in fn.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:  # an empty cell
            continue
    return values


def _constant_parts(module: str, name: str, value: Any) -> Iterable[Any]:
    """A module-level constant: its part (a prompt when its name says so), then the functions,
    classes and data files it holds (dispatch tables, template names)."""
    text = _canonical(value)
    if text is None:
        return
    is_prompt = isinstance(value, (str, Mapping)) and "PROMPT" in name.upper()
    yield _Named(Part("prompt" if is_prompt else "constant", f"{module}.{name}", _sha(text)))
    # Constants may hold functions or classes (dispatch tables): follow them too.
    for item in _flatten(value):
        if isinstance(item, (types.FunctionType, type)) and _ours(item):
            yield item
        elif isinstance(item, str) and item in _data_files():
            yield _DataFile(item)


def _class_functions(cls: type) -> list[Any]:
    """The functions a class defines: methods, static and class methods, property accessors."""
    found: list[Any] = []
    for attr in vars(cls).values():
        if isinstance(attr, (staticmethod, classmethod)):
            attr = attr.__func__
        if isinstance(attr, property):
            found.extend(f for f in (attr.fget, attr.fset) if f is not None)
        elif isinstance(attr, types.FunctionType):
            found.append(attr)
    return found


@dataclasses.dataclass(frozen=True)
class _Named:
    part: Part


@dataclasses.dataclass(frozen=True)
class _DataFile:
    name: str


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _flatten(k)
            yield from _flatten(v)
    elif isinstance(value, (tuple, list, set, frozenset)):
        for v in value:
            yield from _flatten(v)
    else:
        yield value


def _data_file_names(text: str) -> list[str]:
    return [name for name in _data_files() if name in text]


def _pydantic_schema(cls: type) -> str | None:
    if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
        return None
    try:
        return json.dumps(cls.model_json_schema(), sort_keys=True)
    except Exception:  # noqa: BLE001 - a model that cannot produce a schema still has its source
        return ""


def _annotation_classes(cls: type) -> Iterable[type]:
    """Our classes named in the field annotations of a pydantic model or dataclass (nested models)."""
    annotations: list[Any] = []
    fields = getattr(cls, "model_fields", None)
    if isinstance(fields, Mapping):
        annotations.extend(f.annotation for f in fields.values())
    elif dataclasses.is_dataclass(cls):
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - unresolvable forward references: the source still counts
            hints = {}
        annotations.extend(hints.values())
    stack = list(annotations)
    while stack:
        item = stack.pop()
        if isinstance(item, type) and _ours(item) and item is not cls:
            yield item
        stack.extend(get_args(item))


# -- per step -------------------------------------------------------------------------------------------
def _table_row(step: Step) -> Part:
    row = {
        "name": step.name,
        "requires": dict(step.requires),
        "outputs": dict(step.outputs),
        "side_outputs": list(step.side_outputs),
        "llm_calls": step.llm_calls,
    }
    return Part("step table row", step.name, _sha(json.dumps(row, sort_keys=True)))


@dataclasses.dataclass(frozen=True)
class StepVersion:
    fingerprint: Fingerprint  # the step's own code
    code_version: str  # its own code and its upstream steps' code versions


def step_versions(step_names: Iterable[str]) -> dict[str, StepVersion]:
    """Versions of the given steps, listed in table order with their upstream steps among them.

    The code is read afresh on every call (nothing is cached between calls), so a changed prompt
    shows in the next call."""
    walker = _Walker()
    versions: dict[str, StepVersion] = {}
    for name in step_names:
        step = STEP_BY_NAME[name]
        parts = walker.reach([step_function(name)])
        fp = Fingerprint(step=name, parts=(*parts, _table_row(step)))
        missing = [dep for dep in step.deps if dep not in versions]
        if missing:
            raise ValueError(f"step {name} is listed before its upstream steps {missing}")
        upstream = [f"{dep}={versions[dep].code_version}" for dep in sorted(step.deps)]
        code_version = _sha("\n".join([fp.digest, *upstream]))[:CODE_VERSION_LENGTH]
        versions[name] = StepVersion(fingerprint=fp, code_version=code_version)
    return versions
