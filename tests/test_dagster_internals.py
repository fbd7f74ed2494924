"""Dagster's private names, all imported in ``planexe_assets/dagster_defs/_internals.py``, still exist.

Only the exact pin protects them. On an upgrade this is the one test that says what changed: every
private name is imported here one by one (reading the module's source, so a missing name does not
stop the others from being checked), and the failure names each missing one and the versions the
module was written for.
"""

import ast
import importlib
import re
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INTERNALS = ROOT / "planexe_assets" / "dagster_defs" / "_internals.py"


def _private_imports() -> list[tuple[str, str]]:
    """(module, name) of every ``from X import name`` in the internals module."""
    tree = ast.parse(INTERNALS.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module
        for alias in node.names
    ]


def _written_for() -> dict[str, str]:
    tree = ast.parse(INTERNALS.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "WRITTEN_FOR" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{INTERNALS.name} has no WRITTEN_FOR")


def test_every_private_dagster_name_still_exists():
    written_for = _written_for()
    installed = {package: version(package) for package in written_for}
    missing = []
    for module, name in _private_imports():
        try:
            getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{module}.{name} ({type(exc).__name__}: {exc})")
    changed = {p: (written_for[p], installed[p]) for p in written_for if written_for[p] != installed[p]}
    assert not missing and not changed, (
        "Dagster internals: planexe_assets/dagster_defs/_internals.py was written for "
        + ", ".join(f"{p} {v}" for p, v in written_for.items())
        + "; installed: "
        + ", ".join(f"{p} {v}" for p, v in installed.items())
        + ".\nMissing: "
        + ("; ".join(missing) or "none")
        + "\nCheck each private name (and how the executor, the pooled storage and refresh use it) against "
        "the new release, then update WRITTEN_FOR and the pins in pyproject.toml and requirements.lock."
    )
    assert len(_private_imports()) > 40


def test_written_for_matches_the_pins():
    """The versions the module names are the ones pyproject.toml and requirements.lock pin."""
    written_for = _written_for()
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    for package, pinned in written_for.items():
        assert re.search(rf"^{re.escape(package)}=={re.escape(pinned)}$", lock, re.M), package
        if package != "dagster-shared":  # comes with dagster; pyproject pins the family through dagster
            assert f'"{package}=={pinned}"' in pyproject, package
