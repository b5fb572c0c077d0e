"""Numbers for people: the one formatter of sizes, hash rates, durations,
timestamps and the global metric's name, used by the explorer's pages, its
index and the CLI alike (pure: it imports nothing of ours).

Sizes and rates take decimal (SI) prefixes: 1 kB = 1000 B, 1 MH/s = 10^6 H/s,
as the CLI always printed and the JSON documents' raw numbers read. A value
that is not a number (None, a string, a bool) shows as :data:`MISSING`.
"""
from __future__ import annotations

import math
import time
from typing import Any

MISSING = "-"


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def decimal(n: Any, unit: str, digits: int = 1) -> str:
    """``n`` with a decimal prefix: 812 B, 45.3 kB, 12.1 MB; ``digits`` decimals
    from M up (k always one). A value that would round up to 1000 of a prefix
    takes the next one (999,960 B is 1.0 MB, not 1000.0 kB)."""
    if not is_number(n):
        return MISSING
    if not math.isfinite(n):
        return f"{n} {unit}"
    steps = (("", 1.0, 0), ("k", 1e3, 1), ("M", 1e6, digits), ("G", 1e9, digits))
    prefix, size, places = steps[0]
    for (_, below, below_places), step in zip(steps, steps[1:]):
        if abs(n) >= step[1] - 0.5 * below * 10 ** -below_places:
            prefix, size, places = step
    return f"{n / size:.{places}f} {prefix}{unit}"


def byte_size(n: Any) -> str:
    """Bytes: 812 B, 45.3 kB, 12.1 MB (powers of 1000)."""
    return decimal(n, "B")


def hash_rate(h: Any) -> str:
    """Hashes per second: 812 H/s, 748.6 kH/s, 1.44 MH/s."""
    return decimal(h, "H/s", 2)


def duration(s: Any) -> str:
    """A duration in seconds: 850 us, 12.3 ms, 4.20 s, 3 min 12 s, 2 h 05 min."""
    if not is_number(s) or not math.isfinite(s):
        return MISSING if not is_number(s) else str(s)
    if s < 0:
        return "-" + duration(-s)
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def timestamp(ms: Any) -> str:
    """A block or tx timestamp (ms since the epoch) in local time: 2026-12-01 18:21:00."""
    if not is_number(ms) or not math.isfinite(ms):
        return MISSING
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def clock(s: float | None = None) -> str:
    """A time of day in local time, ``s`` seconds since the epoch (default: now): 18:21:00."""
    return time.strftime("%H:%M:%S", time.localtime(s))


def age(ms: Any, now_ms: float | None = None) -> str:
    """How long before ``now_ms`` (default: the clock) a timestamp in ms was:
    "12 s ago", "3 min ago", "2 h ago", "3 days ago"; "in 4.20 s" if after it."""
    if not is_number(ms) or not math.isfinite(ms):
        return MISSING
    ago = ((time.time() * 1000 if now_ms is None else now_ms) - ms) / 1000
    if ago < 0:
        return f"in {duration(-ago)}"
    for below, size, unit in ((60, 1, "s"), (3600, 60, "min"), (2 * 86400, 3600, "h")):
        if ago < below:
            return f"{ago // size:.0f} {unit} ago"
    return f"{ago // 86400:.0f} days ago"


def metric_name(task: str) -> str:
    """The global metric of a model's task: ``accuracy`` for classification, else ``rmse``."""
    return "accuracy" if task == "classification" else "rmse"
