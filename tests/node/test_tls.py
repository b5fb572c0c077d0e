"""TLS between peers (learningchain/node/tls.py, the HTTPS server channel and
client): real in-process nodes behind the real waitress server on 127.0.0.1
over HTTPS, certificates bound to chain keys, impostors refused on both sides,
plain-HTTP clients answered cleanly, and the connection guard on TLS sockets.
Every wait polls with a deadline."""
from __future__ import annotations

import socket
import ssl
import threading

import pytest
import requests

from learningchain.cli.processes import free_port
from learningchain.core import crypto
from learningchain.node import keyfile, tls
from learningchain.node.p2p.httpclient import BoundedSession
from learningchain.node.web.api import create_app
from learningchain.node.web.http_server import create_http_server, serve_until
from tests.helpers import KEYS, update_tx
from tests.served import Served, wait_for


class Claiming:
    """A chain key that claims ``victim``'s public key: it signs with another
    key (``signer``) or replays a signature the victim made for its own
    certificate (``replay``). What an impostor with a CA certificate can do."""

    def __init__(self, victim: str, signer: crypto.PrivateKey | None = None, replay: str | None = None):
        self.public_hex, self.address = victim, crypto.address(victim)
        self._signer, self._replay = signer, replay

    def sign_digest(self, digest: bytes) -> str:
        return self._replay or self._signer.sign_digest(digest)


def _write(root, name, key, cert, ca_cert):
    for suffix, data, secret in ((".pem", tls.cert_pem(cert), False), (".key", tls.key_pem(key), True)):
        tls.write_file(root / f"{name}{suffix}", data, secret)
    ca = root / f"{name}-ca.pem"
    tls.write_file(ca, tls.cert_pem(ca_cert))
    return tls.TlsConfig(str(root / f"{name}.pem"), str(root / f"{name}.key"), str(ca))


@pytest.fixture
def pki(tmp_path):
    """Certificates for nodes a and b (bound to their data dirs' keys) and three
    impostors of a: CA-signed with a replayed binding, CA-signed with the
    impostor's own chain key's signature, and bound right but from another CA."""
    ca_key, ca = tls.new_ca("test")
    certs, pems = {}, {}
    for name in ("a", "b", "mallory"):
        chain_key = keyfile.load_or_create_key(tmp_path / name)
        key, cert = tls.issue_node_cert(ca_key, ca, chain_key, ["127.0.0.1", "localhost"], name)
        certs[name] = _write(tmp_path, name, key, cert, ca)
        pems[name] = (chain_key, cert)
    victim = pems["a"][0].public_hex
    _pub, a_signature = tls.decode_binding(pems["a"][1].extensions.get_extension_for_oid(tls.BINDING_OID).value.value)
    for name, claim in (("replayed", Claiming(victim, replay=a_signature)),
                        ("own-signature", Claiming(victim, signer=pems["mallory"][0]))):
        key, cert = tls.issue_node_cert(ca_key, ca, claim, ["127.0.0.1"], name)
        certs[name] = _write(tmp_path, name, key, cert, ca)
    key, cert = tls.issue_node_cert(ca_key, ca, pems["a"][0], ["10.9.9.9", "a.example"], "wrong-name")
    certs["wrong-name"] = _write(tmp_path, "wrong-name", key, cert, ca)  # a's, for other names only
    other_key, other_ca = tls.new_ca("other")
    key, cert = tls.issue_node_cert(other_key, other_ca, pems["mallory"][0], ["127.0.0.1"], "other-ca")
    certs["other-ca"] = _write(tmp_path, "other-ca", key, cert, other_ca)
    certs["pubkeys"] = {name: pems[name][0].public_hex for name in ("a", "b", "mallory")}
    return certs


@pytest.fixture
def served(tmp_path):
    started = []

    def start(name, tls_config, peers=()):
        started.append(Served(tmp_path, name, peers=peers, tls=tls_config))
        return started[-1]
    yield start
    for s in started:
        s.close()


def _serve(app, tls_config, **guard):
    port = free_port()
    server = create_http_server(app, "127.0.0.1", port, threads=2, tls=tls_config, **guard)
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    scheme = "https" if tls_config is not None else "http"
    return server, f"{scheme}://127.0.0.1:{port}", lambda: (stop.set(), thread.join(timeout=5))


