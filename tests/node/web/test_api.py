"""The app of :mod:`learningchain.node.web.api` over a real Node through Flask's
test client: its JSON error handlers (unknown routes and methods, bodies over the
cap, garbage to every route, a full disk: 503) and a data dir of another network."""
from __future__ import annotations

import json

import pytest

from learningchain.core.errors import ConfigError
from learningchain.node.service import Node
from learningchain.node.web.api import create_app
from tests.node.web.api_client import miner_client, post, started_node
from tests.helpers import tiny_config


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def client(node):
    return miner_client(node)


def test_oversized_body_is_413(client):
    r = client.post("/txs", data=b"x" * (5 << 20), content_type="application/json")
    assert r.status_code == 413 and "larger than" in r.get_json()["error"]


def test_unknown_route_and_method(client):
    r = client.get("/nope")
    assert r.status_code == 404 and "error" in r.get_json()
    r = client.delete("/status")
    assert r.status_code == 405 and "DELETE" in r.get_json()["error"]
    assert client.put("/txs", data="{}", content_type="application/json").status_code == 405


GARBAGE = [{}, {"a": 1}, {"txs": "x"}, {"compact": 1}, {"compact": {"header": 1, "commitment": None, "txids": []}},
           {"header": {}, "txs": [], "commitment": None, "config": None}, {"locator": [], "limit": True},
           {"template_id": 5, "nonce": "x"}, {"url": ["x"]}, {"type": "update"}, {"txs": [1, 2]}]


def test_no_route_answers_500_to_garbage(client):
    rules = [r for r in client.application.url_map.iter_rules() if r.endpoint != "static"]
    for rule in rules:
        path = rule.rule.replace("<ref>", "x").replace("<txid>", "x").replace("<r>", "x")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            if method == "GET":
                for p in (path, path + "?start=x&limit=y&after=zz"):
                    assert client.get(p).status_code < 500, p
            for doc in GARBAGE:
                r = client.open(path, method="POST", data=json.dumps(doc), content_type="application/json")
                assert r.status_code < 500, (path, doc, r.get_data()[:200])
                assert "Traceback" not in r.get_data(as_text=True)


def test_data_dir_of_another_network_is_refused(tmp_path):
    Node(tmp_path / "d", tiny_config(), quiet=True).stop()
    with pytest.raises(ConfigError, match="another network"):
        Node(tmp_path / "d", tiny_config(network="other"), quiet=True)


def test_disk_full_refuses_blocks_with_503_and_the_node_keeps_serving(tmp_path):
    """Issue 10 item 7 through the API: a real SQLITE_FULL (max_page_count at the
    file's size) makes POST /blocks answer 503 store-write-failed, the tip stays,
    reads keep working; with space back the same block connects and a restarted
    node replays it."""
    from learningchain.ledger.chain import Chain
    from tests.helpers import next_block
    n = Node(tmp_path / "node", tiny_config(), quiet=True, port=5998)
    client = create_app(n).test_client()
    mirror = Chain(n.genesis)
    db = n.ledger.store._db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    refused = None
    for _ in range(30):  # small blocks: a few fit in the last page, then one needs a new page
        block = next_block(mirror)
        r = post(client, "/blocks", block.to_dict())
        if r.status_code != 202:
            refused = (block, r)
            break
        mirror.add_block(block, block.header.timestamp)
    assert refused is not None
    block, r = refused
    assert r.status_code == 503 and r.get_json()["reason"] == "store-write-failed", r.get_json()
    status = client.get("/status").get_json()
    assert status["height"] == mirror.height and status["tip"] == mirror.tip.hash
    assert client.get(f"/blocks/{block.hash}").status_code == 404  # never served unpersisted
    db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    r = post(client, "/blocks", block.to_dict())
    assert r.status_code == 202 and r.get_json()["status"] == "connected"
    n.stop()
    n.ledger.store.close()
    again = Node(tmp_path / "node", tiny_config(), quiet=True, port=5998)
    try:
        assert again.chain.tip.hash == block.hash
    finally:
        again.stop()


