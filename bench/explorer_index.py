"""What the explorer's index ``GET /`` and its poll ``GET /live`` cost the node
(learningchain/node/web/index_page.py), at a chain of ``--rounds`` closed and
measured rounds: an in-process node (real chain, SQLite store, held-out set,
every round evaluated) and Flask's test client (no sockets: the time is the
app's, not the network's). A benchmark: it prints figures and asserts nothing.

Measured in the same run:

* ``GET /`` while nothing moves: what every open tab asks about once a second
  while the tip moves (the script refetches the page when /live changed; with
  several tabs, each tab's request after the first finds the cached page);
* ``GET /`` rendered anew each time (the page cache emptied before each
  request, as after every new block): the cost of one rendering;
* ``GET /live``.

    .venv/bin/python bench/explorer_index.py [--rounds 60] [--repeat 200]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.node.service import Node  # noqa: E402
from learningchain.node.threads import evaluate_closed_rounds  # noqa: E402
from learningchain.node.web.api import create_app  # noqa: E402
from tests.helpers import KEYS, next_block, tiny_config, update_tx  # noqa: E402
from tests.node.test_service import write_partition  # noqa: E402  (a training set and test.npz)


def build(tmp: Path, rounds: int) -> Node:
    """A node whose chain closed ``rounds`` rounds (3 listed senders each), all measured."""
    data = write_partition(tmp)
    n = Node(tmp / "n", tiny_config(allow_list=[k.public_hex for k in KEYS[:3]]), dataset_path=data,
             quiet=True, port=5990)
    for _ in range(rounds):
        with n.lock:
            blk = next_block(n.chain, [update_tx(n.chain, k) for k in KEYS[:3]], miner=KEYS[1])
        assert n.submit_block(blk, relay=False) == "connected"
    while evaluate_closed_rounds(n):
        pass
    return n


def timed(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def line(what: str, times: list[float], size: int) -> str:
    ms = sorted(t * 1e3 for t in times)
    return (f"{what:<40} median {statistics.median(ms):7.3f} ms  p90 {ms[int(len(ms) * 0.9)]:7.3f} ms  "
            f"{size:>7} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        n = build(Path(tmp), args.rounds)
        try:
            app = create_app(n)
            client = app.test_client()
            html = {"Accept": "text/html", "Accept-Encoding": "gzip"}  # as a browser asks
            print(f"{args.rounds} rounds closed and measured in {time.monotonic() - t0:.1f} s "
                  f"(height {n.chain.height}); {args.repeat} requests each; load average "
                  f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
            raw = len(client.get("/", headers={"Accept": "text/html"}).data)
            size = len(client.get("/", headers=html).data)
            same = timed(lambda: client.get("/", headers=html), args.repeat)
            cache = app.extensions.get("index_cache")  # absent before the page cache existed

            def fresh():
                if cache is not None:
                    cache.clear()
                client.get("/", headers=html)
            anew = timed(fresh, args.repeat)
            live_size = len(client.get("/live").data)
            live = timed(lambda: client.get("/live"), args.repeat)
            print(line("GET / (nothing moved)", same, size))
            print(line("GET / (rendered anew each time)", anew, size))
            print(line("GET /live", live, live_size))
            print(f"the page: {raw} bytes, {size} gzipped (sizes above: as sent)")
            print(f"page cache: {'yes' if cache is not None else 'none'}; rendered anew / unchanged: "
                  f"{statistics.median(anew) / statistics.median(same):.1f}x")
        finally:
            n.stop()


if __name__ == "__main__":
    main()
