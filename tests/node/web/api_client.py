"""What the API tests share (tests/node/web/test_*.py): a real Node (real ECDSA,
real PoW, SQLite store) on a temporary data dir, a Flask test client holding the
node's miner token, JSON posts, and a block mined through ``/mining/*``."""
from __future__ import annotations

import json

from learningchain.node.service import Node
from learningchain.node.web.api import create_app
from miner.pow import search
from tests.helpers import tiny_config

HEX = "ab" * 32


def started_node(tmp_path):
    """For a ``node`` fixture (``yield from``): the node, stopped afterwards."""
    n = Node(tmp_path / "node", tiny_config(), quiet=True, port=5999)
    yield n
    n.stop()


def miner_client(node):
    """A test client of ``node``'s app that sends the token of the node's own miner."""
    app = create_app(node)
    c = app.test_client()
    c.environ_base["HTTP_X_MINER_TOKEN"] = app.config["MINER_TOKEN"]  # the node's own miner
    return c


def post(client, path, doc, **kw):
    return client.post(path, data=json.dumps(doc), content_type="application/json", **kw)


def mine_via_api(client) -> dict:
    t = client.get("/mining/template").get_json()
    nonce, _ = search(bytes.fromhex(t["prefix"]), int(t["target"], 16), 0, 1 << 32)
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": nonce})
    assert r.status_code == 202, r.get_json()
    return r.get_json()
