"""gzip on the wire (learningchain/node/p2p/wire.py): request bodies decoded within the
body cap by the API, replies gzipped for clients that ask, peers sending gzip
bodies and reading gzip replies under their reply cap, traffic counted as it
crossed the socket. Real nodes on 127.0.0.1; every wait polls with a deadline."""
from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from http.server import BaseHTTPRequestHandler

import pytest
import requests

from learningchain.core.encoding import canonical_json
from learningchain.learning.models import ModelSpec
from learningchain.node.p2p.peer_counters import HEADER_ESTIMATE
from learningchain.node.p2p.peers import PeerSet, max_reply_bytes
from learningchain.node.p2p.wire import (MAX_RATIO, RATIO_FLOOR, ContentEncodingError, RatioError, TooLargeError,
                                accepts_gzip, gunzip_capped, gzip_encode)
from tests.served import network_factory, send_json, serve_handler, stop_server, wait_for
from tests.helpers import KEYS, update_tx

#: softmax 32 -> 10: a tx of ~2.4 KB of canonical JSON, over the 1 KiB gzip threshold.
WIDE = ModelSpec("softmax", "classification", 32, 10, (), 0, 1, 8, 0.1).to_dict()
#: updates of ~9 KB of canonical JSON: past MIN_BYTES and RATIO_FLOOR, so gzip and its ratio rule apply.
LARGE = dict(model=ModelSpec("softmax", "classification", 160, 10, (), 0, 1, 8, 0.1).to_dict(),
             max_tx_bytes=60_000)


