"""A progress line in the node's log while a sync is far behind:
``sync: 1200/5000 blocks (24 %, 800 blocks/s) from http://...``, at most one a
second, and a last line when that sync ends. A sync of a few blocks (the usual
catch-up after a missed gossip) logs nothing."""
from __future__ import annotations

import time
from typing import Callable

#: blocks behind the peer at the start of a sync before progress is logged
FAR_BEHIND = 200
#: seconds between two progress lines
EVERY_S = 1.0


class SyncProgress:
    def __init__(self, log: Callable[[str], None], url: str, target: int | None, height: int,
                 clock: Callable[[], float] = time.monotonic):
        self.log, self.url, self.clock = log, url, clock
        self.target = target if isinstance(target, int) else None
        self.start_height = height
        self.t0 = self.last = clock()
        self.active = self.target is not None and self.target - height >= FAR_BEHIND
        self.logged = False

    def update(self, height: int) -> None:
        """Our height after a page of blocks: a line if a second has passed."""
        now = self.clock()
        if not self.active or now - self.last < EVERY_S:
            return
        self.last, self.logged = now, True
        target = max(self.target or 0, height)
        rate = (height - self.start_height) / max(now - self.t0, 1e-9)
        self.log(f"sync: {height}/{target} blocks ({100 * height / max(target, 1):.0f} %, "
                 f"{rate:.0f} blocks/s) from {self.url}")

    def done(self, height: int) -> None:
        if self.logged:
            elapsed = self.clock() - self.t0
            self.log(f"sync: at height {height} after {height - self.start_height} blocks in {elapsed:.1f} s "
                     f"from {self.url}")
