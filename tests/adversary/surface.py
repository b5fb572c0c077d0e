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

from tests.adversary import Outcome, agree, get, honest_network, poll, rounds_close, scenario
from tests.netutil import ROOT, status


def _height(node) -> int:
    return status(node).get("height") or 0


def _tip_height(node) -> int:
    """The height from ``GET /tip`` (a tenth of /status, no node lock: cheap to poll)."""
    return (get(node.url, "/tip") or {}).get("height") or 0




# --- item 8: the mining endpoints ---------------------------------------------------

def _flood(url: str, path: str, stop: threading.Event, codes: dict, threads: int = 2) -> list[threading.Thread]:
    """GET ``path`` as fast as ``threads`` keep-alive clients can, counting status codes."""
    lock = threading.Lock()

    def hammer():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    code = s.get(url + path, timeout=3).status_code
                except requests.RequestException:
                    code = 0
                with lock:
                    codes[code] = codes.get(code, 0) + 1

    workers = [threading.Thread(target=hammer, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    return workers


def _time_to_blocks(hub, path: str, blocks: int, deadline: float) -> tuple[float | None, int, dict]:
    """Seconds the hub took to gain ``blocks`` blocks while 2 clients flooded
    ``path`` (None if not within ``deadline`` seconds), the blocks it gained, and
    the flood's status codes."""
    stop, codes = threading.Event(), {}
    workers = _flood(hub.url, path, stop, codes)
    h0, t0 = _tip_height(hub), time.monotonic()
    reached = poll(lambda: _tip_height(hub) >= h0 + blocks, deadline, 0.1)
    elapsed = time.monotonic() - t0 if reached else None
    gained = max(0, _tip_height(hub) - h0)
    stop.set()
    for w in workers:
        w.join(timeout=5)
    return elapsed, gained, codes


@scenario("mining-flood")
def mining_flood(out: Path) -> Outcome:
    """An outsider polls /mining/template hard (2 clients, ~800/s: the review
    measured 665/s) while the node's standalone miner (``python -m miner
    --data-dir``) mines through the same endpoints. The control is the same
    flood of ``GET /tip``: what requests cost in CPU on 2 shared cores, apart
    from any effect on the miner's templates (before the fix: 0 blocks)."""
    h = honest_network(out, 3, miners=0)
    hub = h.nodes[0]
    miner_log = open(out / "miner.log", "wb")
    miner = subprocess.Popen([sys.executable, "-m", "miner", "--node", hub.url, "--data-dir", str(hub.data_dir),
                              "--workers", "1", "--quiet"], cwd=str(ROOT), stdout=miner_log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        if not poll(lambda: _height(hub) >= 3, 30):
            return Outcome("mining-flood", "standalone miner", "the standalone miner found no block",
                           False, False, ok=False)
        # blocks are a Poisson process: the time to 8 blocks under each flood is compared, and the
        # template flood may take up to 5x the control's time (two equal rates miss that 0.2 %
        # of the time; before the fix the miner found 1 block in 25 s instead of 53). The flood
        # goes first: what start-up noise is left falls on the phase that must not be slow.
        blocks, slack = 8, 5.0
        during_s, during, codes = _time_to_blocks(hub, "/mining/template", blocks, 120)
        control_s, control, _ = _time_to_blocks(hub, "/tip", blocks, 120)
        polls, forbidden = sum(codes.values()), codes.get(403, 0)
        ok = (polls > 0 and forbidden == polls and during_s is not None and control_s is not None
              and during_s <= slack * control_s)
        took = f"{during_s:.1f} s" if during_s is not None else f"more than 120 s ({during} blocks)"
        took_control = f"{control_s:.1f} s" if control_s is not None else f"more than 120 s ({control} blocks)"
        closing = rounds_close(h.nodes)
        return Outcome("mining-flood", f"{polls} GET /mining/template from an outsider (2 keep-alive clients) "
                                       f"while a standalone miner mines {blocks} blocks",
                       f"outsider got {forbidden} x 403 mining-forbidden, other codes "
                       f"{ {k: v for k, v in codes.items() if k != 403} }; {blocks} blocks took {took} during "
                       f"the flood, {took_control} during the same flood of GET /tip (allowed: {slack:.0f}x)",
                       rounds_kept_closing=closing, one_chain_one_model=agree(h.nodes), ok=ok,
                       details={"codes": codes, "during_s": during_s, "control_s": control_s, "blocks": blocks})
    finally:
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
    that send one more header byte now and then, from the attacker's address
    ``source``; and ``crowd`` more mute sockets spread over ``crowd_sources``
    (each under the per-address cap, all together over the node's total cap),
    kept open: a socket the node closed is opened again (each pass of the keeper
    thread).

    The attacker's addresses are 127.0.0.2 and up, never the fresh clients'
    127.0.0.1: the per-address cap makes an attacker compete with itself, and a
    client that shares the attacker's address (behind one NAT) is given no
    guarantee (its fresh connection is as young and mute as the attacker's)."""

    def __init__(self, port: int, idle: int = 200, trickle: int = 40, crowd: int = 0,
                 source: str = "127.0.0.2", crowd_sources: int = 0):
        self.port, self.idle, self.trickle, self.crowd = port, idle, trickle, crowd
        self.plan = [(source, False)] * idle + [(source, True)] * trickle + [
            (f"127.0.0.{3 + i % crowd_sources}", False) for i in range(crowd)]
        self.socks: list[tuple[socket.socket, str, bool]] = []
        self.opened = self.reopened = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._keep, daemon=True)

    def _open(self, source: str, trickle: bool) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2, source_address=(source, 0))
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
        for source, trickle in self.plan:
            s = self._open(source, trickle)
            if s is not None:
                self.socks.append((s, source, trickle))
        while not self.stop.wait(0.5):
            kept = []
            for s, source, trickle in self.socks:
                if self._closed(s):
                    s.close()
                    fresh = self._open(source, trickle)
                    self.reopened += fresh is not None
                    if fresh is not None:
                        kept.append((fresh, source, trickle))
                    continue
                if trickle:
                    try:
                        s.send(b"X")  # one byte of a header line that never ends
                    except OSError:
                        pass
                kept.append((s, source, trickle))
            self.socks = kept

    def __enter__(self) -> "Slowloris":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        for s, _, _ in self.socks:
            s.close()


def _fresh_status(url: str, timeout: float = 5.0) -> float | str:
    """Seconds a new client (a new TCP connection) waits for /status, or what went wrong."""
    t0 = time.monotonic()
    try:
        with requests.Session() as s:
            status = s.get(url + "/status", timeout=timeout).status_code
    except requests.RequestException as e:
        return f"{type(e).__name__} after {time.monotonic() - t0:.2f} s"
    return time.monotonic() - t0 if status == 200 else f"HTTP {status}"


@scenario("slowloris")
def slowloris(out: Path) -> Outcome:
    """200 idle sockets and 40 half-sent requests from one address, and 560 mute
    sockets from 20 more, held open against a node (over its per-address cap of
    32 and its total cap of 512)."""
    h = honest_network(out, 3)
    hub = h.nodes[0]
    try:
        with Slowloris(hub.port, crowd=560, crowd_sources=20) as attack:
            poll(lambda: attack.opened >= len(attack.plan), 30)
            waits = []
            for _ in range(6):
                waits.append(_fresh_status(hub.url))
                time.sleep(0.5)
            closing = rounds_close(h.nodes)
            waits.append(_fresh_status(hub.url))
            opened, reopened = attack.opened, attack.reopened
        answered = [w for w in waits if isinstance(w, float)]
        # the caps must have bitten (the node closed attacker sockets), else nothing was tested
        ok = len(answered) == len(waits) and reopened > 0
        worst = f"{max(answered):.2f} s" if answered else "-"
        return Outcome("slowloris", f"{attack.idle} idle sockets + {attack.trickle} half-sent requests from "
                                    f"127.0.0.2, {attack.crowd} mute sockets from 20 more addresses, held "
                                    f"open (closed ones reopened) against one node",
                       f"fresh clients answered {len(answered)}/{len(waits)}, slowest {worst}; "
                       f"attacker opened {opened} sockets, {reopened} of them after the node closed one",
                       rounds_kept_closing=closing, one_chain_one_model=agree(h.nodes), ok=ok,
                       details={"waits": waits, "opened": opened, "reopened": reopened})
    finally:
        h.net.stop_all()


# --- item 5: peer-table poisoning ---------------------------------------------------

class SlowServer:
    """The attacker's HTTP server on ``ports`` ports of 127.0.0.1. ``smart`` of
    them answer ``GET /tip`` at once with the network's genesis (so they pass a
    handshake) and trickle every other answer; the others trickle everything."""

    def __init__(self, genesis: str, ports: int = 20, smart: int = 10, pause: float = 0.5):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.stop = threading.Event()
        self.requests = 0
        outer = self
        tip = ('{"height": 0, "tip": "' + "00" * 32 + '", "work": "0", "genesis": "' + genesis + '"}').encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _answer(self):
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fast = self.server.smart and self.command == "GET" and self.path == "/tip"
                body = tip if fast else b'{"peers": []}'
                try:
                    self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                                     + f"Content-Length: {len(body)}\r\n\r\n".encode())
                    for i in range(len(body)):
                        if not fast and outer.stop.wait(pause):
                            return
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                except OSError:
                    pass

            do_GET = do_POST = _answer

        self.servers = []
        for i in range(ports):
            srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            srv.daemon_threads = True
            srv.smart = i < smart
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self.servers.append(srv)
        self.urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in self.servers]
        self.smart_urls = self.urls[:smart]

    def close(self) -> None:
        self.stop.set()
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


def _unused_ports(n: int) -> list[str]:
    from learningchain.cli.processes import free_port
    return [f"http://127.0.0.1:{free_port()}" for _ in range(n)]


@scenario("peer-poison")
def peer_poison(out: Path) -> Outcome:
    """60 URLs posted to one learner: 30 paths on one slow server, 20 ports of it
    (10 answer the handshake, then trickle), 10 ports where nothing listens."""
    h = honest_network(out, 3)
    hub, target = h.nodes[0], h.nodes[1]
    genesis = (get(hub.url, "/tip") or {}).get("genesis") or (get(hub.url, "/status") or {}).get("genesis")
    slow = SlowServer(genesis or "00" * 32)
    try:
        paths = [f"{slow.urls[-1]}/p{i}" for i in range(30)]
        urls = paths + slow.urls + _unused_ports(10)
        answers: dict[str, int] = {}
        for url in urls:
            r = requests.post(target.url + "/peers", json={"url": url}, timeout=10)
            doc = r.json()
            key = doc.get("reason") or doc.get("status") or str(r.status_code)
            answers[key] = answers.get(key, 0) + 1
        gaps, r0 = [], max((status(n).get("round") or 0) for n in h.nodes)
        deadline = time.monotonic() + 10.0  # lists used to spread to every table within this
        while time.monotonic() < deadline:
            heights = [(get(n.url, "/tip") or {}).get("height") or 0 for n in h.nodes]  # cheaper than /status
            gaps.append(max(heights) - min(heights))
            time.sleep(0.5)
        rounds_in_window = max((status(n).get("round") or 0) for n in h.nodes) - r0
        closing = rounds_close(h.nodes)
        honest = set(h.urls())
        hostile = set(slow.urls) | {u.rstrip("/") for u in urls}
        tables = {}
        for n in h.nodes:
            listed = {p["url"] for p in (get(n.url, "/peers") or {}).get("peers", [])}
            tables[n.name] = (len(listed & hostile), len(listed & honest))
        in_sync = bool(poll(lambda: max(_height(n) for n in h.nodes) - min(_height(n) for n in h.nodes) <= 3, 20))
        heights = [_height(n) for n in h.nodes]
        smart = set(slow.smart_urls)
        bounded = all(
            {p["url"] for p in (get(n.url, "/peers") or {}).get("peers", [])} & hostile <= smart
            for n in h.nodes)
        ok = (answers.get("peer-url-path", 0) == len(paths) and bounded and in_sync and rounds_in_window >= 3
              and sorted(gaps)[len(gaps) // 2] <= 3 and max(gaps) <= 15)  # old code: median 20, max 61
        return Outcome("peer-poison", f"{len(urls)} URLs posted to one learner: {len(paths)} paths on a slow "
                                      f"server, {len(slow.urls)} of its ports ({len(slow.smart_urls)} pass the "
                                      f"handshake, then trickle), 10 dead ports",
                       f"answers {answers}; hostile/honest entries per table {tables}; in 10 s: "
                       f"{rounds_in_window} rounds closed, learners at most {max(gaps)} blocks apart "
                       f"(median {sorted(gaps)[len(gaps) // 2]}); final heights {heights}",
                       rounds_kept_closing=closing, one_chain_one_model=agree(h.nodes), ok=ok,
                       details={"answers": answers, "tables": tables, "heights": heights, "gaps": gaps})
    finally:
        slow.close()
        h.net.stop_all()
