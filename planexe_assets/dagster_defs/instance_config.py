"""The Dagster instance configuration files shipped in ``planexe_assets/deploy/``, and installing one
into a DAGSTER_HOME.

- ``dagster.local.yaml``: the default. SQLite storage under DAGSTER_HOME (``$PLANEXE_HOME/dagster``
  unless DAGSTER_HOME is set), the queued run coordinator, the ``llm`` concurrency pool.
  ``planexe ui``, ``planexe plan`` and ``planexe resume`` install it when the Dagster home has no
  ``dagster.yaml``.
- ``dagster.postgres.yaml``: Dagster's storage on PostgreSQL (dagster-postgres), the URL read from
  ``PLANEXE_DAGSTER_POSTGRES_URL``; same run queue and pool.

They are package data of ``planexe_assets`` (pyproject ``[tool.setuptools.package-data]``), found
through ``importlib.resources``, so a source checkout, an editable install and an installed wheel
read the same files; ``python -m planexe_assets.dagster_defs.instance_config`` prints where they are.

No Dagster import at module level: the CLI uses this before it decides to start Dagster at all.
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from resources.config import dagster_home

#: The folder of the instance configuration files inside the installed ``planexe_assets`` package.
DEPLOY_DIR: Traversable = files("planexe_assets") / "deploy"
LOCAL_CONFIG: Traversable = DEPLOY_DIR / "dagster.local.yaml"
POSTGRES_CONFIG: Traversable = DEPLOY_DIR / "dagster.postgres.yaml"
VARIANTS: dict[str, Traversable] = {"local": LOCAL_CONFIG, "postgres": POSTGRES_CONFIG}

#: The environment variable holding Dagster's PostgreSQL storage URL in the PostgreSQL variant.
DAGSTER_POSTGRES_URL_ENV = "PLANEXE_DAGSTER_POSTGRES_URL"

#: The concurrency pool of every asset that calls an LLM.
LLM_POOL = "llm"

INSTANCE_FILENAME = "dagster.yaml"


class InstanceConfigError(RuntimeError):
    """A Dagster home or instance configuration file is unusable; the message says why."""


def install_instance_config(home: Path, variant: str = "local", overwrite: bool = False) -> Path | None:
    """Copy the variant's file to ``home/dagster.yaml`` unless one is there (or ``overwrite``).

    Returns the path of the installed file, or None when a file was already there. A package without
    the file (a broken install) is an error rather than a silent fall-back to Dagster's defaults,
    which would lose the run queue and the ``llm`` pool. The copy is atomic: a half-written
    dagster.yaml would break every Dagster process.
    """
    if variant not in VARIANTS:
        raise InstanceConfigError(f"unknown instance config {variant!r}; choose one of {', '.join(VARIANTS)}")
    source = VARIANTS[variant]
    target = home / INSTANCE_FILENAME
    if target.exists() and not overwrite:
        return None
    try:
        content = source.read_bytes()
    except OSError as exc:
        raise InstanceConfigError(
            f"the package's {source.name} cannot be read ({exc.strerror or exc}); "
            "reinstall planexe-dagster (the file ships in planexe_assets/deploy/)"
        ) from None
    temp: str | None = None
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".dagster-", suffix=".yaml.tmp", dir=home)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(temp, target)
        temp = None
    except OSError as exc:
        raise InstanceConfigError(
            f"cannot install {source.name} into {home}: {exc.strerror or exc}"
        ) from None
    finally:
        if temp is not None:
            Path(temp).unlink(missing_ok=True)
    return target


def prepare_dagster_home() -> Path:
    """The Dagster home of this process, ready to use; the one place that decides it.

    ``DAGSTER_HOME`` if set, else ``$PLANEXE_HOME/dagster`` (then exported as DAGSTER_HOME so every
    Dagster call and child process agrees). Created if missing; given the packaged ``dagster.local.yaml``
    as its ``dagster.yaml`` if it has none. Dagster requires an absolute path.
    """
    configured = os.environ.get("DAGSTER_HOME")
    home = Path(configured).expanduser().resolve() if configured else dagster_home()
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InstanceConfigError(f"cannot create the Dagster home {home}: {exc.strerror or exc}") from None
    install_instance_config(home)
    return home


def show_llm_pool(home: Path) -> int | None:
    """Give the ``llm`` pool its row in the instance now, so the UI lists it (Deployment >
    Concurrency) with its limit before the first LLM step claims a slot (which is when Dagster
    would create it). Uses Dagster's own ``initialize_concurrency_limit_to_default``; a limit set
    with ``dagster instance concurrency set`` is kept. Returns the pool's slot count, or None when
    the instance has no default pool limit or no pool support."""
    from dagster import DagsterInstance  # deferred: see the module docstring

    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return None
        if LLM_POOL not in storage.get_concurrency_keys():
            if instance.global_op_concurrency_default_limit is None:
                return None
            storage.initialize_concurrency_limit_to_default(LLM_POOL)
        return storage.get_concurrency_info(LLM_POOL).slot_count


def main(argv: list[str] | None = None) -> int:
    """Print the path of each shipped instance configuration file (to copy one by hand)."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m planexe_assets.dagster_defs.instance_config (no arguments)", file=sys.stderr)
        return 2
    for variant, source in VARIANTS.items():
        print(f"{variant}\t{source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
