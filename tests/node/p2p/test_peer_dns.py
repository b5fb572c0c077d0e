"""Peers found through DNS (peer_dns.py): a --peers name with several addresses
(a Kubernetes headless Service) is one pinned peer per address, followed as pods
come and go. The resolver is a table of names here: no DNS is asked, and the
addresses (TEST-NET-1, 192.0.2.0/24) are never contacted: the table is driven by
hand, with no sync loop."""
from __future__ import annotations

import pytest

from learningchain.core.errors import ConfigError
from learningchain.node.p2p.peer_dns import address_url, is_dns_name, resolve_addresses
from learningchain.node.p2p.peers import PeerSet
from tests.served import network_factory, stop_sync_loop, wait_for

SEED = "http://lc-nodes.lab.svc:5000"


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


class Names:
    """A resolver answering from a table; a name missing from it does not resolve."""

    def __init__(self, **names: list[str]):
        self.names = {k.replace("_", "-"): v for k, v in names.items()}
        self.asked: list[str] = []

    def set(self, name: str, addresses: list[str]) -> None:
        self.names[name] = addresses

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return list(self.names[host])


@pytest.fixture
def host(network):
    """A real node as the peer set's host (its log, config, data dir); its own sync loop stopped."""
    a = network("a")
    stop_sync_loop(a)
    return a.node


def peer_set(host, names: Names, self_url="http://lc-node-0.lc-nodes.lab.svc:5000", peers=(SEED,)) -> PeerSet:
    return PeerSet(host, self_url, list(peers), resolver=names)


def test_a_name_with_several_addresses_is_one_peer_per_address_without_us(host):
    names = Names(**{"lc-nodes.lab.svc": ["192.0.2.10", "192.0.2.11", "192.0.2.12", "2001:db8::5"],
                     "lc-node-0.lc-nodes.lab.svc": ["192.0.2.10"]})  # our own pod
    ps = peer_set(host, names, peers=(SEED, "http://127.0.0.1:5001"))
    try:
        assert set(ps.urls()) == {SEED, "http://127.0.0.1:5001"}  # before the first resolution: the name
        changes = ps.resolve_seeds()
        expected = {"http://192.0.2.11:5000", "http://192.0.2.12:5000", "http://[2001:db8::5]:5000"}
        assert set(ps.urls()) == expected | {"http://127.0.0.1:5001"}  # not us (192.0.2.10), not the name
        assert changes == {SEED: (sorted(expected), [SEED])}
        rows = {p["url"]: p for p in ps.snapshot()}
        assert rows["http://192.0.2.11:5000"]["source"] == "DNS lc-nodes.lab.svc"
        assert rows["http://127.0.0.1:5001"]["source"] == "command line"
        assert ps.seeds() == {SEED: sorted(expected)}
        assert ps.resolve_seeds() == {}  # nothing changed
    finally:
        ps.stop()


def test_pods_that_come_and_go_are_followed_and_a_failed_lookup_keeps_the_peers(host):
    names = Names(**{"lc-nodes.lab.svc": ["192.0.2.11", "192.0.2.12"]})
    ps = peer_set(host, names, self_url="http://192.0.2.10:5000")
    try:
        ps.resolve_seeds()
        assert set(ps.urls()) == {"http://192.0.2.11:5000", "http://192.0.2.12:5000"}
        names.set("lc-nodes.lab.svc", ["192.0.2.12", "192.0.2.13", "192.0.2.14"])  # pod 11 gone, two new
        assert ps.resolve_seeds() == {SEED: (["http://192.0.2.13:5000", "http://192.0.2.14:5000"],
                                             ["http://192.0.2.11:5000"])}
        assert set(ps.urls()) == {f"http://192.0.2.{i}:5000" for i in (12, 13, 14)}
        del names.names["lc-nodes.lab.svc"]  # DNS down: what the name stood for stays
        assert ps.resolve_seeds() == {}
        assert set(ps.urls()) == {f"http://192.0.2.{i}:5000" for i in (12, 13, 14)}
        # one address left: an ordinary host, the name itself (its TLS name)
        names.set("lc-nodes.lab.svc", ["192.0.2.14"])
        ps.resolve_seeds()
        assert ps.urls() == [SEED]
    finally:
        ps.stop()


def test_the_peer_dns_thread_resolves_again_and_finds_new_pods(host):
    names = Names(**{"lc-nodes.lab.svc": ["192.0.2.11", "192.0.2.12"]})
    ps = peer_set(host, names, self_url="http://192.0.2.10:5000")
    ps.dns_seconds = 0.05  # instead of 30 s
    try:
        ps.start_dns()  # only the DNS thread: no sync loop contacts these addresses
        wait_for(lambda: set(ps.urls()) == {"http://192.0.2.11:5000", "http://192.0.2.12:5000"},
                 what="the first resolution")
        names.set("lc-nodes.lab.svc", ["192.0.2.11", "192.0.2.12", "192.0.2.13"])
        wait_for(lambda: "http://192.0.2.13:5000" in ps.urls(), what="the new pod to be found")
    finally:
        ps.stop()
    assert not ps._dns_thread.is_alive()


