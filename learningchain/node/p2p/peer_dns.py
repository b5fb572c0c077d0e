"""Peers found through DNS: a ``--peers`` URL whose host name has several addresses is one peer per address.

A Kubernetes headless Service (``http://lc-nodes.lab.svc:5000``) is a DNS name
with one A/AAAA record per ready pod. Asking the name itself would reach a
different pod every time, so such a *DNS seed* stands in the table for one
pinned peer per address, same scheme and port (``http://10.1.2.3:5000``), and
is resolved again every :data:`DNS_SECONDS`: a new pod joins, a pod that is
gone leaves the table. A name with one address stays as it is (an ordinary
host, ``https://node3.lab:5000``: the TLS name its certificate carries); our own
addresses (the host of our advertised URL, resolved too) are left out, so a
pod does not peer with itself. A lookup that fails keeps what the name stood
for before (logged once): DNS that hiccups never empties the table.

Over HTTPS a peer's certificate names hosts, and a pod's address is not known
when its certificate is made: an ``https`` seed's address is therefore named by
its reverse (PTR) name when that name resolves back to the address
(forward-confirmed reverse DNS; a StatefulSet pod behind a headless Service has
``lc-node-1.lc-nodes.lab.svc.cluster.local``), else it stays the address.

Only names given on the command line are resolved, by the node's own thread
(``peer-dns``); names learned from peers never are (:func:`peer_urls.host_groups`:
a lookup per offer would be a cost anyone could impose). IP literals and
``localhost`` are not seeds. The resolver is injectable (tests: a table of
names, no DNS).
"""
from __future__ import annotations

import ipaddress
import socket
import threading
from typing import Callable, Iterable
from urllib.parse import urlsplit

from learningchain.node.p2p.peer_urls import normalize

#: seconds between two resolutions of every DNS seed.
DNS_SECONDS = 30.0

#: ``(host, port) -> addresses``; raises OSError when the name does not resolve.
Resolver = Callable[[str, int], list[str]]
#: ``address -> its PTR name``, None without one.
ReverseResolver = Callable[[str], "str | None"]


