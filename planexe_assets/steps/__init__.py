"""Framework-free step functions, one module per stage.

A step is declared once: its row in the step table (``planexe_assets.core.step_table``: name, PlanExe
class, stage, call shape, requires, outputs by key, side files, description) and its registration
in the stage module, which gives the function and the response model(s) of each JSON output::

    @register("identify_purpose", models={"raw": PlanPurposeInfo})
    def run_identify_purpose(ctx: StepContext, inputs: StepInputs) -> StepResult: ...

``models`` maps each output key (and side-file key) whose file is JSON to a pydantic model, a layout
(``Items(Model, at="...")``, ``OneOf(...)``, ``Reader(fn)``) or a tuple of them (all must pass; see
``planexe_assets.core.outputs``). ``register`` refuses a step the table lacks, an unknown key, and a
JSON output without a model, so the asset checks, the importer and the tests can derive everything
from these two places. ``implemented_steps()`` imports every module of this package once, so adding a
stage module is enough for both orchestrators to pick its steps up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping

from planexe_assets.core import (
    STEP_BY_NAME,
    STEPS,
    OutputModels,
    OutputSpec,
    StepFunction,
    as_specs,
    matches_template,
    step_for_filename,
)

_REGISTRY: dict[str, StepFunction] = {}
# step name -> output or side-file key -> the layouts its JSON file must satisfy
_OUTPUT_MODELS: dict[str, dict[str, tuple[OutputSpec, ...]]] = {}
_NOT_STAGE_MODULES = {"common"}
_loaded = False


def register(
    name: str, *, models: Mapping[str, OutputModels] | None = None
) -> Callable[[StepFunction], StepFunction]:
    """Register the function of step ``name`` and the models of its JSON outputs (see the module doc)."""
    if name not in STEP_BY_NAME:
        raise KeyError(f"register(): {name!r} is not a step of the step table")
    step = STEP_BY_NAME[name]
    files = {**step.outputs, **step.side_files}
    declared = dict(models or {})
    unknown = sorted(set(declared) - set(files))
    if unknown:
        raise ValueError(
            f"register({name!r}): no output or side file {unknown}; the table has {sorted(files)}"
        )
    not_json = sorted(key for key in declared if not files[key].endswith(".json"))
    if not_json:
        raise ValueError(
            f"register({name!r}): models for files that are not JSON: {[files[k] for k in not_json]}"
        )
    missing = sorted(
        key for key, filename in files.items() if filename.endswith(".json") and key not in declared
    )
    if missing:
        raise ValueError(
            f"register({name!r}): JSON files without a model: {[files[k] for k in missing]}; "
            f"pass models={{{', '.join(repr(k) + ': ...' for k in missing)}}}"
        )
    specs = {key: as_specs(value) for key, value in declared.items()}

    def decorator(fn: StepFunction) -> StepFunction:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"step {name!r} registered twice")
        _REGISTRY[name] = fn
        _OUTPUT_MODELS[name] = specs
        return fn

    return decorator


def implemented_steps() -> dict[str, StepFunction]:
    """Every registered step function, keyed by asset name."""
    _load()
    return dict(_REGISTRY)


def step_function(name: str) -> StepFunction:
    steps = implemented_steps()
    try:
        return steps[name]
    except KeyError:
        raise KeyError(f"step {name!r} has no implementation yet") from None


def output_models(name: str) -> dict[str, tuple[OutputSpec, ...]]:
    """The layouts of step ``name``'s JSON outputs, by file name (per-item files by their template)."""
    _load()
    step = STEP_BY_NAME[name]
    files = {**step.outputs, **step.side_files}
    return {files[key]: specs for key, specs in _OUTPUT_MODELS.get(name, {}).items()}


def models_for(filename: str) -> tuple[OutputSpec, ...] | None:
    """The layouts ``filename`` (or a per-item template) must satisfy, a per-item file by its
    template; None when no step declares a JSON output of that name."""
    step = step_for_filename(filename) or next((s for s in STEPS if filename in s.side_outputs), None)
    if step is None:
        return None
    for name, specs in output_models(step.name).items():
        if name == filename or matches_template(filename, name):
            return specs
    return None


def _load() -> None:
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_STAGE_MODULES and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
