"""Screenshots of the explorer as a newcomer sees it after
``node.py demo --keep``: the demo's own network (4 node processes on 127.0.0.1,
its baselines written for every node) runs its rounds and is left running, then
Debian's headless Chromium (a 1280x900 window, tests/chromium.py) saves

    docs/figures/explorer-index.png   the index: live height and round, the chart with G0 and
                                      the baselines, the latest blocks (the top of the page)
    docs/figures/explorer-round.png   a closed round: every update with its verdict and distance

and the demo's nodes are stopped. Run from the repository root:
``.venv/bin/python docs/figures/screenshots.py`` (``--rounds N``, default 10;
``--out DIR``, default docs/figures). About 30 s.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from learningchain.cli.processes import check_ports_free, free_port, get, wait_for  # noqa: E402
from learningchain.core.errors import ConfigError, LearningChainError  # noqa: E402
from tests import chromium  # noqa: E402

NODES = 4
#: the index is long (30 blocks, 50 rounds): the picture is its top, as a window shows it and a bit more.
INDEX_HEIGHT = 1400


def base_port() -> int:
    """A port P with P .. P+NODES-1 free (the demo's --base-port)."""
    for _ in range(50):
        p = free_port()
        try:
            check_ports_free(range(p, p + NODES))
            return p
        except ConfigError:
            continue
    raise SystemExit("no free range of ports for the demo")


def node_pids(nodes_dir: Path) -> list[int]:
    """The ``node.py run`` processes whose data dir is under ``nodes_dir`` (the demo's, left running)."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "--data-dir" in argv and argv[argv.index("--data-dir") + 1].startswith(str(nodes_dir) + os.sep):
            pids.append(int(entry))
    return pids


def alive(pid: int) -> bool:
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def stop(pids: list[int]) -> None:
    """SIGTERM, then SIGKILL what is left after 10 s."""
    def signal_all(sig):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    signal_all(signal.SIGTERM)
    try:
        wait_for(lambda: not any(map(alive, pids)), 10, "the demo's nodes to stop")
    except LearningChainError:
        signal_all(signal.SIGKILL)


def shoot(url: str, out: Path, profile: Path) -> int:
    """Both pictures of the node at ``url``; the round shown."""
    from playwright.sync_api import sync_playwright
    rounds = (get(url, "/rounds?format=json") or {}).get("rounds", [])
    closed = [r["round"] for r in rounds if r.get("metrics")]
    shown = closed[len(closed) // 2]
    with sync_playwright() as p:
        context = chromium.launch(p, profile)
        try:
            page = context.new_page()
            page.goto(url + "/", wait_until="load")
            live = page.inner_text("#live")
            page.wait_for_function("t => document.querySelector('#live').textContent !== t", arg=live)
            height = page.evaluate("document.documentElement.scrollHeight")
            page.screenshot(path=str(out / "explorer-index.png"), full_page=True,
                            clip={"x": 0, "y": 0, "width": chromium.VIEWPORT["width"],
                                  "height": min(height, INDEX_HEIGHT)})
            page.goto(f"{url}/rounds/{shown}", wait_until="load")
            page.screenshot(path=str(out / "explorer-round.png"), full_page=True)
        finally:
            context.close()
    return shown


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds the demo runs (default 10)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "figures"), help="where the PNGs go")
    args = ap.parse_args(argv)
    why = chromium.missing()
    if why:
        print(why, file=sys.stderr)
        return 1
    out = Path(args.out)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="explorer-shots-") as tmp:
        run, port = Path(tmp) / "run", base_port()
        try:
            demo = subprocess.run([sys.executable, str(ROOT / "node.py"), "demo", "--keep", "--out", str(run),
                                   "--rounds", str(args.rounds), "--base-port", str(port)],
                                  cwd=str(ROOT), capture_output=True, text=True, timeout=300)
            if demo.returncode != 0:
                print(f"node.py demo failed ({demo.returncode}):\n{demo.stdout}{demo.stderr}", file=sys.stderr)
                return 1
            shown = shoot(f"http://127.0.0.1:{port}", out, Path(tmp) / "profile")
        finally:
            stop(node_pids(run / "nodes"))
    for name in ("explorer-index.png", "explorer-round.png"):
        print(f"{out / name}: {(out / name).stat().st_size} bytes")
    print(f"round page: round {shown}; {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
