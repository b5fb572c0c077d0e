"""The mining routes (:mod:`learningchain.node.web.mining_routes`) over a real Node
through Flask's test client: only the holder of the node's miner token gets
templates, each miner keeps its own, and a solved template extends the chain."""
from __future__ import annotations

import pytest

from miner.pow import search
from tests.node.web.api_client import mine_via_api, miner_client, post, started_node
from tests.helpers import KEYS, update_tx


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def client(node):
    return miner_client(node)


def test_mining_routes_need_the_token_the_node_wrote(node, client):
    """/mining/* answer only a holder of <data-dir>/miner.token (0600, new at each start)."""
    import stat
    path = node.data_dir / "miner.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    outsider = client.application.test_client()
    for headers in ({}, {"X-Miner-Token": "0" * 64}, {"X-Miner-Token": token[:-1]}):
        r = outsider.get("/mining/template", headers=headers)
        assert r.status_code == 403 and r.get_json()["reason"] == "mining-forbidden"
        r = post(outsider, "/mining/submit", {"template_id": "ab", "nonce": 1}, headers=headers)
        assert r.status_code == 403 and r.get_json()["reason"] == "mining-forbidden"
    assert outsider.get("/status").get_json()["refused"]["mining-forbidden"] == 6
    r = outsider.get("/mining/template", headers={"X-Miner-Token": token})
    assert r.status_code == 200 and r.get_json()["height"] == 1


def test_each_mining_client_keeps_its_own_templates(client):
    """A token holder polling hard evicts only its own templates, not another miner's."""
    first = client.get("/mining/template", headers={"X-Miner-Id": "a"}).get_json()
    for _ in range(100):
        client.get("/mining/template", headers={"X-Miner-Id": "b"})
    t = first
    nonce, _ = search(bytes.fromhex(t["prefix"]), int(t["target"], 16), 0, 1 << 32)
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": nonce},
             headers={"X-Miner-Id": "a"})
    assert r.status_code == 202 and r.get_json()["status"] == "connected", r.get_json()


def test_template_mine_submit_extends_the_chain(client, node):
    tx = update_tx(node.chain, KEYS[0])
    assert post(client, "/txs", tx.to_dict()).status_code == 202
    t = client.get("/mining/template").get_json()
    assert set(t) == {"template_id", "height", "prev_hash", "prefix", "target"}
    assert t["height"] == 1 and t["prev_hash"] == node.genesis.hash and len(t["prefix"]) == 362
    done = mine_via_api(client)
    assert done["status"] == "connected"
    s = client.get("/status").get_json()
    assert s["height"] == 1 and s["tip"] == done["hash"] and s["mempool"] == 0
    assert client.get(f"/txs/{tx.id}").get_json()["block"] == done["hash"]
    # the old template is now stale, an unknown one is refused
    r = post(client, "/mining/submit", {"template_id": t["template_id"], "nonce": 0})
    assert r.status_code == 400 and r.get_json()["reason"] == "template-stale"
    r = post(client, "/mining/submit", {"template_id": "nope", "nonce": 0})
    assert r.status_code == 400 and r.get_json()["reason"] == "template-unknown"
    r = post(client, "/mining/submit", {"template_id": "nope", "nonce": -1})
    assert r.status_code == 400 and r.get_json()["reason"] == "bad-nonce"


def test_mining_wait_answers_when_the_template_goes_stale(client, node):
    """POST /mining/wait is a long-poll (issue 13): current after its timeout,
    stale the moment a tx reaches a template that had none, or the tip moves."""
    import threading
    t = client.get("/mining/template").get_json()
    r = post(client, "/mining/wait", {"template_id": t["template_id"], "timeout": 0.05})
    assert r.status_code == 200 and r.get_json() == {"stale": False}  # nothing happened
    answer = {}
    waiter = threading.Thread(target=lambda: answer.update(
        r=post(client.application.test_client(), "/mining/wait", {"template_id": t["template_id"], "timeout": 30},
               headers={"X-Miner-Token": client.environ_base["HTTP_X_MINER_TOKEN"]}).get_json()))
    waiter.start()
    assert post(client, "/txs", update_tx(node.chain, KEYS[0]).to_dict()).status_code == 202
    waiter.join(20)
    assert not waiter.is_alive() and answer["r"] == {"stale": True}  # woken by the tx, not the 30 s timeout
    t2 = client.get("/mining/template").get_json()
    mine_via_api(client)  # the tip moves: every template so far is stale
    assert post(client, "/mining/wait", {"template_id": t2["template_id"], "timeout": 30}).get_json() == {"stale": True}
    assert post(client, "/mining/wait", {"template_id": "nope", "timeout": 1}).get_json() == {"stale": True}


def test_mining_wait_refuses_bad_input_and_too_many_waiters(client, node):
    t = client.get("/mining/template").get_json()
    for doc in ({"template_id": 5}, {"template_id": t["template_id"], "timeout": 31},
                {"template_id": t["template_id"], "timeout": "1"}, {"template_id": t["template_id"], "timeout": True}):
        r = post(client, "/mining/wait", doc)
        assert r.status_code == 400 and set(r.get_json()) == {"error", "reason"}
    from learningchain.node.service import MAX_MINING_WAITS
    node.mining_waits = MAX_MINING_WAITS  # as if that many long-polls held their threads now
    r = post(client, "/mining/wait", {"template_id": t["template_id"], "timeout": 1})
    assert r.status_code == 429 and r.get_json()["reason"] == "mining-busy"
    node.mining_waits = 0