def resolve_addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` has (A and AAAA records, or the hosts file), each once, in the resolver's order."""
    out: list[str] = []
    for *_rest, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 scope (fe80::1%eth0) has no place in a URL
        if address not in out:
            out.append(address)
    return out


def reverse_name(address: str) -> str | None:
    """The PTR name of ``address``, or None."""
    try:
        return socket.gethostbyaddr(address)[0]
    except OSError:
        return None


def is_dns_name(host: str) -> bool:
    """A host to resolve: not an IP literal, not ``localhost``."""
    host = host.lower()
    if not host or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def address_url(url: str, address: str) -> str:
    """``url`` with its host replaced by ``address`` (same scheme and port)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    return normalize(f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else ""))


class DnsSeeds:
    """Mixed into :class:`~learningchain.node.p2p.peers.PeerSet` (uses its ``_lock``,
    ``_peers``, ``_stop``, ``self_url``, ``add``, ``node``)."""

    def _init_dns(self, pinned: Iterable[str], resolver: Resolver | None,
                  reverse: ReverseResolver | None = None) -> None:
        self._resolve = resolver or resolve_addresses
        self._reverse = reverse or reverse_name
        self._names: dict[str, str | None] = {}  # address -> its confirmed reverse name (https seeds)
        self.dns_seconds = DNS_SECONDS
        given = {normalize(u) for u in pinned}
        #: DNS seed -> the table URLs it stands for now (at first: the name itself)
        self._seeds: dict[str, frozenset[str]] = {
            u: frozenset({u}) for u in given if is_dns_name(urlsplit(u).hostname or "")}
        #: the other --peers URLs: a seed never removes them
        self._literal = given - set(self._seeds)
        self._dns_failing: set[str] = set()
        self._dns_thread: threading.Thread | None = None

    def seeds(self) -> dict[str, list[str]]:
        """Every DNS seed and the peers it stands for now (``/peers``, tests)."""
        with self._lock:
            return {seed: sorted(urls) for seed, urls in self._seeds.items()}

    def _own_addresses(self) -> set[tuple[str, int]]:
        host = urlsplit(self.self_url).hostname or ""
        port = _port(self.self_url)
        if not is_dns_name(host):
            return {(host, port)}
        try:
            return {(a, port) for a in self._resolve(host, port)}
        except OSError:
            return set()

    def resolve_seeds(self) -> dict[str, tuple[list[str], list[str]]]:
        """Resolve every seed once and bring the table in line: seed -> (added, removed)."""
        changes, seen = {}, set()
        own = self._own_addresses() if self._seeds else set()
        for seed in list(self._seeds):
            host, port = urlsplit(seed).hostname or "", _port(seed)
            try:
                addresses = self._resolve(host, port)
                if not addresses:
                    raise OSError("no address")
            except OSError as exc:
                if seed not in self._dns_failing:
                    self._dns_failing.add(seed)
                    self.node.log(f"peers: cannot resolve {host} ({exc}); keeping "
                                  f"{', '.join(sorted(self._seeds[seed])) or 'no peer'} for it")
                continue
            self._dns_failing.discard(seed)
            others = [a for a in addresses if (a, port) not in own]
            seen.update(others)
            if len(addresses) == 1 and others:
                wanted = frozenset({seed})  # one host: the name itself
            elif seed.startswith("https:"):  # named as its certificate can name it
                wanted = frozenset(address_url(seed, self._confirmed_name(a, port) or a) for a in others)
            else:
                wanted = frozenset(address_url(seed, a) for a in others)
            change = self._apply_seed(seed, wanted)
            if change[0] or change[1]:
                changes[seed] = change
                self.node.log(f"peers of {host} (DNS, {len(wanted)}): "
                              + ", ".join([f"+{u}" for u in change[0]] + [f"-{u}" for u in change[1]]))
        for address in set(self._names) - seen:
            del self._names[address]  # a pod gone: its name is asked again if the address comes back
        return changes

    def _confirmed_name(self, address: str, port: int) -> str | None:
        """``address``'s reverse name if that name resolves back to it (cached while the address is listed)."""
        if address not in self._names:
            name = (self._reverse(address) or "").rstrip(".").lower()
            try:
                confirmed = is_dns_name(name) and address in self._resolve(name, port)
            except OSError:
                confirmed = False
            self._names[address] = name if confirmed else None
        return self._names[address]

    def _apply_seed(self, seed: str, wanted: frozenset[str]) -> tuple[list[str], list[str]]:
        with self._lock:
            before = self._seeds.get(seed, frozenset())
            self._seeds[seed] = wanted
            kept = self._literal.union(*(urls for s, urls in self._seeds.items()))
            gone = [u for u in sorted(before - wanted) if u not in kept and u in self._peers]
            for url in gone:
                del self._peers[url]
        added = [u for u in sorted(wanted - before) if self.add(u, pinned=True)]
        with self._lock:
            for url in wanted:
                if url in self._peers and url != seed:
                    self._peers[url].seed = urlsplit(seed).hostname or ""
        return added, gone

    def start_dns(self) -> None:
        """The ``peer-dns`` thread: resolve every seed now and every :attr:`dns_seconds`."""
        if not self._seeds or self._dns_thread is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.resolve_seeds()
                except Exception as exc:  # noqa: BLE001 - the thread must outlive anything a resolver does
                    self.node.log(f"peers: DNS error: {type(exc).__name__}: {exc}")
                self._stop.wait(self.dns_seconds)
        self._dns_thread = threading.Thread(target=loop, name="peer-dns", daemon=True)
        self._dns_thread.start()

    def _stop_dns(self) -> None:
        if self._dns_thread is not None:
            self._dns_thread.join(timeout=5)
