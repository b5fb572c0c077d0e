"""Debian's Chromium, driven headless by Playwright, and a small live network of
real ``node.py run`` processes for it to look at: shared by the browser tests
(tests/system/test_browser.py) and the explorer screenshots
(docs/figures/screenshots.py).

Only ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``; .ci/run
installs it) is ever launched: Playwright's own browser builds are never
downloaded (no ``playwright install``). The flags keep Chromium off the network
(no component updates, sync, background requests or QUIC) and the profile is a
fresh directory per launch.
"""
from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from learningchain.cli.demo import start_network
from learningchain.cli.processes import Network
from tests.netutil import fault_network

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: a desktop window: the screenshots and the tests see the layout a newcomer does.
VIEWPORT = {"width": 1280, "height": 900}
#: how long a query waits for its element (Playwright's default is 30 s): the pages are
#: rendered by the server, so a missing hook fails in seconds, not half a minute.
TIMEOUT_MS = 5_000
#: a page load on a loaded CI machine (the round page computes its distances once).
NAVIGATION_MS = 20_000
MISSING = (f"Chromium is not installed at {CHROMIUM}: run `apt-get update && apt-get install -y chromium "
           f"chromium-driver` (.ci/run does it on CI); the browser tests need Debian's Chromium, never a "
           f"downloaded one")


def missing() -> str | None:
    """Why the browser cannot be started here, or None."""
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return MISSING
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is missing: pip install -r requirements-test.txt"
    return None


def launch(playwright, user_data_dir: Path):
    """A headless Chromium context (its own fresh profile in ``user_data_dir``),
    desktop-sized. Close it with ``.close()``."""
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
        viewport=VIEWPORT, service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(NAVIGATION_MS)
    return context


@contextmanager
def explorer_network(out: Path, n: int = 3, block_ms: int = 200, round_timeout: int = 10) -> Iterator[Network]:
    """``n`` real node processes on 127.0.0.1 (node 0 mines; softmax on digits,
    FedAvg, quorum ``n``; tests/netutil.py's network), permissioned like the
    demo's, so the explorer names them node0, node1, ... Always stopped at the end."""
    net, parts, genesis, _ = fault_network(out, n, round_timeout=round_timeout, target_block_ms=block_ms)
    try:
        start_network(net, n, parts, genesis)
        yield net
    finally:
        net.stop_all()
