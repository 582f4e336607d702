"""Live task progress for the CLI: a Rich spinner on a terminal, plain lines otherwise.

Progress always goes to stderr, so ``--json`` output on stdout stays machine-readable and a
redirected run (``imagegate generate … > out.json``) still shows what is happening.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.status import Status

from imagegate.waiting import Progress


class ProgressReporter:
    """Receives ``Progress`` events; a context manager so the spinner is always cleaned up."""

    def __init__(self, console: Console, *, label: str = "") -> None:
        self.console = console
        self.label = label
        self.live = console.is_terminal
        self._status: Status | None = None
        self._last: tuple[str, str] | None = None

    def __enter__(self) -> ProgressReporter:
        if self.live:
            self._status = self.console.status(f"submitting {self.label}…".strip())
            self._status.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __call__(self, event: Progress) -> None:
        stage = event.stage if event.stage in ("downloading", "done") else event.status.value
        if self._status is not None:
            self._status.update(
                f"[bold]{stage}[/bold]  {event.elapsed:5.1f}s  [dim]{event.task_id}[/dim]"
                + (f"  [dim]{self.label}[/dim]" if self.label else "")
            )
            return
        key = (event.task_id, stage)
        if key != self._last:  # one line per change, not per poll
            self._last = key
            self.console.print(
                f"{event.task_id} {stage} ({event.elapsed:.1f}s)", highlight=False, soft_wrap=True
            )
