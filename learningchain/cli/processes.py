"""Node processes on this machine: start ``python node.py run`` with its own
data dir, log file and free loopback port, wait until it answers *as itself*,
notice when it dies, and always stop it (SIGTERM, then SIGKILL after a deadline).

Used by ``node.py demo`` (:mod:`learningchain.cli.demo`), the end-to-end tests and
``bench/round.py``.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import requests

from learningchain.core.errors import ConfigError, LearningChainError

ROOT = Path(__file__).resolve().parents[2]
NODE_PY = ROOT / "node.py"
STOP_SECONDS = 5.0


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) acted on: handled exactly like Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class NodeDied(LearningChainError):
    """A node process exited while the network was supposed to run."""

    def __init__(self, message: str, tail: str = ""):
        super().__init__(message)
        self.tail = tail


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


#: environment variable narrowing free_port's choice to "LO-HI" (exclusive HI): each
#: worker of a parallel test run takes its own slice, so two never pick one port.
PORT_RANGE_ENV = "LEARNINGCHAIN_PORT_RANGE"


def free_port(host: str = "127.0.0.1") -> int:
    """A port free to listen on, chosen *below* the kernel's ephemeral range:
    a port the kernel handed out with bind(0) is taken back just as readily for
    an outgoing connection (gossip opens many) before the node binds it."""
    low, _ = _ephemeral_range()
    first, last = 20000, max(low, 20001)
    narrowed = os.environ.get(PORT_RANGE_ENV, "")  # e.g. "20000-26383": parallel test workers take apart
    if narrowed:
        try:
            a, b = (int(x) for x in narrowed.split("-"))
            if 1024 <= a < b <= 65535:
                first, last = a, b
        except ValueError:
            pass
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(first, last)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class NodeProc:
    index: int
    port: int
    data_dir: Path
    log_path: Path
    args: list[str]
    pubkey: str = ""
    popen: subprocess.Popen | None = None
    #: the address it listens on (``--host``), and a command prefix it runs under, e.g.
    #: ``("ip", "netns", "exec", NS)``: a host of its own (tests/netns_hosts.py)
    host: str = "127.0.0.1"
    wrap: tuple[str, ...] = ()
    scheme: str = "http"  # https when it runs with --tls-cert (it then serves HTTPS only)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return f"node{self.index}"


@dataclass
class Network:
    """Node processes started and always stopped by us (a context manager).

    ``signals``: stop signals noted by the owner's handler (the demo's
    :func:`deferred_signals` for its whole run): :meth:`check_alive`, called by
    every poll loop, turns the first into :class:`Stopped` at a point where no
    process is half started."""
    out: Path
    python: str = sys.executable
    nodes: list[NodeProc] = field(default_factory=list)
    signals: list[int] = field(default_factory=list)

    def start(self, index: int, *, port: int | None = None, peers=(), dataset=None, genesis=None,
              mine: bool = False, workers: int = 1, attack: str | None = None,
              data_dir: Path | None = None, extra=(), host: str | None = None, wrap=()) -> NodeProc:
        port = port or free_port()
        data_dir = Path(data_dir or self.out / "nodes" / f"node{index}")
        data_dir.mkdir(parents=True, exist_ok=True)
        args = ["run", "--data-dir", str(data_dir), "--port", str(port)] + (["--host", host] if host else [])
        if peers:
            args += ["--peers", ",".join(peers)]
        if dataset:
            args += ["--data", str(dataset)]
        if genesis:
            args += ["--genesis", str(genesis)]
        if mine:
            args += ["--mine", "--workers", str(workers)]
        if attack:
            args += ["--attack", attack]
        from learningchain.node.keyfile import load_or_create_key
        pubkey = load_or_create_key(data_dir).public_hex  # so we know who must answer on the port
        args += list(extra)
        node = NodeProc(index, port, data_dir, self.out / f"node{index}.log", args, pubkey,
                        host=host or "127.0.0.1", wrap=tuple(wrap), scheme="https" if "--tls-cert" in args else "http")
        self.nodes.append(node)
        self.launch(node)
        return node

    def launch(self, node: NodeProc) -> None:
        """(Re)start the process of ``node``, appending to its log. A signal while
        the process starts is held until ``node.popen`` holds it, then delivered:
        a KeyboardInterrupt between the two would leave a node nobody stops."""
        # the node runs in the repository; the caller's working directory stays importable, so a
        # genesis naming the user's own torch module (package.module:factory) loads in the node too
        path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
        with open(node.log_path, "ab") as log, deferred_signals(message=None) as held:
            node.popen = subprocess.Popen([*node.wrap, self.python, str(NODE_PY), *node.args], cwd=str(ROOT),
                                          stdout=log, stderr=subprocess.STDOUT, env=env,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        for signum in held:  # to the handler in force again, now that the node can be stopped
            signal.raise_signal(signum)

    def check_alive(self) -> None:
        """Raise :class:`Stopped` if a stop signal was noted (``signals``), and
        :class:`NodeDied` if a node process exited."""
        if self.signals:
            raise Stopped(self.signals[0])
        for node in self.nodes:
            if node.popen is not None and node.popen.poll() is not None:
                code = node.popen.returncode
                how = (f"was killed by {signal.Signals(-code).name}" if code < 0 and -code in _SIGNALS
                       else f"exited with status {code}")
                raise NodeDied(f"{node.name} ({node.url}) {how}; its log is {node.log_path}",
                               log_tail(node.log_path))

    def stop(self, node: NodeProc, timeout: float = STOP_SECONDS, sig=signal.SIGTERM) -> None:
        p, node.popen = node.popen, None  # stopped on purpose: not a death
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def kill(self, node: NodeProc) -> None:
        """SIGKILL: no shutdown code runs (a crash)."""
        p, node.popen = node.popen, None
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(5)

    def stop_all(self, timeout: float = STOP_SECONDS) -> list[int]:
        """SIGTERM every live node, SIGKILL what is left after ``timeout``.

        Not interruptible: a second Ctrl-C (or a TERM/HUP) while it runs would
        otherwise abandon the nodes, which live in their own sessions and get no
        signal from the terminal. Returns the signals that arrived meanwhile."""
        with deferred_signals() as received:
            live = [n for n in self.nodes if n.popen is not None and n.popen.poll() is None]
            for n in live:
                n.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for n in live:
                try:
                    n.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    n.popen.kill()
                    n.popen.wait(5)
        return received

    def __enter__(self) -> "Network":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


_SIGNALS = {s.value for s in signal.Signals}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


STILL_STOPPING = "still stopping the nodes, a few seconds at most"


@contextmanager
def deferred_signals(message: str | None = STILL_STOPPING) -> Iterator[list[int]]:
    """While the block runs, SIGINT/SIGTERM/SIGHUP are recorded (in the yielded
    list) instead of interrupting it, each announced on stderr with ``message``
    (None: silently, the owner reports them when it acts on them). The handler
    only appends to a list: no exception can arrive at an arbitrary point, and
    no lock is taken inside a handler. A no-op outside the main thread, where
    Python cannot set handlers (the signals go to the main thread anyway)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum, _frame):
        received.append(signum)
        if message is None:
            return
        try:
            print(f"({signal.Signals(signum).name}: {message})", file=sys.stderr, flush=True)
        except (OSError, RuntimeError):  # the terminal is gone (SIGHUP), or a print was under way
            pass

    previous = {sig: signal.signal(sig, note) for sig in STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


# --- HTTP helpers -----------------------------------------------------------------

_session = requests.Session()
_session.trust_env = False  # local node processes: no proxy lookup in os.environ per request


def trust_ca(ca_file) -> None:
    """Verify the nodes' HTTPS certificates against ``ca_file`` (a network CA of
    ``node.py tls init``) in :func:`get` from now on."""
    _session.verify = str(ca_file)


def get(url: str, path: str, timeout: float = 3.0):
    """JSON of GET url+path, or None when unreachable or not 200."""
    try:
        resp = _session.get(url + path, timeout=timeout)
    except requests.RequestException:
        return None
    if resp.status_code != 200:
        return None
    try:
        return resp.json()
    except ValueError:
        return None


def wait_for(predicate, timeout: float, what: str, net: Network | None = None, interval=0.2):
    """Poll ``predicate()`` until it returns something truthy; raise on the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if net is not None:
            net.check_alive()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LearningChainError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_ready(net: Network, nodes: list[NodeProc], timeout: float = 30.0) -> None:
    """Until each node answers on its port *as itself* (another program on the
    port would answer with another key)."""
    def ready(n: NodeProc) -> bool:
        s = get(n.url, "/status")
        if s and s.get("pubkey") != n.pubkey:
            net.check_alive()
            time.sleep(0.3)
            net.check_alive()  # most likely our process failed to bind
            raise LearningChainError(f"{n.url} is answered by another node (pubkey "
                                     f"{str(s.get('pubkey'))[:16]}...): port {n.port} is taken")
        return bool(s)
    for n in nodes:
        wait_for(lambda n=n: ready(n), timeout, f"{n.name} to answer on {n.url}", net)


def check_ports_free(ports) -> None:
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as waitress does
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise ConfigError(f"port {port} on 127.0.0.1 is in use: choose another --base-port "
                                  f"or leave it out to use free ports") from None