def gzip_bomb(size: int = 1 << 30, chunk: int = 1 << 20) -> bytes:
    """A valid single-member gzip of ``size`` zero bytes, ~1 MB, built in ~0.3 s.
    After a full flush deflate starts afresh and byte-aligned, so every further
    chunk of zeros encodes to the same bytes: compress two chunks, repeat the
    second, and write the trailer (CRC-32 and length, RFC 1952) for ``size``."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(chunk)
    head = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    end = c.flush()[:-8]
    crc = 0
    for _ in range(size // chunk):
        crc = zlib.crc32(zeros, crc)
    return head + block * (size // chunk - 1) + end + struct.pack("<II", crc, size & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb()


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


# --- the codec ---------------------------------------------------------------------------

def test_capped_gunzip_decodes_members_and_refuses_bombs_and_garbage(bomb):
    doc = b'{"a": 1}' * 500
    assert gunzip_capped(gzip_encode(doc), len(doc)) == doc  # exactly at the cap
    assert gunzip_capped(gzip_encode(doc) + gzip.compress(b"xy"), len(doc) + 2) == doc + b"xy"  # two members
    with pytest.raises(TooLargeError):
        gunzip_capped(gzip_encode(doc), len(doc) - 1)
    tracemalloc.start()
    try:
        with pytest.raises(TooLargeError):
            gunzip_capped(bomb, 4 << 20)  # 1 GB claimed, stops after 4 MiB + 1 byte
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20  # the output so far and its join, never the gigabyte
    for bad in (b"not gzip", gzip_encode(doc)[:-9], gzip_encode(doc) + b"junk", b""):
        with pytest.raises(ContentEncodingError):
            gunzip_capped(bad, 1 << 20)
    assert accepts_gzip("gzip, deflate, br") and accepts_gzip("*") and accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert not accepts_gzip(None) and not accepts_gzip("gzip;q=0") and not accepts_gzip("deflate, br")


# --- the API: request bodies --------------------------------------------------------------

def post(url: str, path: str, data: bytes, coding: str | None = "gzip") -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if coding:
        headers["Content-Encoding"] = coding
    return requests.post(url + path, data=data, headers=headers, timeout=30)


def test_a_gzip_tx_is_the_same_tx(network):
    a = network("a")
    tx = update_tx(a.node.chain, KEYS[0])
    r = post(a.url, "/txs", gzip_encode(canonical_json(tx.to_dict())))
    assert r.status_code == 202 and r.json() == {"status": "accepted", "id": tx.id}, r.text
    pool = requests.get(a.url + "/mempool", timeout=10).json()
    assert [(t["id"], t["size"]) for t in pool["txs"]] == [(tx.id, tx.size)]
    r = post(a.url, "/txs", canonical_json(tx.to_dict()), coding=None)  # the plain body: the same tx
    assert r.status_code == 202 and r.json() == {"status": "known", "id": tx.id}


def test_bad_gzip_bodies_are_refused_and_counted(network, bomb):
    a = network("a")
    limit = a.app.config["MAX_CONTENT_LENGTH"]
    assert len(bomb) < limit  # passes waitress's check of the wire size: the decoder must stop it
    r = post(a.url, "/blocks", bomb)  # the same decoder as above: at most `limit` + 1 bytes
    assert r.status_code == 413 and r.json() == {
        "error": f"request body decodes to more than the cap of {limit} bytes for POST /blocks",
        "reason": "body-too-large"}
    r = post(a.url, "/blocks", gzip_encode(b'{"header": 1}')[:-5])  # truncated
    assert r.status_code == 400 and r.json()["reason"] == "bad-content-encoding", r.text
    r = post(a.url, "/peers", b"\x1f\x8b not really gzip")
    assert r.status_code == 400 and r.json()["reason"] == "bad-content-encoding", r.text
    r = post(a.url, "/inv", b'{"txs": []}', coding="br")
    assert r.status_code == 415 and r.json()["reason"] == "unsupported-content-encoding", r.text
    assert "gzip" in r.json()["error"]
    r = post(a.url, "/inv", b'{"txs": []}', coding="identity")  # the no-op coding
    assert r.status_code == 200 and r.json() == {"want": []}
    assert a.status()["refused"] == {"body-too-large": 1, "bad-content-encoding": 2,
                                     "unsupported-content-encoding": 1}


# --- the API: replies --------------------------------------------------------------------

def test_replies_are_gzipped_only_for_clients_that_ask(network):
    a = network("a", model=WIDE)
    url = a.url + "/model"
    plain = requests.get(url, headers={"Accept-Encoding": "identity"}, timeout=10)
    assert "Content-Encoding" not in plain.headers and len(plain.content) > 1024
    vary = {v.strip() for v in plain.headers["Vary"].split(",")}
    assert "Accept-Encoding" in vary and "Accept" in vary  # /model also negotiates JSON or HTML
    raw = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=10, stream=True)
    wire = raw.raw.read(decode_content=False)
    assert raw.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in raw.headers["Vary"]
    assert int(raw.headers["Content-Length"]) == len(wire) < len(plain.content)
    assert gzip.decompress(wire) == plain.content
    small = requests.get(a.url + "/tip", headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert "Content-Encoding" not in small.headers  # under 1 KiB: as it is
    page = requests.get(a.url + "/", headers={"Accept-Encoding": "gzip, deflate, br",  # a browser
                                              "Accept": "text/html"}, timeout=10)
    assert page.headers["Content-Encoding"] == "gzip" and page.headers["Content-Type"].startswith("text/html")
    assert "<html" in page.text.lower()  # requests undid the gzip, as a browser does


# --- peers -----------------------------------------------------------------------------

def test_traffic_counters_count_gzip_bytes(network):
    a = network("a", model=WIDE)
    b = network("b", [a.url], model=WIDE)
    wait_for(lambda: len(a.node.peers) == 1, what="a to learn b")
    tx = update_tx(a.node.chain, KEYS[1])
    wire = len(gzip_encode(canonical_json(tx.to_dict())))
    assert tx.size > 2000 and wire < 0.8 * tx.size
    a.node.submit_tx(tx, own=True)  # pushed whole to b, gzipped
    wait_for(lambda: b.status()["mempool"] == 1, what="the tx on b")
    sent = wait_for(lambda: a.status()["traffic"]["by_type"].get("tx body"), what="a's count")
    received = b.status()["traffic"]["by_type"]["tx body"]
    assert sent["messages"] == received["messages"] == 1
    assert sent["sent"] == received["received"] == wire + HEADER_ESTIMATE  # not tx.size + 200


class OldNode:
    """A peer without gzip support: records each POST's Content-Encoding and
    answers a gzip body as a node before gzip did (415, or 400 ``bad-json``)."""

    def __init__(self, refusal: tuple[int, bytes]):
        self.codings: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                coding = self.headers.get("Content-Encoding")
                outer.codings.append(coding)
                send_json(self, *(refusal if coding else (202, b'{"status": "accepted"}')))

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        stop_server(self.server)


@pytest.mark.parametrize("refusal", [(415, b'{"error": "unsupported"}'),
                                     (400, b'{"error": "malformed JSON body", "reason": "bad-json"}')])
def test_a_peer_that_refuses_gzip_is_sent_plain_from_then_on(network, refusal):
    a = network("a", model=WIDE)
    old = OldNode(refusal)
    ps = PeerSet(a.node, "http://127.0.0.1:1", [old.url])
    try:
        doc = update_tx(a.node.chain, KEYS[2]).to_dict()
        assert ps.request(old.url, "POST", "/txs", doc) == (202, {"status": "accepted"})
        assert old.codings == ["gzip", None]  # refused, resent plain once
        assert ps.request(old.url, "POST", "/txs", doc) == (202, {"status": "accepted"})
        assert old.codings == ["gzip", None, None]  # remembered
        assert ps.snapshot()[0]["failures"] == 0
    finally:
        ps.stop()
        old.close()


class GzipPeer:
    """A peer whose every reply is ``body`` with ``Content-Encoding: gzip``."""

    def __init__(self, body: bytes):
        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass  # the client stopped reading: what a bomb should see

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server, self.url = serve_handler(Handler)

    def close(self) -> None:
        stop_server(self.server)


def test_the_reply_cap_holds_on_decoded_bytes(network, bomb):
    """A sync page may be ~10 MB, so the 1 MB bomb passes the cap on wire bytes;
    the decoder stops it at the cap. A well-formed gzip reply decodes."""
    a = network("a")
    cap = max_reply_bytes(a.node.config.max_block_bytes)
    assert len(bomb) < cap < 1 << 30
    evil, fine = GzipPeer(bomb), GzipPeer(gzip_encode(b'{"height": 0, "blocks": [], "more": false}'))
    ps = PeerSet(a.node, "http://127.0.0.1:1", [evil.url, fine.url])
    try:
        assert ps.request(evil.url, "POST", "/sync/blocks", {"locator": [], "limit": 1}) is None
        errors = {p["url"]: p["last_error"] for p in ps.snapshot()}
        # 20 x its declared 1 MB would pass the ratio rule: the cap is what stops it
        assert errors[evil.url] == f"gzip reply decodes to more than the cap of {cap} bytes"
        assert ps.request(fine.url, "POST", "/sync/blocks", {"locator": [], "limit": 1}) == (
            200, {"height": 0, "blocks": [], "more": False})
    finally:
        ps.stop()
        evil.close()
        fine.close()


# --- the ratio rule ----------------------------------------------------------------------

def json_digits(size: int) -> bytes:
    """Valid JSON of ``size`` bytes that gzip shrinks ~1,000:1 (the reviewer's body)."""
    return b'{"url":[' + b"1," * ((size - 10) // 2) + b"1]}"


def test_the_ratio_rule_refuses_bombs_and_passes_honest_bodies(network):
    a = network("a")
    tx = canonical_json(update_tx(a.node.chain, KEYS[0]).to_dict())
    assert len(tx) / len(gzip_encode(tx)) < 2  # honest: base64 weights barely compress
    assert gunzip_capped(gzip_encode(tx), 1 << 20, MAX_RATIO) == tx
    small = b" " * RATIO_FLOOR  # a tiny body may compress as it likes
    assert gunzip_capped(gzip_encode(small), 1 << 20, MAX_RATIO) == small
    with pytest.raises(RatioError):
        gunzip_capped(gzip_encode(json_digits(1 << 20)), 16 << 20, MAX_RATIO)


def test_a_small_gzip_body_cannot_cost_seconds_of_parsing(network):
    """16 KB of gzip that decodes to 16 MiB of JSON digits: /peers stops it at its
    64 KiB cap, /blocks (16 MiB cap) at 20:1; the node keeps serving."""
    from learningchain.node.web.request_input import SMALL_BODY_BYTES
    a = network("a")
    limit = a.app.config["MAX_CONTENT_LENGTH"]
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    body = z.compress(json_digits(limit)) + z.flush()
    assert len(body) < 20_000
    r = post(a.url, "/peers", body)
    assert r.status_code == 413 and r.json() == {
        "error": f"request body decodes to more than the cap of {SMALL_BODY_BYTES} bytes for POST /peers",
        "reason": "body-too-large"}
    r = post(a.url, "/blocks", body)
    assert r.status_code == 413 and r.json()["reason"] == "body-compression-ratio", r.text
    assert f"more than {MAX_RATIO} times its {len(body)} bytes" in r.json()["error"]
    r = post(a.url, "/peers", b'{"url": "' + b"x" * SMALL_BODY_BYTES + b'"}', coding=None)  # plain too
    assert r.status_code == 413 and r.json()["reason"] == "body-too-large", r.text
    r = post(a.url, "/peers", gzip_encode(canonical_json({"url": "http://127.0.0.1:6001"})))
    assert r.status_code == 200 and r.json()["status"] == "pending"  # still serving
    assert a.status()["refused"] == {"body-too-large": 2, "body-compression-ratio": 1}


def test_a_gzip_reply_over_the_ratio_is_cut(network):
    """A sync reply of a few KB that would decode to megabytes of JSON is cut."""
    a = network("a")
    evil = GzipPeer(gzip_encode(b'{"height": 0, "more": false, "blocks": [' + b"0," * (4 << 20) + b"0]}"))
    ps = PeerSet(a.node, "http://127.0.0.1:1", [evil.url])
    try:
        assert ps.request(evil.url, "POST", "/sync/blocks", {"locator": [], "limit": 1}) is None
        error = ps.snapshot()[0]["last_error"]
        assert error.startswith(f"reply cut: gzip body decodes to more than {MAX_RATIO} times"), error
    finally:
        ps.stop()
        evil.close()


def zero_update(chain, key):
    """A valid update whose weights are all zeros: its canonical JSON (base64 of
    zero bytes) compresses ~250:1, past the receivers' ratio rule."""
    from learningchain.ledger.tx import UpdateTx
    model, digest = chain.model()
    zeros = {name: (arr * 0).astype(arr.dtype) for name, arr in model.items()}
    return UpdateTx.create(key, chain.tip_state.round, digest, zeros, 10)


def test_a_sender_keeps_within_the_receivers_ratio_rule():
    """gzip_for_wire applies the receivers' rule to itself: what it encodes always
    decodes at the receiver; what would break the rule travels plain."""
    from learningchain.ledger.chain import Chain
    from learningchain.node.p2p.wire import gzip_encode, gzip_for_wire, gunzip_capped
    from tests.helpers import tiny_genesis
    chain = Chain(tiny_genesis(**LARGE))
    from learningchain.ledger.tx import UpdateTx
    import numpy as np
    model, digest = chain.model()
    rng = np.random.default_rng(0)
    trained = {name: rng.normal(0, 0.1, arr.shape).astype(arr.dtype) for name, arr in model.items()}
    honest = canonical_json(UpdateTx.create(KEYS[0], 1, digest, trained, 10).to_dict())
    assert len(honest) > RATIO_FLOOR
    zeros = canonical_json(zero_update(chain, KEYS[1]).to_dict())
    encoded = gzip_for_wire(honest)
    assert encoded is not None and gunzip_capped(encoded, 1 << 24, MAX_RATIO) == honest
    assert gzip_for_wire(zeros) is None
    with pytest.raises(RatioError):  # why: sent gzip, it would have been refused
        gunzip_capped(gzip_encode(zeros), 1 << 24, MAX_RATIO)


def test_a_very_compressible_valid_tx_and_its_block_still_travel(network):
    """A Byzantine sender may sign all-zero weights: the tx is valid, so honest
    peers must relay it and the block holding it, plain rather than gzip."""
    a = network("a", **LARGE)
    b = network("b", [a.url], **LARGE)
    wait_for(lambda: len(a.node.peers) == 1 and len(b.node.peers) == 1, what="a and b to peer")
    tx = zero_update(a.node.chain, KEYS[1])
    assert tx.size > RATIO_FLOOR
    assert a.node.submit_tx(tx) in ("accepted", "known")
    wait_for(lambda: b.status()["mempool"] == 1, what="the zero tx on b")
    block = a.mine_one()
    wait_for(lambda: b.status()["tip"] == block.hash, what="the block with the zero tx on b")
    refused = b.status().get("refused", {})
    assert "body-compression-ratio" not in refused, refused
