"""The plan lifecycle, for every orchestrator: running a step, creating plans, keeping the plan row true."""