def test_a_certificate_is_bound_to_its_chain_key_and_impostors_are_not(pki):
    from cryptography import x509
    cert_of = {name: x509.load_pem_x509_certificate(open(pki[name].cert, "rb").read()) for name in pki
               if name != "pubkeys"}
    assert tls.chain_identity(cert_of["a"]) == pki["pubkeys"]["a"]
    assert tls.claimed_identity(cert_of["replayed"]) == pki["pubkeys"]["a"]  # it claims a ...
    for impostor in ("replayed", "own-signature"):
        with pytest.raises(tls.IdentityError, match="not bound"):  # ... and cannot prove it
            tls.chain_identity(cert_of[impostor])
    with pytest.raises(tls.IdentityError, match="no certificate"):
        tls.check_binding(None)
    # load_tls refuses another node's certificate for this node, and one from another CA
    with pytest.raises(Exception, match="bound to chain key"):
        tls.load_tls(pki["a"].cert, pki["a"].key, pki["a"].ca, pubkey=pki["pubkeys"]["b"])
    with pytest.raises(Exception, match="not signed by|do not fit"):
        tls.load_tls(pki["other-ca"].cert, pki["other-ca"].key, pki["a"].ca)
    assert tls.load_tls(pki["a"].cert, pki["a"].key, pki["a"].ca, pubkey=pki["pubkeys"]["a"]) == pki["a"]


def test_a_block_and_an_update_propagate_between_two_tls_nodes(served, pki):
    a = served("a", pki["a"])
    b = served("b", pki["b"], peers=[a.url])
    assert a.url.startswith("https://") and a.node.url == a.url
    wait_for(lambda: any(p["url"] == b.url for p in a.node.peers.snapshot()),
             what="a to learn b over TLS (b announced itself)")
    # each side proved the other's chain identity on its TLS connections
    wait_for(lambda: a.node.peers._handshake_session.identity(b.url) == pki["pubkeys"]["b"],
             what="b's identity on a's side")
    block = a.mine_one()
    wait_for(lambda: b.node.chain.tip.hash == block.hash, what="the block on b")
    b.node.submit_tx(update_tx(b.node.chain, KEYS[2]))
    wait_for(lambda: a.status()["mempool"] == 1, what="the update on a")
    assert b.node.peers._session.identity(a.url) == pki["pubkeys"]["a"]
    # mutual TLS: a's server verified b's client certificate and its binding too
    wait_for(lambda: pki["pubkeys"]["b"] in {getattr(c, "peer_identity", None)
                                             for c in list(a.server.active_channels.values())},
             what="b's identity on a's server")


def test_clients_without_the_network_ca_or_with_a_bad_certificate_are_refused(served, pki):
    a = served("a", pki["a"])
    with pytest.raises(requests.exceptions.SSLError):  # the system's CAs do not know ours
        requests.get(a.url + "/tip", timeout=5)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(a.url + "/tip", timeout=5, verify=pki["other-ca"].ca)
    # hostname verification: a's own certificate, but for other names than the address used
    _server, url, stop = _serve(create_app(a.node), pki["wrong-name"])
    try:
        with pytest.raises(requests.exceptions.SSLError, match="match"):
            requests.get(url + "/tip", timeout=5, verify=a.tls.ca)
    finally:
        stop()
    # a client certificate from another CA fails the handshake; a CA-signed one that claims a's
    # chain key is refused after it; the node counts both and keeps serving
    for impostor in ("other-ca", "replayed", "own-signature"):
        with pytest.raises(requests.ConnectionError):
            requests.get(a.url + "/tip", timeout=5, verify=a.tls.ca, cert=pki[impostor].client_cert)
    # (a failed handshake's alert may reach the client before the node's loop counts it)
    wait_for(lambda: a.node.refused["tls-handshake"] >= 1 and a.node.refused["tls-identity"] == 2,
             what="the refusals counted")
    # without a client certificate (a browser, node.py status) the API answers
    assert requests.get(a.url + "/tip", timeout=5, verify=a.tls.ca).status_code == 200


