"""Standalone miner: mines blocks for a node through its HTTP mining endpoints.

    python -m miner --node http://127.0.0.1:5000 --data-dir DIR [--workers N] [--quiet]

``--data-dir`` is the node's data directory: the node writes a fresh token to
``DIR/miner.token`` at every start (mode 0600) and answers ``/mining/*`` only
with it in the ``X-Miner-Token`` header (403 ``mining-forbidden`` otherwise);
``--token-file`` names the file directly. The token is read again after a 403
(the node restarted and wrote a new one).

The node assembles blocks (transactions, round commitment, coinbase identity);
the miner only searches nonces. Contract (the node's API implements exactly this):

``GET {node}/mining/template`` -> 200 JSON::

    {"template_id": str,        # opaque, names the node's pending block
     "height": int,             # height of the block being mined
     "prev_hash": hex,          # the tip it extends (64 hex)
     "prefix": hex,             # the 181-byte header prefix (362 hex): every
                                # header field but the trailing 8-byte nonce
     "target": hex}             # 64 hex, big-endian; PoW iff SHA-256(prefix || nonce) < target

``POST {node}/mining/submit`` JSON ``{"template_id": str, "nonce": int}``
-> 202 ``{"hash": hex, "status": str}`` when the block was accepted, or
4xx ``{"error": str, ...}`` (unknown or stale template, insufficient work, ...).

``GET {node}/status`` -> 200 JSON with at least ``{"tip": hex, "mempool": int}``.

``POST {node}/mining/wait`` JSON ``{"template_id": str, "timeout": s}`` -> 200
``{"stale": bool}``: answered the moment the template goes stale (a new tip, or
the mempool now holds what closes the round), or after ``timeout`` seconds with
``false``; 429 ``mining-busy`` when the node runs too many already.

While searching, a thread of the miner long-polls ``/mining/wait``, so a new tip
stops the search as soon as the node knows of it (no timer on a round's path):
the search is interrupted and a new template fetched. After each
:data:`REFRESH_AFTER` seconds without news, a template is refreshed if the
mempool count changed (new transactions get into the block without refetching on
every arrival). A node that cannot long-poll (429, or an older node: 404) is
watched by polling ``/status`` every :data:`STATUS_SECONDS` instead, with the
same two rules. An unreachable node is retried with exponential back-off and a
one-line message.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import requests

from miner.pow import Miner, format_rate

STATUS_SECONDS = 0.25
REFRESH_AFTER = 1.0
TIMEOUT = (2.0, 5.0)  # (connect, read) seconds
BACKOFF_START, BACKOFF_MAX = 0.5, 10.0
PREFIX_HEX_LEN = 181 * 2


class NodeUnreachable(Exception):
    """The node did not answer (connection refused, timeout, 5xx)."""


class ProtocolError(Exception):
    """The node answered with something that breaks the mining contract."""


@dataclass(frozen=True)
class Template:
    template_id: str
    height: int
    prev_hash: str
    prefix: bytes
    target: int

    @classmethod
    def parse(cls, doc) -> "Template":
        try:
            prefix_hex, target_hex = doc["prefix"], doc["target"]
            if not isinstance(prefix_hex, str) or len(prefix_hex) != PREFIX_HEX_LEN:
                raise ValueError(f"prefix must be {PREFIX_HEX_LEN} hex chars")
            if not isinstance(target_hex, str) or len(target_hex) != 64:
                raise ValueError("target must be 64 hex chars")
            if not isinstance(doc["template_id"], str) or not isinstance(doc["height"], int):
                raise ValueError("template_id must be a string and height an integer")
            return cls(template_id=doc["template_id"], height=doc["height"], prev_hash=str(doc["prev_hash"]),
                       prefix=bytes.fromhex(prefix_hex), target=int(target_hex, 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"bad mining template: {exc}") from None


def check_url(url: str) -> str | None:
    """None if ``url`` can name a node, else what to fix."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"--node must be an http(s) URL such as http://127.0.0.1:5000, got {url!r}"
    try:
        parts.port
    except ValueError:
        return f"--node has an invalid port: {url!r}"
    return None


