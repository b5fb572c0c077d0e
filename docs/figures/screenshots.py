"""Screenshots of the explorer as a newcomer sees it: a small real network
(three ``node.py run`` processes on 127.0.0.1, node 0 mining; the browser
tests' network, tests/chromium.py) runs a few rounds, then Debian's headless
Chromium (1280x900) saves

    docs/figures/explorer-index.png   the index: live height/round, chart, latest blocks and rounds
    docs/figures/explorer-round.png   a closed round: every update with its verdict

Run from the repository root: ``.venv/bin/python docs/figures/screenshots.py``
(``--rounds N``: evaluated rounds to wait for, default 8; ``--out DIR``).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from learningchain.cli.processes import get, wait_for  # noqa: E402
from tests import chromium  # noqa: E402


def evaluated(url: str) -> list[int]:
    doc = get(url, "/rounds?format=json") or {}
    return [r["round"] for r in doc.get("rounds", []) if r.get("metrics")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8, help="evaluated rounds to wait for (default 8)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="where the PNGs go")
    args = ap.parse_args(argv)
    why = chromium.missing()
    if why:
        print(why, file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright
    out = Path(args.out)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="explorer-shots-") as tmp, \
            chromium.explorer_network(Path(tmp)) as net, sync_playwright() as p:
        hub = net.nodes[0]
        rounds = wait_for(lambda: len(evaluated(hub.url)) >= args.rounds and evaluated(hub.url), 120,
                          f"{args.rounds} evaluated rounds", net)
        context = chromium.launch(p, Path(tmp) / "profile")
        try:
            page = context.new_page()
            page.goto(hub.url + "/", wait_until="load")
            page.wait_for_timeout(2500)  # a picture, not a test: let the live view poll a couple of times
            page.screenshot(path=str(out / "explorer-index.png"), full_page=True)
            r = rounds[len(rounds) // 2]
            page.goto(f"{hub.url}/rounds/{r}", wait_until="load")
            page.screenshot(path=str(out / "explorer-round.png"), full_page=True)
        finally:
            context.close()
    for name in ("explorer-index.png", "explorer-round.png"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    print(f"round page: round {r}; {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
