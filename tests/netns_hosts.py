"""Real hosts on one machine: Linux network namespaces, one node process per host.

:class:`Hosts` builds H hosts (needs root and iproute2) and always tears them down.
The network of harness ``id`` (1..250, one per running harness, so parallel test
workers never collide; see :func:`_allocate_id`):

* host ``i`` is namespace ``lcn<id>-h<i>``; its ``eth0`` holds its address
  ``A_i = 10.77.<id>.<1+i>`` (the node binds it and advertises
  ``http://A_i:PORT``; its link proxy's connections leave from it too);
* the switch namespace ``lcn<id>-sw`` holds two bridges, ``brA`` for the first
  hosts and ``brB`` for the last ``minority`` ones, joined by one veth pair, the
  *trunk* (two racks, or two sites, and the link between them):
  :meth:`Hosts.cut` sets it down (a real partition: frames stop), :meth:`Hosts.heal`
  up again;
* every host link (``eth0`` and its bridge port) is shaped with ``tc ... tbf``
  (rate limit) in both directions;
* a management link per host into the root namespace (``lcn<id>-m<i>``, the root
  side ``10.78.<id>.254``): the test process reaches every node on ``A_i`` over
  it, also while the trunk is cut. A node cannot use it to reach another host
  (no route there).

Delay and loss (``netem`` is missing from these kernels, and there is no iptables):
a *link proxy* per host, a process inside the host's namespace
(``python -m tests.netns_hosts proxy``), intercepts every connection the host
opens to another host, transparently. Inside host ``i`` every other host's
address ``A_k`` is also a local address (on ``lo``) where the proxy listens, so a
node connecting to ``http://A_k:PORT`` (given with ``--peers`` or learned from
a peer: the real advertised URL, nothing rewritten) reaches its own host's
proxy; the proxy connects from ``A_i`` (so host ``k`` sees the connection come
from host ``i``'s address, as over a real network: a node's announce names the
address it comes from) and a policy rule (``from A_i``, looked up before the
local table) sends it, and the node's answers to other hosts, out of ``eth0``
to the real ``A_k``. A node's own connections to ``A_k`` leave from ``A_k``
(the local address's source), so that rule never takes them past the proxy.
``eth0`` answers ARP only for its own address (``arp_ignore=1``; the other
hosts' MAC addresses are static neighbour entries), so no host claims
another's address on the wire. The main routing table of a host has no route
to another host's ``A_k``: nothing bypasses the proxy.

The proxy's model of a link with one-way delay ``d`` and segment loss ``p``
(honest for TCP, which never loses bytes, it stalls):

* opening a connection costs one round trip (``2 d``: SYN, SYN-ACK) before the
  first byte can travel, and with probability ``p`` the SYN is lost: +1 s, the
  initial SYN retransmission timeout of Linux;
* every chunk read from one side is delivered to the other ``d`` later, in order;
  each of its segments (1448 bytes each) is lost with probability ``p`` and then
  costs a retransmission timeout, ``RTO = 200 ms + 2 d`` (Linux's minimum RTO
  plus the round trip of the retransmission), and since TCP delivers in order
  everything behind it waits too (head-of-line blocking).

A connection is never reset by the model: an application sees what it sees
over a lossy WAN, late bytes. A partition does reset: the proxy's upstream
connect fails (no ARP answer across a cut trunk) and the proxy aborts the
accepted connection with a RST.

Only the namespaces, links and addresses made here, and loopback, are ever
targets. Stale namespaces of a crashed run (its owner process gone) are
removed when the next harness allocates an id.
"""
from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "lcn"
STATE_DIR = Path("/run/learningchain-netns")
MSS = 1448
MIN_RTO_S, SYN_RTO_S = 0.200, 1.0
CONNECT_TIMEOUT_S = 3.0
DEFAULT_PORT = 5000


