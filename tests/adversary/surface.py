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


# --- item 4: slowloris --------------------------------------------------------------

class Slowloris:
    """``idle`` sockets that never send a byte and ``trickle`` half-sent requests
    that send one more header byte now and then, kept open: a socket the node
    closed is opened again (each pass of the keeper thread)."""

    def __init__(self, port: int, idle: int = 200, trickle: int = 40):
        self.port, self.idle, self.trickle = port, idle, trickle
        self.socks: list[tuple[socket.socket, bool]] = []
        self.opened = self.reopened = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)

    def _open(self, trickle: bool) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            if trickle:
                s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            s.setblocking(False)
            self.opened += 1
            return s
        except OSError:
            self.failed += 1
            return None

    @staticmethod
    def _closed(s: socket.socket) -> bool:
        try:
            return s.recv(1) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _keep(self) -> None:
        for i in range(self.idle + self.trickle):
            s = self._open(i >= self.idle)
            if s is not None:
                self.socks.append((s, i >= self.idle))
        while not self.stop.wait(0.5):
            kept = []
            for s, trickle in self.socks:
                if self._closed(s):
                    s.close()
                    fresh = self._open(trickle)
                    self.reopened += fresh is not None
                    if fresh is not None:
                        kept.append((fresh, trickle))
                    continue
                if trickle:
                    try:
                        s.send(b"X")  # one byte of a header line that never ends
                    except OSError:
                        pass
                kept.append((s, trickle))
            self.socks = kept

    def __enter__(self) -> "Slowloris":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for s, _ in self.socks:
            s.close()


def _fresh_status(url: str, timeout: float = 5.0) -> float | None:
    """Seconds a new client (a new TCP connection) waits for /status, None if no answer."""
    t0 = time.monotonic()
    try:
        with requests.Session() as s:
            ok = s.get(url + "/status", timeout=timeout).status_code == 200
    except requests.RequestException:
        return None
    return time.monotonic() - t0 if ok else None


@scenario("slowloris")
def slowloris(out: Path) -> Outcome:
    """200 idle sockets and 40 half-sent requests held open against a node."""
    h = honest_network(out, 3)
    hub = h.nodes[0]
    try:
        with Slowloris(hub.port) as attack:
            _wait(lambda: attack.opened >= attack.idle + attack.trickle, 20)
            waits = []
            for _ in range(6):
                waits.append(_fresh_status(hub.url))
                time.sleep(0.5)
            closing = rounds_close(h.nodes)
            waits.append(_fresh_status(hub.url))
            opened, reopened = attack.opened, attack.reopened
        answered = [w for w in waits if w is not None]
        ok = len(answered) == len(waits)
        worst = f"{max(answered):.2f} s" if answered else "-"
        return Outcome("slowloris", f"{attack.idle} idle sockets + {attack.trickle} half-sent requests "
                                    f"held open (closed ones reopened) against one node",
                       f"fresh clients answered {len(answered)}/{len(waits)}, slowest {worst}; "
                       f"attacker opened {opened} sockets, {reopened} of them after the node closed one",
                       rounds_kept_closing=closing, one_chain_one_model=agree(h.nodes), ok=ok,
                       details={"waits": waits, "opened": opened, "reopened": reopened})
    finally:
        h.net.stop_all()
