"""Terminal output: notes, progress bars and tables (rich), quiet when not on a terminal."""

import contextlib
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


class UI:
    def __init__(self, stream=None):
        self.console = Console(file=stream or sys.stdout, highlight=False, soft_wrap=True)
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def note(self, text):
        self.console.print(text)

    def error(self, text):
        self.err.print(f"[bold red]error:[/] {text}")

    @contextlib.contextmanager
    def progress(self, label, total):
        if not self.console.is_terminal:
            yield lambda n=1: None
            return
        with Progress(TextColumn(f"{label:<6}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, transient=False) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n=1: bar.advance(task, n)

    def table(self, title, columns, rows):
        t = Table(title=title, title_justify="left")
        for c in columns:
            t.add_column(c)
        for r in rows:
            t.add_row(*[str(x) if x is not None else "" for x in r])
        self.console.print(t)