def test_a_plain_http_client_gets_a_json_refusal_and_the_node_keeps_serving(served, pki):
    a = served("a", pki["a"])
    r = requests.get(a.url.replace("https://", "http://") + "/status", timeout=5)
    assert r.status_code == 400 and r.json()["reason"] == "tls-required" and "HTTPS" in r.json()["error"]
    with socket.create_connection(("127.0.0.1", a.port), timeout=5) as raw:
        raw.sendall(b"garbage that is no TLS\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    assert a.node.refused["tls-required"] == 2
    from prometheus_client.parser import text_string_to_metric_families
    metrics = requests.get(a.url + "/metrics", timeout=5, verify=a.tls.ca).text  # /metrics over TLS counts them
    refusals = {s.labels["reason"]: s.value for f in text_string_to_metric_families(metrics)
                if f.name == "lc_refusals" for s in f.samples}
    assert refusals["tls-required"] == 2
    with requests.Session() as s:  # and over TLS, many requests on one kept-alive connection
        s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides s.verify
        s.verify, s.cert = a.tls.ca, a.tls.client_cert
        assert all(s.get(a.url + "/tip", timeout=5).status_code == 200 for _ in range(30))
        # a body of many TLS records (more than one read): read whole, answered in JSON
        size = a.app.config["MAX_CONTENT_LENGTH"]  # the largest body reaches the app
        assert size > 4 * 16384  # TLS records carry 16 KiB at most
        r = s.post(a.url + "/blocks", data=b" " * size, headers={"Content-Type": "application/json"}, timeout=10)
        assert r.status_code == 400 and r.json()["reason"] == "bad-json"


def test_impostor_servers_are_refused_by_a_tls_peer(served, pki):
    """A server with a CA certificate that claims a's chain key (replayed or own
    signature), or one from another CA: the peer's request fails on connect and
    the handshake of an offered peer fails, so the impostor never joins."""
    a = served("a", pki["a"])
    session = BoundedSession((1.0, 3.0), 3.0, 1 << 16, tls=pki["b"])
    try:
        for impostor in ("replayed", "own-signature", "other-ca"):
            _server, url, stop = _serve(create_app(a.node), pki[impostor])
            try:
                with pytest.raises(requests.exceptions.SSLError, match="bound|verify failed"):
                    session.request("GET", url + "/tip")
                assert session.identity(url) is None
                assert a.node.peers.handshake_problem(url) == "SSLError"
            finally:
                stop()
        _server, url, stop = _serve(create_app(a.node), pki["wrong-name"])  # a's, for other names
        try:
            with pytest.raises(requests.exceptions.SSLError, match="match"):
                session.request("GET", url + "/tip")
        finally:
            stop()
        assert session.request("GET", a.url + "/tip").status == 200  # the real a is fine
        assert session.identity(a.url) == pki["pubkeys"]["a"]
        # a plain-HTTP node of the same network (offered by anyone, by peer exchange): a TLS node
        # would gossip to it in the clear, and it proves no identity: refused before any request
        _server, url, stop = _serve(create_app(a.node), None)
        try:
            assert url.startswith("http://")
            assert a.node.peers.handshake_problem(url) == "a http peer of a https node (peers share one scheme)"
        finally:
            stop()
    finally:
        session.close()


def test_the_connection_guard_closes_idle_and_stalled_tls_sockets(served, pki):
    """Mute sockets are evicted over the per-IP cap, a handshake that stalls is
    closed at the header deadline, an idle TLS connection at the idle timeout,
    and fresh TLS clients are answered throughout."""
    a = served("a", pki["a"])
    server, url, stop = _serve(create_app(a.node), pki["a"], per_ip=4, total=6)
    server.header_seconds = 1
    server.adj.channel_timeout = 1  # idle between requests (IDLE_SECONDS in production)
    port = int(url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=pki["a"].ca)
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(10)]
        stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello's first bytes, then nothing
        done = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                   server_hostname="127.0.0.1")  # a full handshake, then silence
        for _ in range(3):
            assert requests.get(url + "/tip", timeout=5, verify=pki["a"].ca).status_code == 200
        wait_for(lambda: len(server.active_channels) <= 4, 5, "at most 4 connections from 127.0.0.1")
        assert server.evicted_connections >= 7
        stalled.settimeout(5)
        assert stalled.recv(1) == b""
        try:
            assert done.recv(1) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass  # closed without a close_notify: the same end
        assert requests.get(url + "/tip", timeout=5, verify=pki["a"].ca).status_code == 200
        for s in idle:
            s.close()
    finally:
        stop()
