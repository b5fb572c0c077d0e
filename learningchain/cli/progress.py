"""Progress bars of the long commands (``simulate`` rounds, ``experiment`` runs,
``verify`` blocks): tqdm on stderr, only when stderr is a terminal (and not with
``--json``), so a script or a test reads exactly the same stdout as without them.
Rows a command prints while a bar is shown go through :meth:`Progress.write`,
which clears the bar, prints the row on stdout and redraws it. tqdm is imported
only when a bar is shown (and a missing tqdm only means no bar)."""
from __future__ import annotations

import sys


def wanted(quiet: bool = False) -> bool:
    """Bars on: stderr is a terminal and the command is not asked to be quiet (--json)."""
    try:
        return not quiet and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """``with Progress("round", "sim", total=10) as bar: ... bar.write(row); bar.update()``."""

    def __init__(self, unit: str, desc: str, total: int | None = None, on: bool | None = None,
                 delay: float = 0.5):
        self.unit, self.desc, self.delay = unit, desc, delay
        self.on = wanted() if on is None else on
        self._bar = None
        if total is not None:
            self.start(total)

    def start(self, total: int | None) -> "Progress":
        """Show the bar (``total`` steps), if bars are on; a second call resets it."""
        if not self.on:
            return self
        if self._bar is not None:
            self._bar.reset(total=total)
            return self
        try:
            from tqdm import tqdm
        except ImportError:
            self.on = False
            return self
        # delay: a run shorter than that never draws a bar
        self._bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr, leave=False,
                         dynamic_ncols=True, delay=self.delay)
        return self

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def goto(self, done: int, total: int | None = None) -> None:
        """Set the bar to ``done`` of ``total`` steps (shown from the first call)."""
        if self._bar is None and self.on:
            self.start(total)
        if self._bar is not None:
            if total is not None and self._bar.total != total:
                self._bar.total = total
            self._bar.update(done - self._bar.n)

    def write(self, text: str) -> None:
        """Print a row on stdout (above the bar, when one is shown)."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stdout)
            sys.stdout.flush()
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
