"""Framework-free step functions, one module per stage.

Each module registers its steps with ``@register("<asset name>")``. ``implemented_steps()`` imports
every module in this package once and returns the registry, so adding a stage module is enough for
both orchestrators to pick its steps up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from planexe_assets.core.contract import StepFunction
from planexe_assets.core.step_table import STEP_BY_NAME

_REGISTRY: dict[str, StepFunction] = {}
_NOT_STAGE_MODULES = {"base", "common"}
_loaded = False


def register(name: str) -> Callable[[StepFunction], StepFunction]:
    if name not in STEP_BY_NAME:
        raise KeyError(f"register(): {name!r} is not a step of the step table")

    def decorator(fn: StepFunction) -> StepFunction:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"step {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn

    return decorator


def implemented_steps() -> dict[str, StepFunction]:
    """Every registered step function, keyed by asset name."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _NOT_STAGE_MODULES and not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return dict(_REGISTRY)


def step_function(name: str) -> StepFunction:
    steps = implemented_steps()
    try:
        return steps[name]
    except KeyError:
        raise KeyError(f"step {name!r} has no implementation yet") from None
