"""Attacks on a node's public surface: its HTTP server (slowloris), its peer table
and gossip (peer-table poisoning), its mining endpoints (template flood).

Each scenario starts real ``node.py run`` processes on 127.0.0.1 and attacks them
as an outsider with sockets and HTTP requests (issue 10, items 4, 5 and 8).
"""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.adversary import Outcome, agree, get, honest_network, rounds_close, scenario
from tests.netutil import ROOT, status


def _height(node) -> int:
    return status(node).get("height") or 0


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


# --- item 8: the mining endpoints ---------------------------------------------------

def _flood_templates(url: str, stop: threading.Event, codes: dict, threads: int = 4) -> list[threading.Thread]:
    """Poll ``GET /mining/template`` as fast as ``threads`` keep-alive clients can."""
    lock = threading.Lock()

    def poll():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    code = s.get(url + "/mining/template", timeout=3).status_code
                except requests.RequestException:
                    code = 0
                with lock:
                    codes[code] = codes.get(code, 0) + 1

    workers = [threading.Thread(target=poll, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


@scenario("mining-flood")
def mining_flood(out: Path) -> Outcome:
    """An outsider polls /mining/template hard while the node's standalone miner
    (``python -m miner --data-dir``) mines through the same endpoints."""
    h = honest_network(out, 3, miners=0)
    hub = h.nodes[0]
    miner_log = open(out / "miner.log", "wb")
    miner = subprocess.Popen([sys.executable, "-m", "miner", "--node", hub.url, "--data-dir", str(hub.data_dir),
                              "--workers", "1", "--quiet"], cwd=str(ROOT), stdout=miner_log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        if not _wait(lambda: _height(hub) >= 3, 30):
            return Outcome("mining-flood", "standalone miner", "the standalone miner found no block",
                           False, False, ok=False)
        window = 6.0
        h0 = _height(hub)
        time.sleep(window)  # a measurement window, not a synchronisation
        before = _height(hub) - h0
        codes: dict[int, int] = {}
        workers = _flood_templates(hub.url, stop, codes)
        h1 = _height(hub)
        time.sleep(window)
        during = _height(hub) - h1
        stop.set()
        for w in workers:
            w.join(timeout=5)
        polls = sum(codes.values())
        forbidden = codes.get(403, 0)
        ok = polls > 0 and forbidden == polls and during >= max(2, 0.4 * before)
        closing = rounds_close(h.nodes)
        return Outcome("mining-flood", f"{polls} GET /mining/template in {window:.0f} s from an outsider "
                                       f"(4 keep-alive clients) while a standalone miner mines",
                       f"outsider got {forbidden} x 403 mining-forbidden, other codes "
                       f"{ {k: v for k, v in codes.items() if k != 403} }; blocks per {window:.0f} s: "
                       f"{before} before, {during} during the flood",
                       rounds_kept_closing=closing, one_chain_one_model=agree(h.nodes), ok=ok,
                       details={"codes": codes, "blocks_before": before, "blocks_during": during})
    finally:
        stop.set()
        miner.terminate()
        try:
            miner.wait(timeout=10)
        except subprocess.TimeoutExpired:
            miner.kill()
        miner_log.close()
        h.net.stop_all()
