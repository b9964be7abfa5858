"""Rich console output: the final metrics table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from sbrun.loggers.base import Logger


def metrics_table(metrics: dict, title: str = "final metrics") -> Table:
    """A two-column rich table of ``name -> value``."""
    table = Table(title=title)
    table.add_column("metric", style="cyan")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    return table


class ConsoleLogger(Logger):
    """Prints the final summary as a table (the progress bar lives in the trainer)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)

    def log_summary(self, summary):
        self.console.print(metrics_table(summary))
