"""The bottom layer: the contract between a step and whichever orchestrator runs it, and the step table."""
