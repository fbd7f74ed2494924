"""The Dagster definitions of planexe-dagster, as ``defs``: what ``workspace.yaml`` and
``-m planexe_assets.definitions`` load. They are composed in ``planexe_assets.dagster_defs.definitions``."""

from planexe_assets.dagster_defs.definitions import build_definitions, defs

__all__ = ["build_definitions", "defs"]
