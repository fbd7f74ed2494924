"""No function of the project's code is more complex than cyclomatic 15 (radon's measure).

A function above it (the LLM config parser was 69, the executor's plan iterator 33, the benchmark's
side-by-side plan section 38) is split into named helpers: the test lists every offender with its
module, line and complexity. There are no exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from radon.complexity import cc_visit
from radon.visitors import Class, Function

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("planexe_assets", "resources", "legacy_luigi", "bench", "migrations")
MAX_COMPLEXITY = 15


def _walk(blocks: Iterable[Function | Class]) -> Iterator[Function]:
    for block in blocks:
        if isinstance(block, Class):
            yield from _walk(block.methods)
            yield from _walk(block.inner_classes)
        else:
            yield block
            yield from _walk(block.closures)


def _functions(blocks: Iterable[Function | Class]) -> list[Function]:
    """Every function, method and nested function, once (radon lists a class's methods both inside
    the class and beside it; closures are measured on their own)."""
    unique = {(fn.lineno, fn.fullname): fn for fn in _walk(blocks)}
    return list(unique.values())


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _over_limit(code: str, where: str = "<code>") -> dict[str, str]:
    """``where:function`` -> ``where:line function (complexity)`` of each function above the limit."""
    return {
        f"{where}:{fn.fullname}": f"{where}:{fn.lineno} {fn.fullname} ({fn.complexity})"
        for fn in _functions(cc_visit(code))
        if fn.complexity > MAX_COMPLEXITY
    }


def offenders() -> dict[str, str]:
    """Every function of the project's packages above the limit (see ``_over_limit``)."""
    found = {}
    for path in _sources():
        found.update(_over_limit(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()))
    return found


def test_the_sources_are_found():
    names = {path.relative_to(ROOT).parts[0] for path in _sources()}
    assert names == set(PACKAGES)


def test_no_function_is_above_the_complexity_limit():
    found = offenders()
    if found:
        pytest.fail(
            f"{len(found)} function(s) above cyclomatic complexity {MAX_COMPLEXITY} (radon); split each "
            "into named helpers:\n  " + "\n  ".join(found.values())
        )


def test_the_measure_sees_methods_and_nested_functions():
    """A nested function is measured on its own, so complexity cannot hide in a closure."""
    branches = "".join(f"            if x == {i}:\n                return {i}\n" for i in range(16))
    code = (
        "class C:\n"
        "    def m(self, x):\n"
        "        def inner(x):\n"
        f"{branches}"
        "            return -1\n"
        "        return inner(x)\n"
    )
    found = {fn.fullname: fn.complexity for fn in _functions(cc_visit(code))}
    assert found == {"C.m": 1, "inner": 17}
    assert [line.split(" ", 1)[1] for line in _over_limit(code).values()] == ["inner (17)"]