class NetnsError(RuntimeError):
    pass


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def available() -> str | None:
    """None when this process can build hosts, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if sh("ip", "-V", check=False).returncode != 0:
        return "iproute2 (ip) is missing"
    return None


# --- ids: one per running harness; stale ones cleaned ---------------------------------

def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _namespaces() -> list[str]:
    out = sh("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _clean_id(ident: int) -> None:
    """Remove what harness ``ident`` made: the processes inside its namespaces
    (ours: started there by the harness), the namespaces (their veths go with
    them, and with those the root side of the management links)."""
    mine = [ns for ns in _namespaces() if ns.startswith(f"{PREFIX}{ident}-")]
    for ns in mine:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for ns in mine:
        sh("ip", "netns", "del", ns, check=False)
    for line in sh("ip", "-o", "link", "show", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(f"{PREFIX}{ident}-"):
            sh("ip", "link", "del", name, check=False)


def _allocate_id() -> int:
    """A free id, held by a lock file naming our pid; an id whose owner died is
    cleaned and taken."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for lock in STATE_DIR.glob("*.pid"):  # stale: crashed runs
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and _pid_alive(pid):
            continue
        try:
            ident = int(lock.stem)
        except ValueError:
            continue
        _clean_id(ident)
        lock.unlink(missing_ok=True)
    start = os.getpid() % 250
    for k in range(250):
        ident = 1 + (start + k) % 250
        lock = STATE_DIR / f"{ident}.pid"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        if any(ns.startswith(f"{PREFIX}{ident}-") for ns in _namespaces()):
            _clean_id(ident)  # left by a run whose lock file is gone
        return ident
    raise NetnsError(f"no free harness id in {STATE_DIR}")


# --- the hosts -----------------------------------------------------------------------

