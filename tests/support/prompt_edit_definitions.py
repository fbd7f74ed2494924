"""The project's definitions, as a code location that a test can "edit" and reload.

When ``$PLANEXE_HOME/edited_purpose_prompt.txt`` exists, its text replaces the system prompt of the
``identify_purpose`` step before the definitions are built; otherwise this is exactly
``planexe_assets.definitions``. ``tests/test_ui_live.py`` serves it with ``dagster dev``, writes the
file and reloads the code location, which is what a developer does after editing a prompt.
"""

import os
from pathlib import Path

from planexe_assets.steps import purpose

EDITED_PROMPT_FILE = "edited_purpose_prompt.txt"

_edited = Path(os.environ.get("PLANEXE_HOME", ".planexe")) / EDITED_PROMPT_FILE
if _edited.is_file():
    purpose.PURPOSE_SYSTEM_PROMPT = _edited.read_text(encoding="utf-8")

from planexe_assets.definitions import build_definitions  # noqa: E402 - after the edit, on purpose

defs = build_definitions()