def test_an_https_seed_names_each_address_by_its_confirmed_reverse_name(host):
    """A pod's certificate names its host, not its address: over HTTPS an address
    becomes its PTR name when that name resolves back to it (a forged PTR does not)."""
    names = Names(**{"lc-nodes.lab.svc": ["192.0.2.11", "192.0.2.12", "192.0.2.13"],
                     "lc-node-1.lc-nodes.lab.svc": ["192.0.2.11"], "bank.example": ["198.51.100.1"]})
    ptr = {"192.0.2.11": "lc-node-1.lc-nodes.lab.svc.", "192.0.2.12": "bank.example"}  # .13: no PTR
    asked = []

    def reverse(address):
        asked.append(address)
        return ptr.get(address)
    seed = "https://lc-nodes.lab.svc:5000"
    ps = PeerSet(host, "https://192.0.2.10:5000", [seed], resolver=names, reverse=reverse)
    try:
        ps.resolve_seeds()
        assert set(ps.urls()) == {"https://lc-node-1.lc-nodes.lab.svc:5000", "https://192.0.2.12:5000",
                                  "https://192.0.2.13:5000"}
        ps.resolve_seeds()
        assert sorted(asked) == ["192.0.2.11", "192.0.2.12", "192.0.2.13"]  # asked once per address
    finally:
        ps.stop()
    http = peer_set(host, names, self_url="http://192.0.2.10:5000")
    try:
        http.resolve_seeds()
        assert len(asked) == 3 and "http://192.0.2.11:5000" in http.urls()  # plain HTTP: the addresses
    finally:
        http.stop()


def test_ip_literals_and_localhost_are_not_resolved_and_urls_keep_scheme_and_port(host):
    names = Names()
    ps = peer_set(host, names, self_url="http://127.0.0.1:5000",
                  peers=("http://127.0.0.1:5001", "http://localhost:5002", "https://[2001:db8::1]:443"))
    try:
        assert ps.resolve_seeds() == {} and names.asked == [] and ps.seeds() == {}
    finally:
        ps.stop()
    assert not is_dns_name("localhost") and not is_dns_name("10.0.0.1") and is_dns_name("lc-nodes")
    assert address_url("https://lc-nodes:8443", "fd00::7") == "https://[fd00::7]:8443"
    assert address_url("https://lc-nodes", "10.1.2.3") == "https://10.1.2.3"
    assert resolve_addresses("127.0.0.1", 5000) == ["127.0.0.1"]  # the real resolver; a numeric host asks no DNS


def test_a_node_tells_its_peers_its_advertised_url(tmp_path):
    """--advertise-url: what the node puts in X-Peer, its announce and /peers, and
    what its table knows as itself; the default stays http://HOST:PORT. The peer
    is a recorder on 127.0.0.1 (a real node would handshake with node3.lab)."""
    import json
    import time
    from http.server import BaseHTTPRequestHandler

    from learningchain.node.service import Node
    from learningchain.node.web.api import create_app
    from tests.helpers import tiny_config
    from tests.served import send_json, serve_handler, stop_server
    seen = []

    class Recorder(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("X-Peer"), json.loads(body)))
            send_json(self, 200, b'{"added": true, "peers": []}')

        def log_message(self, *args):
            pass
    server, url = serve_handler(Recorder)
    b = Node(tmp_path / "b", tiny_config(), peers=[url], port=5999, quiet=True,
             advertise_url="https://node3.lab:5000")
    try:
        assert b.url == b.peers.self_url == "https://node3.lab:5000"
        assert create_app(b).test_client().get("/peers").get_json()["self"] == "https://node3.lab:5000"
        assert b.peers.admit("https://node3.lab:5000") == "self"
        b.peers._announce_one(url, time.monotonic())  # what the peer loop's announce does for each peer
        assert seen == [("/peers", "https://node3.lab:5000", {"url": "https://node3.lab:5000"})]
    finally:
        b.stop()
        stop_server(server)
    default = Node(tmp_path / "c", tiny_config(), port=5998, quiet=True)
    default.stop()
    assert default.url == "http://127.0.0.1:5998"
    with pytest.raises(ConfigError, match="--advertise-url"):
        Node(tmp_path / "d", tiny_config(), host="0.0.0.0", port=5997, quiet=True)
