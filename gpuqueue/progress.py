"""A progress bar for long submits and redrives: rich's, when the `cli` extra is installed and
stderr is a terminal; otherwise nothing (the client and the CLI work without rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress(
    total: int | None, description: str, enabled: bool = True
) -> Iterator[Callable[..., None]]:
    """Yields `update(advance=0, total=None, completed=None)`."""
    try:
        from rich.progress import Progress
    except ImportError:  # pragma: no cover - exercised where the cli extra is absent
        Progress = None  # type: ignore[assignment,misc]
    if Progress is None or not enabled or not sys.stderr.isatty():
        yield lambda **_: None
        return
    from rich.console import Console

    # stdout left alone: rich redirects it while live by default, and a report printed inside
    # the block (`submit --json > report.json` failing part-way) went to the terminal instead
    with Progress(
        console=Console(stderr=True), transient=False, redirect_stdout=False,
        redirect_stderr=False,
    ) as bar:
        task = bar.add_task(description, total=total)

        def update(
            advance: int = 0, total: int | None = None, completed: int | None = None
        ) -> None:
            bar.update(task, advance=advance, total=total, completed=completed)

        yield update
