"""The layers of the code import in one direction only, with no cycles (ARCHITECTURE.md).

The contracts live in pyproject.toml (``[tool.importlinter]``); import-linter checks them on the
import graph of the packages, function-level imports included, so an import moved into a function
to dodge a cycle is still seen. Dagster's private modules are imported by one module only.
"""

import ast
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("planexe_assets", "resources", "legacy_luigi", "migrations")
INTERNALS = ROOT / "planexe_assets" / "dagster_defs" / "_internals.py"


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``cwd`` (the contracts of its pyproject.toml)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
            "--no-cache",
            "--no-logo",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "7 kept, 0 broken" in result.stdout, result.stdout


def test_the_contracts_catch_an_upward_import_and_a_cycle(tmp_path):
    """A copy of the tree where the step table imports the Dagster adapter (upward) and the runner
    imports the versions module that imports it back (a cycle, hidden in a function): both are
    reported, so the contracts are not vacuous."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    table = tmp_path / "planexe_assets" / "core" / "step_table.py"
    table.write_text(
        table.read_text()
        + "\n\ndef _upward():\n    import planexe_assets.dagster_defs.assets  # noqa: F401\n"
    )
    versions = tmp_path / "planexe_assets" / "lifecycle" / "versions.py"
    versions.write_text(
        versions.read_text() + "\n\ndef _back():\n    import planexe_assets.lifecycle.runner  # noqa: F401\n"
    )
    runner = tmp_path / "planexe_assets" / "lifecycle" / "runner.py"
    runner.write_text(runner.read_text() + "\nimport planexe_assets.lifecycle.versions  # noqa: E402,F401\n")

    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "One-way layers: core < steps < resources < lifecycle < adapters < cli BROKEN" in result.stdout
    assert "planexe_assets.core.step_table -> planexe_assets.dagster_defs.assets" in result.stdout
    assert "No import cycles between modules BROKEN" in result.stdout
    assert "No cycles are allowed in planexe_assets.lifecycle" in result.stdout


def _private_dagster_imports(path: Path) -> list[str]:
    """Imports of Dagster's private modules in one file: ``dagster._*``, ``dagster_shared``, a
    ``dagster_postgres`` submodule, or an underscore name from ``dagster``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            if node.module == "dagster":
                modules += [f"dagster.{alias.name}" for alias in node.names if alias.name.startswith("_")]
        for module in modules:
            parts = module.split(".")
            private = (
                (parts[0] == "dagster" and len(parts) > 1 and parts[1].startswith("_"))
                or parts[0] == "dagster_shared"
                or (parts[0] == "dagster_postgres" and len(parts) > 1)
            )
            if private:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    return found


def test_only_the_internals_module_imports_dagster_private_names():
    sources = [p for name in (*PACKAGES, "bench") for p in sorted((ROOT / name).rglob("*.py"))]
    assert INTERNALS in sources
    offenders = [hit for p in sources if p != INTERNALS for hit in _private_dagster_imports(p)]
    assert offenders == [], (
        "import Dagster's private names from planexe_assets.dagster_defs._internals (the one module "
        "tests/test_dagster_internals.py checks on an upgrade):\n" + "\n".join(offenders)
    )
    assert len(_private_dagster_imports(INTERNALS)) > 20


def test_tests_name_step_files_through_the_step_table():
    """Tests name a step's files with ``step_file(step, key)``, so a step's file names live in one
    place; only the parity test, which checks the table against the reference, spells them out."""
    from planexe_assets.core import STEPS, matches_template

    names = [n for s in STEPS for n in (*s.filenames, *s.side_outputs)]
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "fixtures" in path.parts or path.name == "test_parity.py":
            continue
        with path.open(encoding="utf-8") as handle:
            for token in tokenize.generate_tokens(handle.readline):
                if token.type != tokenize.STRING or token.string[:1] not in "\"'":
                    continue
                value = ast.literal_eval(token.string)
                if isinstance(value, str) and any(value == n or matches_template(value, n) for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}:{token.start[0]}: {value}")
    assert offenders == [], "use step_file(step, key[, index]) instead of:\n" + "\n".join(offenders)