def test_a_browsers_favicon_request_is_no_refusal(client):
    """Issue 14: every page view asked /favicon.ico and /status counted unknown-route."""
    for _ in range(3):
        assert client.get("/favicon.ico").status_code == 204
    assert "unknown-route" not in client.get("/status").get_json()["refused"]


def test_printed_hints_name_the_interpreter_that_runs(tmp_path):
    """Issue 14: hints said `python node.py ...`, a traceback with the system interpreter."""
    from learningchain.cli.argtypes import node_py
    from learningchain.cli.main import load_genesis_file
    assert node_py().endswith(" node.py") and not node_py().startswith("python ")
    with pytest.raises(ConfigError) as refused:
        load_genesis_file(tmp_path / "none.json")
    assert f"'{node_py()} genesis" in str(refused.value) and "'python node.py" not in str(refused.value)


HTML = {"Accept": "text/html"}
CHROMIUM = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
                      "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"}


def test_negotiated_answers_vary_on_accept_and_pages_carry_a_csp(client):
    """One URL answers HTML or JSON by Accept: a cache must keep them apart (Vary),
    and a page may load nothing but what this node serves (CSP)."""
    from learningchain.node.web.api import CSP
    for path in ("/status", "/rounds", "/rounds/1", "/blocks/0", "/mempool", "/participants", "/peers", "/model",
                 "/search?q=0", "/blocks/zzzz"):
        for headers in (HTML, {"Accept": "application/json"}, {}):
            r = client.get(path, headers=headers)
            assert "Accept" in r.vary, (path, headers, r.headers)
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            if r.mimetype == "text/html":
                assert r.headers["Content-Security-Policy"] == CSP, path
            else:
                assert "Content-Security-Policy" not in r.headers, path
    assert "default-src 'self'" in CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP.split(
        "script-src")[1].split(";")[0]
    index = client.get("/", headers=HTML)  # HTML whatever the Accept: nothing negotiated
    assert index.headers["Content-Security-Policy"] == CSP and "Accept" not in index.vary
    for path in ("/tip", "/live", "/chain", "/rounds/1?wait=0", "/static/explorer.js"):
        r = client.get(path, headers=HTML)
        assert "Accept" not in r.vary and r.headers["X-Content-Type-Options"] == "nosniff", path
    assert client.get("/rounds/1?wait=1", headers=HTML).mimetype == "application/json"


def test_a_browser_gets_an_error_page_and_every_client_the_json_error(client):
    """/blocks/zzzz or /rounds/999 in a browser showed raw JSON. Peers and the CLI
    (requests: ``Accept: */*``) and clients sending no Accept keep the JSON."""
    from markupsafe import escape
    cases = [("/blocks/zzzz", 400, "bad-id"), ("/rounds/999", 404, None), ("/nope", 404, "unknown-route"),
             ("/txs/abcdabcd", 404, None), ("/participants/node99", 404, None)]
    for path, status, reason in cases:
        for headers in (HTML, CHROMIUM, {"Accept": "text/html"}):
            r = client.get(path, headers=headers)
            page = r.get_data(as_text=True)
            assert r.status_code == status and r.mimetype == "text/html", (path, page[:200])
            assert '<main data-page="error">' in page and '<nav id="nav">' in page and 'id="search"' in page
            assert f'data-status="{status}"' in page
            assert (f'data-reason="{reason}"' in page) if reason else "data-reason" not in page
        json_error = r.get_data(as_text=True)  # the page says what the document says
        for headers in ({"Accept": "application/json"}, {"Accept": "*/*"}, {}):
            r = client.get(path, headers=headers)
            doc = r.get_json()
            assert r.status_code == status and r.mimetype == "application/json", path
            assert set(doc) == ({"error", "reason"} if reason else {"error"}) and str(escape(doc["error"])) in json_error
            assert doc.get("reason") == reason
        assert client.get(path + "?format=json", headers=HTML).get_json()["error"]
    r = client.post("/txs", data="{", content_type="application/json", headers=HTML)  # not a page
    assert r.status_code == 400 and r.get_json()["reason"]
