"""``planexe ui``: the Dagster UI and daemon (``dagster dev``) for this PLANEXE_HOME.

The command line and environment are built here (testable without starting anything); the CLI
runs them. The webserver listens on 127.0.0.1 only: the UI can launch runs that spend LLM credit,
so exposing it is a deliberate act (``--host``), never a default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from planexe_assets.instance_config import prepare_dagster_home, show_llm_pool
from resources.config import planexe_home

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKSPACE = REPO_ROOT / "workspace.yaml"
DEFINITIONS_MODULE = "planexe_assets.definitions"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


class UIConfigError(ValueError):
    """The UI cannot be started with these settings; the message says why."""


@dataclass(frozen=True)
class DevCommand:
    argv: list[str]
    env: dict[str, str]
    dagster_home: Path
    url: str


def dagster_dev_command(
    port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, workspace: str | os.PathLike | None = None
) -> DevCommand:
    """``dagster dev -w workspace.yaml -h HOST -p PORT`` with DAGSTER_HOME and PLANEXE_HOME made absolute.

    The Dagster home is prepared (created, local ``dagster.yaml`` installed if absent) exactly as the
    CLI's in-process runs prepare it, so plans run from the CLI show up in the UI, and the ``llm``
    pool is registered so the UI's Concurrency page lists it from the start.
    """
    if not 1 <= port <= 65535:
        raise UIConfigError(f"port {port} is not a TCP port (1-65535)")
    home = prepare_dagster_home()
    show_llm_pool(home)
    env = dict(os.environ)
    env["DAGSTER_HOME"] = str(home)
    # The code server and run workers resolve the default database and run directories from
    # PLANEXE_HOME; pin it so they agree with this process whatever their working directory.
    env["PLANEXE_HOME"] = str(planexe_home())
    # The code server, daemon and run workers import this same copy of the code (dagster.yaml may
    # name a storage class in it), installed or not.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "dagster", "dev", "-h", host, "-p", str(port)]
    if workspace is not None:
        path = Path(workspace).expanduser().resolve()
        if not path.is_file():
            raise UIConfigError(f"workspace file {path} does not exist")
        argv += ["-w", str(path)]
    elif DEFAULT_WORKSPACE.is_file():
        argv += ["-w", str(DEFAULT_WORKSPACE)]
    else:  # an installed wheel has no workspace.yaml: load the definitions module directly
        argv += ["-m", DEFINITIONS_MODULE]
    shown_host = f"[{host}]" if ":" in host else host
    return DevCommand(argv=argv, env=env, dagster_home=home, url=f"http://{shown_host}:{port}")