TOKEN_FILE = "miner.token"
TOKEN_HEADER = "X-Miner-Token"


def read_token(path: str | None) -> str | None:
    """The node's miner token from ``path`` (None without a path or file)."""
    if not path:
        return None
    try:
        return open(path, encoding="ascii").read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class NodeClient:
    """The three mining endpoints over one keep-alive session; ``token_file``:
    the node's ``miner.token`` (sent as ``X-Miner-Token`` to ``/mining/*``)."""

    def __init__(self, url: str, session: requests.Session | None = None, token_file: str | None = None):
        self.url = url.rstrip("/")
        self.session = session or requests.Session()
        self.token_file = token_file
        self.token = read_token(token_file)
        self._wait_sessions = threading.local()  # wait(): one session per watch thread

    def _call(self, method: str, path: str, **kw):
        for attempt in (0, 1):
            code, doc = self._call_once(method, path, **kw)
            forbidden = code == 403 and isinstance(doc, dict) and doc.get("reason") == "mining-forbidden"
            if not forbidden or attempt or not self.token_file:
                break
            self.token = read_token(self.token_file)  # the node restarted: a new token
        if forbidden:
            where = f"the token in {self.token_file}" if self.token_file else "no token"
            raise ProtocolError(f"{method} {path}: HTTP 403 mining-forbidden with {where}: start the miner "
                                f"with --data-dir <the node's data dir>")
        return code, doc

    def _call_once(self, method: str, path: str, session: requests.Session | None = None,
                   timeout: tuple[float, float] = TIMEOUT, **kw):
        headers = {TOKEN_HEADER: self.token} if self.token and path.startswith("/mining/") else {}
        try:
            resp = (session or self.session).request(method, self.url + path, timeout=timeout, headers=headers,
                                                     **kw)
        except requests.RequestException as exc:
            raise NodeUnreachable(f"{type(exc).__name__}") from None
        if resp.status_code >= 500:
            raise NodeUnreachable(f"HTTP {resp.status_code}")
        try:
            return resp.status_code, resp.json()
        except ValueError:
            raise ProtocolError(f"{method} {path}: HTTP {resp.status_code} without a JSON body") from None

    def template(self) -> Template:
        code, doc = self._call("GET", "/mining/template")
        if code != 200:
            raise ProtocolError(f"GET /mining/template: HTTP {code}: {_error_of(doc)}")
        return Template.parse(doc)

    def status(self) -> tuple[str, int]:
        code, doc = self._call("GET", "/status")
        try:
            if code != 200:
                raise ValueError(f"HTTP {code}")
            return str(doc["tip"]), int(doc["mempool"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"GET /status: {exc}") from None

    def wait(self, template_id: str, seconds: float) -> bool | None:
        """``POST /mining/wait`` on a session of the calling thread's own (watch
        threads of successive templates may overlap; a Session is not
        thread-safe): True once the template is stale, False if it is still
        current after ``seconds``, None if the node cannot long-poll (404, 429)."""
        session = getattr(self._wait_sessions, "session", None)
        if session is None:
            session = self._wait_sessions.session = requests.Session()
        code, doc = self._call("POST", "/mining/wait", session=session,
                               timeout=(TIMEOUT[0], seconds + TIMEOUT[1]),
                               json={"template_id": template_id, "timeout": seconds})
        if code in (404, 429):
            return None
        if code != 200 or not isinstance(doc, dict) or not isinstance(doc.get("stale"), bool):
            raise ProtocolError(f"POST /mining/wait: HTTP {code}: {_error_of(doc)}")
        return doc["stale"]

    def submit(self, template_id: str, nonce: int) -> tuple[bool, str]:
        """(accepted, block hash or the node's reason)."""
        code, doc = self._call("POST", "/mining/submit", json={"template_id": template_id, "nonce": nonce})
        if code == 202 and isinstance(doc, dict):
            return True, str(doc.get("hash", ""))
        return False, f"HTTP {code}: {_error_of(doc)}"


def _error_of(doc) -> str:
    return str(doc.get("error", doc)) if isinstance(doc, dict) else str(doc)


class StaleWatch:
    """``should_stop`` for one template: true once the template went stale (or
    on shutdown). A thread long-polls ``/mining/wait`` and interrupts ``miner``
    the moment the node says so; against a node that cannot long-poll it falls
    back to polling ``/status`` every STATUS_SECONDS."""

    def __init__(self, node: NodeClient, template: Template, mempool: int, stop: threading.Event,
                 say: Callable[[str], None], miner: Miner | None = None):
        self.node, self.template, self.mempool, self.stop, self.say = node, template, mempool, stop, say
        self.miner = miner
        self.fetched = time.monotonic()
        self.next_poll = self.fetched + STATUS_SECONDS
        self.reason = ""
        self._warned = False
        self._stale = threading.Event()
        self._closed = False
        self.longpoll = True
        threading.Thread(target=self._watch, name="stale-watch", daemon=True).start()

    def close(self) -> None:
        """The search for this template ended: the watch thread stops after its call."""
        self._closed = True

    def _mark(self, reason: str) -> None:
        self.reason = reason
        self._stale.set()
        if self.miner is not None and not self._closed:
            self.miner.interrupt()

    def _watch(self) -> None:
        while not self._closed and not self.stop.is_set():
            try:
                stale = self.node.wait(self.template.template_id, REFRESH_AFTER)
            except (NodeUnreachable, ProtocolError):
                stale = None
            if stale is None:  # no long-poll here: __call__ polls /status
                self.longpoll = False
                return
            if stale:
                return self._mark("new template")
            if self._closed:
                return
            try:  # still current after REFRESH_AFTER: new txs (not yet a quorum) are taken in now
                _tip, mempool = self.node.status()
            except (NodeUnreachable, ProtocolError):
                continue
            if mempool != self.mempool:
                return self._mark("mempool changed")

    def __call__(self) -> bool:
        if self.stop.is_set():
            self.reason = "shutdown"
            return True
        if self._stale.is_set():
            return True
        if self.longpoll:
            return False
        now = time.monotonic()
        if now < self.next_poll:
            return False
        self.next_poll = now + STATUS_SECONDS
        try:
            tip, mempool = self.node.status()
        except (NodeUnreachable, ProtocolError) as exc:
            if not self._warned:  # keep mining the template; submit will retry
                self.say(f"status poll failed ({exc}); still mining height {self.template.height}")
                self._warned = True
            return False
        if tip != self.template.prev_hash:
            self.reason = "new tip"
            return True
        if mempool != self.mempool and now - self.fetched >= REFRESH_AFTER:
            self.reason = "mempool changed"
            return True
        return False


class MiningClient:
    """Fetch template -> search -> submit, until ``stop`` is set or ``max_blocks``."""

    def __init__(self, node: NodeClient, miner: Miner, quiet: bool = False,
                 out: Callable[[str], None] | None = None, progress_seconds: float = 10.0):
        self.node, self.miner, self.quiet = node, miner, quiet
        self._out = out or (lambda line: print(line, flush=True))
        self.progress_seconds = progress_seconds
        self.blocks = 0
        self.rejected = 0
        self.templates = 0
        self.hashes = 0
        self.seconds = 0.0
        self.stop = threading.Event()

    def say(self, line: str) -> None:
        if not self.quiet:
            self._out(line)

    @property
    def hashrate(self) -> float:
        return self.hashes / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"miner stopped: {self.blocks} block(s) found, {self.rejected} rejected, "
                f"average {format_rate(self.hashrate)} over {self.seconds:.1f} s of hashing")

    def _retry(self, what: Callable, describe: str):
        """Call ``what()`` until the node answers (or stop); back off exponentially."""
        delay = BACKOFF_START
        while not self.stop.is_set():
            try:
                return what()
            except NodeUnreachable as exc:
                self._out(f"node {self.node.url} unreachable during {describe} ({exc}); retrying in {delay:.1f} s")
            except ProtocolError as exc:
                self._out(f"node {self.node.url}: {exc}; retrying in {delay:.1f} s")
            self.stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)
        return None

    def _fetch(self) -> tuple[Template, int] | None:
        def both():
            _tip, mempool = self.node.status()  # before the template: a later tx only causes a refresh
            return self.node.template(), mempool
        return self._retry(both, "template fetch")

    def run(self, max_blocks: int | None = None) -> None:
        while not self.stop.is_set() and (max_blocks is None or self.blocks < max_blocks):
            fetched = self._fetch()
            if fetched is None:
                return
            template, mempool = fetched
            self.templates += 1
            watch = StaleWatch(self.node, template, mempool, self.stop, self.say, self.miner)
            try:
                result = self.miner.mine(template.prefix, template.target, should_stop=watch,
                                         on_progress=self._progress(template),
                                         progress_seconds=self.progress_seconds)
            finally:
                watch.close()
            self.hashes += result.hashes
            self.seconds += result.seconds
            if result.nonce is None:
                if watch.reason and watch.reason != "shutdown":
                    self.say(f"height {template.height}: {watch.reason}, new template")
                continue
            self._submit(template, result.nonce, result.hashrate)

    def _progress(self, template: Template):
        def report(hashes: int, seconds: float) -> None:
            rate = hashes / seconds if seconds > 0 else 0.0
            self.say(f"mining height {template.height}: {format_rate(rate)} ({hashes:,} hashes)")
        return report

    def _submit(self, template: Template, nonce: int, hashrate: float) -> None:
        outcome = self._retry(lambda: self.node.submit(template.template_id, nonce), "submit")
        if outcome is None:
            return
        accepted, detail = outcome
        if accepted:
            self.blocks += 1
            self.say(f"block {template.height} {detail[:16]} found at {format_rate(hashrate)}")
        else:
            self.rejected += 1
            self.say(f"block {template.height} rejected: {detail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m miner", description="Mine blocks for a LearningChain node.")
    parser.add_argument("--node", required=True, help="the node's base URL, e.g. http://127.0.0.1:5000")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: one per CPU)")
    parser.add_argument("--data-dir", help=f"the node's data directory (its {TOKEN_FILE} lets us mine for it)")
    parser.add_argument("--token-file", help=f"the node's {TOKEN_FILE}, if not given through --data-dir")
    parser.add_argument("--quiet", action="store_true", help="print only problems and the final summary")
    args = parser.parse_args(argv)
    problem = check_url(args.node)
    token_file = args.token_file or (os.path.join(args.data_dir, TOKEN_FILE) if args.data_dir else None)
    if problem is None and token_file and read_token(token_file) is None:
        problem = f"cannot read a miner token from {token_file} (is the node started, and is this its data dir?)"
    if problem is None and args.workers < 1:
        problem = f"--workers must be at least 1, got {args.workers}"
    if problem:
        print(f"miner: {problem}", file=sys.stderr)
        return 2
    miner = Miner(workers=args.workers, in_process=False)  # a worker process: an interrupt lands in ~3 ms
    client = MiningClient(NodeClient(args.node, token_file=token_file), miner, quiet=args.quiet)
    client.say(f"mining for {args.node} with {miner.workers} worker(s); Ctrl-C to stop")
    try:
        client.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the clean-up
        client.stop.set()
        miner.close()
    print(client.summary(), flush=True)
    return 0
