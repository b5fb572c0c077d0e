"""Fuzzing the decoders and the HTTP API with hypothesis: a fixed number of
examples per test, drawn from a fixed seed (``derandomize=True``), so every run,
in CI or on a loaded laptop, tests the same inputs and a failure is reported
with its shrunk example (no wall-clock budget: one that stops testing mid-run
turns hypothesis's replay of a failure into a FlakyFailure). Arbitrary JSON and mutations of
valid documents (plain, q8- and top-k-compressed and skip updates, a block) go
through ``parse_json``, ``decode_array``, ``UpdateTx.parse`` and ``Block.parse``,
then through every POST route and GET routes with arbitrary path segments and
queries (Flask test client), and a few hundred raw requests against a node served
by waitress on 127.0.0.1. Properties: only our named error types come out of the
decoders; no response is a 500 or a traceback; nothing invalid is accepted (a
mutated signed tx or mined block is accepted only if it *is* the original)."""
from __future__ import annotations

import copy
import http.client
import json
import random
import threading
from urllib.parse import quote, urlencode

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from learningchain.node.web.api import create_app
from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.learning.compression import compress
from learningchain.core.encoding import EncodingError, decode_array, encode_array, parse_json
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import make_genesis
from learningchain.node.web.http_server import create_http_server, serve_until
from learningchain.node.service import Node
from learningchain.ledger.tx import UpdateTx
from tests.helpers import KEYS, next_block, tiny_config, update_tx

# A target where a mutated header meets its proof of work with probability 2^-16.
TARGET = 1 << 240
CONFIG = tiny_config(initial_target=TARGET, pow_limit=TARGET)


def fuzz(examples: int) -> settings:
    """Deterministic hypothesis settings: ``examples`` inputs from a fixed seed and
    no per-example deadline (a loaded machine makes runs slower, never different).
    Counts are sized so the whole file takes about 10 s."""
    return settings(max_examples=examples, derandomize=True, deadline=None,
                    suppress_health_check=list(HealthCheck))


_MIRROR = Chain(make_genesis(CONFIG))
VALID_TX = update_tx(_MIRROR, KEYS[0])
VALID_BLOCK = next_block(_MIRROR, [update_tx(_MIRROR, KEYS[1])])
VALID_ARRAY = encode_array(np.arange(6, dtype=np.float32).reshape(2, 3))


def _compressed(key, scheme: str) -> UpdateTx:
    """A signed update for round 1 whose weights travel compressed (compression.py)."""
    base, digest = _MIRROR.model()
    trained = {n: (a + np.float32(0.25) * np.sign(np.arange(a.size).reshape(a.shape) % 3 - 1)).astype(np.float32)
               for n, a in base.items()}
    encoded, _ = compress(trained, base, scheme, np.random.default_rng(0), fraction=0.5)
    return UpdateTx.create_compressed(key, 1, digest, encoded, scheme, 10)


VALID_Q8 = _compressed(KEYS[2], "q8")
VALID_TOPK = _compressed(KEYS[3], "topk")
VALID_SKIP = UpdateTx.create_skip(KEYS[4], 1, _MIRROR.model()[1], 10)
VALID_TXS = {t.id: t for t in (VALID_TX, VALID_Q8, VALID_TOPK, VALID_SKIP)}
any_valid_tx = st.sampled_from([t.to_dict() for t in VALID_TXS.values()])



json_leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
             | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40))
json_doc = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=25)


@st.composite
def mutated(draw, doc):
    """``doc`` with one node replaced by arbitrary JSON, one key dropped or one key added."""
    doc = copy.deepcopy(doc)
    paths, stack = [], [((), doc)]
    while stack:
        path, node = stack.pop()
        paths.append(path)
        if isinstance(node, dict):
            stack += [(path + (k,), v) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(path + (i,), v) for i, v in enumerate(node)]
    path = draw(st.sampled_from(sorted(paths[1:], key=repr)))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=8))] = draw(json_doc)
    else:
        parent[path[-1]] = draw(json_doc | st.sampled_from(["", "00" * 32, "ff" * 33, -1, 2**64, [], {}]))
    return doc


