"""A live Rich view of one plan's progress, read from the database while a run goes on."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from planexe_assets.runner import pipeline_steps, stored_steps


class ProgressView:
    def __init__(self, db, plan_id: str, console: Console, refresh_seconds: float = 0.5, rows: int = 12):
        self.db = db
        self.plan_id = plan_id
        self.console = console
        self.refresh_seconds = refresh_seconds
        self.rows = rows
        self.steps = pipeline_steps()

    def follow(self, worker: threading.Thread) -> None:
        with Live(self.safe_render(), console=self.console, refresh_per_second=4, transient=False) as live:
            while worker.is_alive():
                worker.join(self.refresh_seconds)
                live.update(self.safe_render())
            live.update(self.safe_render())

    def safe_render(self):
        """The view, or a line saying the database cannot be read (the run decides what happens)."""
        from resources.database import DatabaseUnavailable

        try:
            return self.render()
        except DatabaseUnavailable as exc:
            return Text(f"plan {self.plan_id}: {exc} ({time.strftime('%H:%M:%S')})", style="red")

    def render(self):
        plan = self.db.get_plan(self.plan_id)
        usage = self.db.usage_by_stage(self.plan_id)
        done = stored_steps(self.db, self.plan_id, self.steps)
        done_names = {s.name for s in done}
        table = Table("asset", "state", "LLM calls", "tokens in", "tokens out", expand=False)
        shown = [s for s in self.steps if s.name in usage or s.name in done_names]
        for s in shown[-self.rows :]:
            u = usage.get(s.name, {})
            state = "done" if s.name in done_names else ("failed" if u.get("failed") and not u.get("completed") else "running")
            style = {"done": "green", "running": "yellow", "failed": "red"}[state]
            table.add_row(
                s.name,
                Text(state, style=style),
                str(u.get("completed", 0)) + (f" (+{u['failed']} failed)" if u.get("failed") else ""),
                str(u.get("input_tokens", 0)),
                str(u.get("output_tokens", 0)),
            )
        total_calls = sum(u["completed"] for u in usage.values())
        total_in = sum(u["input_tokens"] for u in usage.values())
        total_out = sum(u["output_tokens"] for u in usage.values())
        status = plan.status if plan else "?"
        header = Text(
            f"plan {self.plan_id}: {status}, {len(done)}/{len(self.steps)} assets, "
            f"{total_calls} LLM calls, {total_in}+{total_out} tokens, {time.strftime('%H:%M:%S')}"
        )
        bar = ProgressBar(total=max(1, len(self.steps)), completed=len(done), width=60)
        return Group(header, bar, Text(""), table, Text(""))
