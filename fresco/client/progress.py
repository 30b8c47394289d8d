"""The live progress of a batch on stderr (rich): a bar with done of total, failed,
running, images per second and the ETA, all as the API reports them
(``GET /v1/batches/{id}``: counts, ``progress.images_per_s``, ``progress.eta_s``).

On a terminal the bar redraws in place; elsewhere (a log, a pipe) rich draws it once when
it stops, and lines printed through :meth:`BatchProgress.note` go out as they come.
"""
from __future__ import annotations

from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
)

from fresco.client.resources import Batch


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class BatchProgress:
    def __init__(self, batch_id: str, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.last: Batch | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(bar_width=24), MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"), TextColumn("running {task.fields[running]}"),
            TextColumn("{task.fields[rate]} images/s"), TextColumn("ETA {task.fields[eta]}"),
            console=self.console, refresh_per_second=4)
        self._task = self._progress.add_task(batch_id[:8], total=None, failed=0, running=0, rate="-", eta="-")

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, batch: Batch) -> None:
        self.last = batch
        rate = batch.progress.images_per_s
        self._progress.update(self._task, total=batch.total, completed=batch.progress.done,
                              description=f"{batch.id[:8]} {batch.status}", failed=batch.counts.failed,
                              running=batch.counts.running, rate="-" if rate is None else f"{rate:.2f}",
                              eta=_eta(batch.progress.eta_s))

    def note(self, text: str) -> None:
        """A line above the bar (a failed job, a saved folder)."""
        self._progress.console.print(text, highlight=False, markup=False, soft_wrap=True)