# --- decoders ----------------------------------------------------------------------

@fuzz(200)
@given(st.binary(max_size=300) | json_doc.map(lambda d: json.dumps(d).encode()))
def test_parse_json_raises_only_encoding_errors(data):
    try:
        parse_json(data)
    except EncodingError:
        pass


@fuzz(200)
@given(json_doc | mutated(VALID_ARRAY))
def test_decode_array_raises_only_encoding_errors(doc):
    try:
        arr = decode_array(doc)
    except EncodingError:
        return
    assert encode_array(arr) == doc  # whatever decodes is canonical


@fuzz(150)
@given(json_doc | any_valid_tx.flatmap(mutated) | any_valid_tx)
def test_tx_parse_and_check_raise_only_validation_errors(doc):
    """Plain, q8, top-k and skip updates: the contextual check decodes compressed
    weights against G(0) too (rounds.check_tx)."""
    try:
        tx = UpdateTx.parse(doc)
        tx.check(_MIRROR.expected_shapes, CONFIG.max_tx_bytes)
        _MIRROR.validate_tx(tx)
    except ValidationError:
        return
    original = VALID_TXS.get(tx.id)  # no forgery passes
    assert original is not None and tx.signature == original.signature and tx.to_dict() == original.to_dict()


@fuzz(150)
@given(json_doc | mutated(VALID_BLOCK.to_dict()))
def test_block_parse_and_add_raise_only_validation_errors(doc):
    chain = Chain(_MIRROR.genesis)
    try:
        block = Block.parse(doc)
        result = chain.add_block(block, VALID_BLOCK.header.timestamp)
    except ValidationError:
        return
    assert result.block.hash == VALID_BLOCK.hash and block.txs == VALID_BLOCK.txs


# --- the API through Flask's test client --------------------------------------------------

@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory):
    node = Node(tmp_path_factory.mktemp("fuzz") / "n", CONFIG, quiet=True, port=5997)
    yield node
    node.stop()


def _check(resp):
    assert resp.status_code < 500, resp.get_data()[:300]
    assert "Traceback" not in resp.get_data(as_text=True)
    if resp.status_code >= 400:
        assert "error" in resp.get_json()


POSTS = {"/txs": VALID_TX.to_dict(), "/txs ": VALID_Q8.to_dict(), "/txs  ": VALID_TOPK.to_dict(),
         "/txs   ": VALID_SKIP.to_dict(), "/blocks": VALID_BLOCK.to_dict(), "/peers": {"url": "http://127.0.0.1:1"},
         "/mining/submit": {"template_id": "ab" * 8, "nonce": 1}, "/sync/blocks": {"locator": [], "limit": 5},
         "/inv": {"txs": [VALID_TX.id]}}


@fuzz(120)
@given(route=st.sampled_from(sorted(POSTS)), data=st.data())
def test_post_routes_never_500_nor_accept_forgeries(fuzz_node, route, data):
    client = create_app(fuzz_node).test_client()
    doc = data.draw(json_doc | mutated(POSTS[route]))
    route = route.strip()  # "/txs" with q8, top-k and skip updates as the seeds
    resp = client.post(route, data=json.dumps(doc), content_type="application/json")
    _check(resp)
    if route == "/txs" and resp.status_code == 202:
        assert resp.get_json()["id"] in VALID_TXS
    if route == "/blocks" and resp.status_code == 202 and resp.get_json()["status"] in ("connected", "reorg", "side"):
        assert resp.get_json()["hash"] == VALID_BLOCK.hash
    if route == "/peers" and resp.status_code == 200:
        assert doc["url"].startswith(("http://", "https://"))
    with fuzz_node.lock:
        assert all(t.to_dict() == VALID_TXS[t.id].to_dict() for t in fuzz_node.ledger.mempool)
        assert fuzz_node.chain.height <= 1


