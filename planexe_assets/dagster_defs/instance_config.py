"""The Dagster instance configuration files in ``deploy/`` and installing one into a DAGSTER_HOME.

- ``deploy/dagster.local.yaml``: the default. SQLite storage under DAGSTER_HOME
  (``$PLANEXE_HOME/dagster`` unless DAGSTER_HOME is set), the queued run coordinator, the ``llm``
  concurrency pool. ``planexe ui``, ``planexe plan`` and ``planexe resume`` install it when the
  Dagster home has no ``dagster.yaml``.
- ``deploy/dagster.postgres.yaml``: Dagster's storage on PostgreSQL (dagster-postgres), the URL read
  from ``PLANEXE_DAGSTER_POSTGRES_URL``; same run queue and pool.

No Dagster import at module level: the CLI uses this before it decides to start Dagster at all.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from resources.config import dagster_home

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"
LOCAL_CONFIG = DEPLOY_DIR / "dagster.local.yaml"
POSTGRES_CONFIG = DEPLOY_DIR / "dagster.postgres.yaml"
VARIANTS = {"local": LOCAL_CONFIG, "postgres": POSTGRES_CONFIG}

#: The environment variable holding Dagster's PostgreSQL storage URL in the PostgreSQL variant.
DAGSTER_POSTGRES_URL_ENV = "PLANEXE_DAGSTER_POSTGRES_URL"

#: The concurrency pool of every asset that calls an LLM.
LLM_POOL = "llm"

INSTANCE_FILENAME = "dagster.yaml"


class InstanceConfigError(RuntimeError):
    """A Dagster home or instance configuration file is unusable; the message says why."""


def install_instance_config(home: Path, variant: str = "local", overwrite: bool = False) -> Path | None:
    """Copy the variant's file to ``home/dagster.yaml`` unless one is there (or ``overwrite``).

    Returns the path of the installed file, or None when nothing was copied (a file was already
    there, or this is an installed wheel without the ``deploy/`` directory: Dagster's defaults apply).
    The copy is atomic: a half-written dagster.yaml would break every Dagster process.
    """
    if variant not in VARIANTS:
        raise InstanceConfigError(f"unknown instance config {variant!r}; choose one of {', '.join(VARIANTS)}")
    source = VARIANTS[variant]
    target = home / INSTANCE_FILENAME
    if target.exists() and not overwrite:
        return None
    if not source.is_file():
        if variant == "local":
            return None
        raise InstanceConfigError(f"{source} is missing; it ships with the source tree (deploy/)")
    temp: str | None = None
    try:
        home.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=".dagster-", suffix=".yaml.tmp", dir=home)
        os.close(fd)
        shutil.copyfile(source, temp)
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
    Dagster call and child process agrees). Created if missing; given ``deploy/dagster.local.yaml``
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