class Hosts:
    """H hosts on this machine (a context manager: always torn down, also at exit).

    ``minority``: the last hosts on bridge ``brB`` (what :meth:`cut` separates);
    ``rate``: tbf rate of every host link; ``delay_ms`` / ``loss``: the link
    proxy's model (module docstring); ``port``: every node's port (each host
    has its own addresses, so they all use the same one)."""

    def __init__(self, n: int, out: Path, *, minority: int = 0, rate: str = "20mbit", delay_ms: float = 50.0,
                 loss: float = 0.01, port: int = DEFAULT_PORT, seed: int = 0):
        if not 1 <= n <= 100 or not 0 <= minority < n:
            raise ValueError(f"bad host count {n} / minority {minority}")
        self.n, self.out, self.minority, self.rate = n, Path(out), minority, rate
        self.delay_ms, self.loss, self.port, self.seed = delay_ms, loss, port, seed
        self.id: int | None = None
        self.proxies: dict[int, subprocess.Popen] = {}
        self._up = False

    # names and addresses
    def ns(self, i: int) -> str:
        return f"{PREFIX}{self.id}-h{i}"

    @property
    def switch(self) -> str:
        return f"{PREFIX}{self.id}-sw"

    def addr(self, i: int) -> str:
        return f"10.77.{self.id}.{1 + i}"

    @property
    def mgmt(self) -> str:
        return f"10.78.{self.id}.254"

    def url(self, i: int, scheme: str = "http") -> str:
        return f"{scheme}://{self.addr(i)}:{self.port}"

    def wrap(self, i: int) -> tuple[str, ...]:
        """The command prefix that runs a program on host ``i``."""
        return ("ip", "netns", "exec", self.ns(i))

    def side(self, i: int) -> str:
        return "brB" if i >= self.n - self.minority else "brA"

    # building
    def __enter__(self) -> "Hosts":
        why = available()
        if why:
            raise NetnsError(why)
        self.id = _allocate_id()
        atexit.register(self.close)
        try:
            self._build()
            self._start_proxies()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        self._up = True
        sw = self.switch
        sh("ip", "netns", "add", sw)
        sh("ip", "-n", sw, "link", "set", "lo", "up")
        for br in ("brA", "brB"):
            sh("ip", "-n", sw, "link", "add", br, "type", "bridge")
            sh("ip", "-n", sw, "link", "set", br, "up")
        sh("ip", "-n", sw, "link", "add", "trunkA", "type", "veth", "peer", "name", "trunkB")
        for end, br in (("trunkA", "brA"), ("trunkB", "brB")):
            sh("ip", "-n", sw, "link", "set", end, "master", br)
            sh("ip", "-n", sw, "link", "set", end, "up")
        for i in range(self.n):
            self._build_host(i)
        # static neighbours: a host cannot learn another's MAC by ARP, its address is local here too
        macs = [json.loads(sh("ip", "-n", self.ns(i), "-j", "link", "show", "eth0").stdout)[0]["address"]
                for i in range(self.n)]
        for i in range(self.n):
            for k in range(self.n):
                if k != i:
                    sh("ip", "-n", self.ns(i), "neigh", "add", self.addr(k), "lladdr", macs[k], "dev", "eth0",
                       "nud", "permanent")

    def _build_host(self, i: int) -> None:
        ns, sw, a = self.ns(i), self.switch, self.addr(i)
        sh("ip", "netns", "add", ns)
        n = ("ip", "-n", ns)
        sh(*n, "link", "set", "lo", "up")
        # the host's link into the switch
        sh("ip", "-n", sw, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", sw, "link", "set", f"p{i}", "master", self.side(i))
        sh("ip", "-n", sw, "link", "set", f"p{i}", "up")
        # eth0 answers ARP for its own addresses only, and accepts packets from the others' addresses,
        # which are local here too (the proxy's): else they would be dropped as martians
        for key, value in (("arp_ignore", "1"), ("arp_announce", "2"), ("accept_local", "1"), ("rp_filter", "0")):
            sh("ip", "netns", "exec", ns, "sh", "-c", f"echo {value} > /proc/sys/net/ipv4/conf/eth0/{key}")
        sh(*n, "addr", "add", f"{a}/32", "dev", "eth0")
        sh(*n, "link", "set", "eth0", "up")
        # what leaves from A_i (the proxy's connections, the node's answers) goes out of eth0,
        # looked up before the local table (where the other hosts' addresses are ours)
        sh(*n, "route", "add", f"10.77.{self.id}.0/24", "dev", "eth0", "src", a, "table", "100")
        sh(*n, "rule", "add", "pref", "100", "from", a, "lookup", "100")
        sh(*n, "rule", "add", "pref", "200", "lookup", "local")
        sh(*n, "rule", "del", "pref", "0")
        for k in range(self.n):  # every other host's address, intercepted by our proxy
            if k != i:
                sh(*n, "addr", "add", f"{self.addr(k)}/32", "dev", "lo")
        # shaping, both directions of the host link
        for dev_ns, dev in ((ns, "eth0"), (sw, f"p{i}")):
            sh("ip", "netns", "exec", dev_ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", self.rate,
               "burst", "32kbit", "latency", "400ms")
        # management link: the test process (root namespace) reaches A_i
        m = f"{PREFIX}{self.id}-m{i}"
        sh("ip", "link", "add", m, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
        sh("ip", "addr", "add", f"{self.mgmt}/32", "dev", m)
        sh("ip", "link", "set", m, "up")
        sh("ip", "route", "add", f"{a}/32", "dev", m, "src", self.mgmt)
        sh(*n, "link", "set", "mgmt0", "up")
        sh(*n, "route", "add", f"{self.mgmt}/32", "dev", "mgmt0", "src", a)

    def _start_proxies(self) -> None:
        for i in range(self.n):
            self.start_proxy(i, wait=False)
        for i in self.proxies:
            self._wait_proxy(i)

    def start_proxy(self, i: int, wait: bool = True) -> None:
        """Host ``i``'s link proxy: listens on every other host's address (local
        here), forwards with the link model; prints one line once it listens."""
        (self.out / "proxy").mkdir(parents=True, exist_ok=True)
        routes = [f"{self.addr(k)}:{self.port}" for k in range(self.n) if k != i]
        if not routes:
            return
        argv = [*self.wrap(i), sys.executable, "-m", "tests.netns_hosts", "proxy", "--source", self.addr(i),
                "--delay-ms", str(self.delay_ms), "--loss", str(self.loss),
                "--seed", str(self.seed * 1000 + i + 100 * len(self.stats_files(i))),
                "--stats", str(self.out / "proxy" / f"h{i}-{len(self.stats_files(i))}.json"), *routes]
        with open(self.out / "proxy" / f"h{i}.log", "ab") as log:
            self.proxies[i] = subprocess.Popen(argv, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=log,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
        if wait:
            self._wait_proxy(i)

    def _wait_proxy(self, i: int) -> None:
        line = self.proxies[i].stdout.readline()
        if not line.startswith(b"listening"):
            raise NetnsError(f"the link proxy of host {i} did not start: {line!r}; see {self.out / 'proxy'}")

    def stats_files(self, i: int) -> list[Path]:
        return sorted((self.out / "proxy").glob(f"h{i}-*.json"))

    def stop_proxy(self, i: int, sig=signal.SIGTERM) -> None:
        p = self.proxies.pop(i, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if p.stdout:
            p.stdout.close()

    # partitions
    def cut(self) -> None:
        """The trunk down: brA's hosts and brB's hosts cannot reach each other."""
        sh("ip", "-n", self.switch, "link", "set", "trunkA", "down")

    def heal(self) -> None:
        sh("ip", "-n", self.switch, "link", "set", "trunkA", "up")

    def unplug(self, i: int) -> None:
        """Host ``i``'s cable out of the switch (its own configuration stays)."""
        sh("ip", "-n", self.switch, "link", "set", f"p{i}", "down")

    def plug(self, i: int) -> None:
        sh("ip", "-n", self.switch, "link", "set", f"p{i}", "up")

    def proxy_stats(self) -> dict:
        """The link proxies' counters, summed over hosts (each writes its own
        file every second and when it stops)."""
        total: dict = {}
        for f in sorted((self.out / "proxy").glob("h*-*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            for k, v in doc.items():
                total[k] = total.get(k, 0) + v
        return total

    def stop_proxies(self) -> None:
        for i in list(self.proxies):
            self.stop_proxy(i)

    def close(self) -> None:
        """Stop the proxies, delete every namespace (and so every link) made here,
        release the id. Idempotent. The caller stops its nodes first (a process
        left inside is killed: it was started in our namespace)."""
        if self.id is None:
            return
        self.stop_proxies()
        if self._up:
            _clean_id(self.id)
            self._up = False
        (STATE_DIR / f"{self.id}.pid").unlink(missing_ok=True)
        atexit.unregister(self.close)
        self.id = None


# --- nodes on the hosts ------------------------------------------------------------------

def tls_init(hosts: Hosts, out: Path) -> Path:
    """``node.py tls init`` for the hosts' nodes (certificates for their
    addresses, bound to the keys in ``out/nodes/node<i>``): the directory."""
    from learningchain.cli.processes import NODE_PY
    tls_dir = out / "tls"
    dirs = [str(out / "nodes" / f"node{i}") for i in range(hosts.n)]
    proc = subprocess.run([sys.executable, str(NODE_PY), "tls", "init", "--out", str(tls_dir), "--nodes",
                           str(hosts.n), "--hosts", *(hosts.addr(i) for i in range(hosts.n)), "--data-dirs", *dirs],
                          capture_output=True, text=True, cwd=str(ROOT), timeout=60)
    if proc.returncode != 0:
        raise NetnsError(f"node.py tls init failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return tls_dir


def tls_flags(tls_dir: Path | None, i: int) -> tuple[str, ...]:
    if tls_dir is None:
        return ()
    return ("--tls-cert", str(tls_dir / f"node{i}.pem"), "--tls-key", str(tls_dir / f"node{i}.key"),
            "--tls-ca", str(tls_dir / "ca.pem"))


def start_nodes(net, hosts: Hosts, files, genesis: Path, miners: int, extra=(), tls_dir: Path | None = None):
    """Node ``i`` on host ``i``, bound to its address: node 0 (a miner) first,
    then the others peered with node 0, in parallel (as ``node.py demo``'s
    start_network does on loopback); they learn each other from its peer list.
    ``tls_dir`` (:func:`tls_init`): every node serves HTTPS and talks HTTPS to
    its peers, and this process trusts the network CA for its own requests."""
    from learningchain.cli.processes import trust_ca, wait_ready
    scheme = "http"
    if tls_dir is not None:
        trust_ca(tls_dir / "ca.pem")
        scheme = "https"

    def start(i: int, peers):
        return net.start(i, port=hosts.port, host=hosts.addr(i), wrap=hosts.wrap(i), peers=peers,
                         dataset=files[i], genesis=genesis, mine=i < miners, extra=(*extra, *tls_flags(tls_dir, i)))
    first = start(0, [])
    wait_ready(net, [first], timeout=60)
    rest = [start(i, [hosts.url(0, scheme)]) for i in range(1, hosts.n)]
    wait_ready(net, rest, timeout=60)
    return net.nodes


def network_files(out: Path, n: int, *, quorum: int | None = None, block_ms: int | None = None,
                  round_timeout: int | None = None):
    """The demo's genesis (:func:`learningchain.cli.demo.make_config`: fedavg, the
    digits MLP, quorum ``n`` unless ``quorum``) over ``n`` IID partitions, the
    node keys created where :meth:`Network.start` looks for them and
    allow-listed; returns (partition files, genesis path, config)."""
    import dataclasses

    from learningchain.cli.demo import make_config, partitions_for, write_genesis
    from learningchain.ledger.genesis import permissioned
    from learningchain.learning.models import default_spec
    from learningchain.node.keyfile import load_or_create_key
    part_dir = partitions_for("digits", n, out)
    config = make_config(n, "digits", "fedavg", 0, round_timeout=round_timeout, block_ms=block_ms,
                         spec=default_spec("digits"))
    if quorum:
        config = dataclasses.replace(config, quorum=quorum)
    keys = [load_or_create_key(out / "nodes" / f"node{i}").public_hex for i in range(n)]
    config = permissioned(config, keys)
    return [part_dir / f"node{i}.npz" for i in range(n)], write_genesis(config, out / "genesis.json"), config


# --- the link proxy (runs inside a host's namespace) -------------------------------------

class LinkModel:
    def __init__(self, delay_ms: float, loss: float, seed: int):
        self.delay, self.loss, self.rng = delay_ms / 1000.0, loss, random.Random(seed)
        self.stats = {"connections": 0, "syn_lost": 0, "chunks": 0, "segments": 0, "segments_lost": 0,
                      "bytes": 0, "refused": 0}

    def handshake_s(self) -> float:
        lost = self.rng.random() < self.loss
        self.stats["syn_lost"] += lost
        return 2 * self.delay + (SYN_RTO_S if lost else 0.0)

    def chunk_stall_s(self, size: int) -> float:
        segments = max(1, -(-size // MSS))
        lost = sum(self.rng.random() < self.loss for _ in range(segments))
        self.stats["chunks"] += 1
        self.stats["segments"] += segments
        self.stats["segments_lost"] += lost
        self.stats["bytes"] += size
        return lost * (MIN_RTO_S + 2 * self.delay)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, model: LinkModel) -> None:
    """Forward one direction: each chunk delivered ``delay`` (plus its stalls)
    after it was read, never before the chunk ahead of it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    async def deliver() -> None:
        while True:
            at, data = await queue.get()
            await asyncio.sleep(max(0.0, at - loop.time()))
            if data is None:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(deliver())
    last = 0.0
    try:
        while True:
            data = await reader.read(65536)
            at = max(last, loop.time() + model.delay + (model.chunk_stall_s(len(data)) if data else 0.0))
            last = at
            queue.put_nowait((at, data or None))
            if not data:
                break
        await sender
    finally:
        sender.cancel()


async def _connection(client_r, client_w, target: tuple[str, int], source: str, model: LinkModel) -> None:
    model.stats["connections"] += 1
    upstream_w = None
    try:
        await asyncio.sleep(model.handshake_s())
        try:
            up_r, upstream_w = await asyncio.wait_for(
                asyncio.open_connection(*target, local_addr=(source, 0)), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            model.stats["refused"] += 1
            client_w.transport.abort()  # RST: the peer is unreachable (a cut link)
            return
        a = asyncio.create_task(_pump(client_r, upstream_w, model))
        b = asyncio.create_task(_pump(up_r, client_w, model))
        done, pending = await asyncio.wait({a, b}, return_when=asyncio.FIRST_EXCEPTION)
        if any(t.exception() for t in done if not t.cancelled()):
            for t in pending:
                t.cancel()
            client_w.transport.abort()
            upstream_w.transport.abort()
        else:
            await asyncio.gather(*pending, return_exceptions=True)
    except (OSError, asyncio.CancelledError):
        client_w.transport.abort()
        if upstream_w is not None:
            upstream_w.transport.abort()
    finally:
        for w in (client_w, upstream_w):
            if w is not None:
                w.close()


async def _serve(args) -> None:
    model = LinkModel(args.delay_ms, args.loss, args.seed)
    servers = []
    for spec in args.routes:
        host, port = spec.rsplit(":", 1)
        target = (host, int(port))
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: _connection(r, w, t, args.source, model), host, int(port), reuse_address=True))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on {' '.join(args.routes)}", flush=True)

    def save() -> None:
        if args.stats:
            tmp = Path(args.stats + ".tmp")
            tmp.write_text(json.dumps(model.stats))
            tmp.replace(args.stats)
    while not stop.is_set():
        save()
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
    for s in servers:
        s.close()
    save()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.netns_hosts")
    sub = p.add_subparsers(dest="cmd", required=True)
    px = sub.add_parser("proxy", help="the link proxy of one host (run inside its namespace)")
    px.add_argument("--source", required=True, help="address the upstream connections leave from")
    px.add_argument("--delay-ms", type=float, default=50.0)
    px.add_argument("--loss", type=float, default=0.01)
    px.add_argument("--seed", type=int, default=0)
    px.add_argument("--stats", help="file to write the counters to on exit")
    px.add_argument("routes", nargs="+", metavar="ADDR:PORT", help="listen here, forward to the same address")
    args = p.parse_args(argv)
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Hosts", "NetnsError", "available", "start_nodes", "network_files", "tls_init"]