ROUTES = ["/status", "/chain", "/blocks/{}", "/txs/{}", "/rounds/{}", "/mempool", "/peers", "/model",
          "/rounds", "/", "/{}", "/mining/template"]
segment = st.text(max_size=70) | st.sampled_from(["..", "../../etc/passwd", "%2e%2e%2f", "0", "00",
                                                    "-1", "²", "9" * 40, VALID_BLOCK.hash.upper()])


@fuzz(120)
@given(route=st.sampled_from(ROUTES), seg=segment,
       query=st.dictionaries(st.sampled_from(["start", "limit", "x", ""]), st.text(max_size=20), max_size=3),
       method=st.sampled_from(["GET", "GET", "POST", "PUT", "DELETE", "PATCH"]))
def test_get_routes_with_arbitrary_segments_and_queries(fuzz_node, route, seg, query, method):
    client = create_app(fuzz_node).test_client()
    path = route.format(quote(seg, safe=""))
    if query:
        path += "?" + urlencode(query)
    resp = client.open(path, method=method, data=b"{}", content_type="application/json")
    _check(resp)
    if resp.status_code == 200 and resp.mimetype == "application/json":
        resp.get_json()


# --- a few hundred requests against a node served by waitress ------------------------------

def _raw(port: int, method: str, path: str, body: bytes, ctype: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": ctype} if ctype else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_waitress_node_survives_hundreds_of_hostile_requests(tmp_path):
    from learningchain.cli.processes import free_port
    port = free_port()
    node = Node(tmp_path / "w", CONFIG, quiet=True, port=port)
    server = create_http_server(create_app(node), host="127.0.0.1", port=port, threads=4)
    stop = threading.Event()
    thread = threading.Thread(target=serve_until, args=(server, stop), daemon=True)
    thread.start()
    rng = random.Random(4)
    statuses: dict[int, int] = {}
    try:
        bodies = [json.dumps(VALID_TX.to_dict()).encode(), json.dumps(VALID_BLOCK.to_dict()).encode(),
                  b"{", b"[" * 40 + b"]" * 40, b"\xff\xfe\x00", b'{"url": "file:///etc/passwd"}',
                  b'{"template_id": "x", "nonce": 1e400}', b"9" * 5000, b"", b'{"a": NaN}']
        paths = ["/txs", "/blocks", "/peers", "/mining/submit", "/sync/blocks", "/inv", "/status",
                 "/txs/../../etc/passwd", "/blocks/%00", "/rounds/%F0%9F%98%80", "/chain?limit=%C2%B2",
                 "/nope", "/blocks/1?x=" + "a" * 2000, "//", "/model"]
        for i in range(300):
            method = rng.choice(["GET", "POST", "POST", "PUT", "DELETE"])
            body = bytearray(rng.choice(bodies))
            if body and rng.random() < 0.5:  # flip a byte
                body[rng.randrange(len(body))] = rng.randrange(256)
            ctype = rng.choice(["application/json", "application/json", "text/plain", None])
            status, data = _raw(port, method, rng.choice(paths), bytes(body), ctype)
            statuses[status] = statuses.get(status, 0) + 1
            assert status < 500, (status, data[:200])
            assert b"Traceback" not in data
        status, data = _raw(port, "GET", "/status", b"", None)
        assert status == 200 and json.loads(data)["height"] <= 1
        assert sum(json.loads(data)["refused"].values()) > 100  # refusals are counted
        with node.lock:
            assert all(t.id == VALID_TX.id for t in node.ledger.mempool)
    finally:
        stop.set()
        thread.join(timeout=5)
        node.stop()
    refusals = sum(n for code, n in statuses.items() if 400 <= code < 500)
    assert refusals > 200 and statuses.get(400, 0) > 20 and statuses.get(415, 0) > 10, statuses
