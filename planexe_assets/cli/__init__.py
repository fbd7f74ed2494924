"""The ``planexe`` command line (``planexe_assets.cli:app`` is the console script)."""

from planexe_assets.cli.app import app, main

__all__ = ["app", "main"]
