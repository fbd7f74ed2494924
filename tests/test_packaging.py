"""The installed package carries what the source tree has: a wheel built from this tree, installed into
a fresh virtualenv, finds its Dagster instance configuration (package data in planexe_assets/deploy/)
and gives a Dagster home the run queue and the ``llm`` pool, not Dagster's defaults.

The wheel is built from a copy of the tree (the build writes ``build/`` and ``*.egg-info`` next to
the sources). The fresh virtualenv gets only the wheel (``--no-deps``); its third-party libraries
(Dagster, SQLAlchemy, ...) come from this test's virtualenv through a path file, which adds that
site-packages directory to ``sys.path`` without running its path files, so the editable install of
the source tree stays out of sight. The check runs with the working directory outside the tree.
"""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SOURCES = ["pyproject.toml", "README.md", "planexe_assets", "resources", "legacy_luigi", "migrations"]

CHECK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import planexe_assets
    from dagster import DagsterInstance
    from planexe_assets.dagster_defs.instance_config import (
        LOCAL_CONFIG, POSTGRES_CONFIG, install_instance_config, show_llm_pool,
    )

    home = Path(sys.argv[1])
    installed = install_instance_config(home)
    with DagsterInstance.from_config(str(home)) as instance:
        pools = instance.get_concurrency_config().pool_config
        coordinator = type(instance.run_coordinator).__name__
        storage = type(instance.run_storage).__module__ + "." + type(instance.run_storage).__name__
    print(json.dumps({
        "package": planexe_assets.__file__,
        "local_config": str(LOCAL_CONFIG),
        "postgres_config_is_file": POSTGRES_CONFIG.is_file(),
        "installed": str(installed),
        "default_pool_limit": pools.default_pool_limit,
        "llm_pool_slots": show_llm_pool(home),
        "run_coordinator": coordinator,
        "run_storage": storage,
    }))
    """
)


def _copy_sources(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=ignore)
        else:
            shutil.copy2(source, target / name)


def test_installed_wheel_ships_the_instance_config_with_the_llm_pool(tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    _copy_sources(tree)
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(tree)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = wheels.glob("planexe_dagster-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    venv_site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (venv_site / "_planexe_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME", "VIRTUAL_ENV")}
    checked = subprocess.run(
        [str(python), "-c", CHECK, str(tmp_path / "dagster_home")],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    facts = json.loads(checked.stdout.strip().splitlines()[-1])

    assert Path(facts["package"]).is_relative_to(venv_site), "planexe_assets must come from the wheel"
    assert Path(facts["local_config"]) == venv_site / "planexe_assets" / "deploy" / "dagster.local.yaml"
    assert facts["postgres_config_is_file"]
    assert facts["installed"] == str(tmp_path / "dagster_home" / "dagster.yaml")
    assert facts["default_pool_limit"] == 8
    assert facts["llm_pool_slots"] == 8
    assert facts["run_coordinator"] == "QueuedRunCoordinator"
    assert facts["run_storage"].startswith("planexe_assets.dagster_defs.instance_storage.")
