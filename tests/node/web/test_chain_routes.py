"""The chain inspection routes (:mod:`learningchain.node.web.chain_routes`) over a
real Node through Flask's test client: status, chain, blocks, txs, mempool, model
and rounds, with paging, and bad or unknown ids as 400/404, never 500."""
from __future__ import annotations

import pytest

from tests.node.web.api_client import HEX, mine_via_api, miner_client, post, started_node
from tests.helpers import KEYS, update_tx


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


@pytest.fixture
def client(node):
    return miner_client(node)


def test_status_and_reads(client, node):
    s = client.get("/status").get_json()
    assert s["height"] == 0 and s["round"] == 1 and s["tip"] == node.genesis.hash
    assert s["genesis"] == node.genesis.hash and s["network"] == "test"
    assert s["pubkey"] == node.pubkey and s["address"] == node.address
    assert s["mining"] is False and s["refused"] == {} and s["peers"] == 0 and s["mempool"] == 0
    chain = client.get("/chain").get_json()
    assert chain["height"] == 0 and chain["blocks"][0]["hash"] == node.genesis.hash
    by_height = client.get("/blocks/0").get_json()
    assert by_height["hash"] == node.genesis.hash
    assert client.get(f"/blocks/{node.genesis.hash}").get_json()["header"]["height"] == 0
    assert client.get("/mempool").get_json() == {"count": 0, "bytes": 0, "txs": []}
    assert client.get("/peers").get_json()["peers"] == []
    model = client.get("/model").get_json()
    assert model["round"] == 0 and model["digest"] == s["model_digest"] and "W0" in model["weights"]
    rounds = client.get("/rounds").get_json()["rounds"]
    assert rounds[0]["round"] == 1 and rounds[0]["status"] == "open"
    assert client.get("/rounds/1").get_json()["status"] == "open"
    assert client.get("/rounds/7").status_code == 404
    html = client.get("/")
    assert html.status_code == 200 and b"LearningChain explorer" in html.data


@pytest.mark.parametrize("path", ["/txs/xyz", "/txs/../etc/passwd", "/txs/..%2Fetc%2Fpasswd",
                                  "/blocks/..%2F..%2Fetc%2Fpasswd", "/blocks/" + "AB" * 32,
                                  "/txs/" + "ab" * 33, "/rounds/-1", "/rounds/x", "/chain?limit=501",
                                  "/chain?start=-4", "/blocks/zz"])
def test_bad_ids_are_400_or_404_never_500(client, path):
    r = client.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "error" in r.get_json()


def test_unknown_ids_are_404(client):
    assert client.get(f"/txs/{HEX}").status_code == 404
    assert client.get(f"/blocks/{HEX}").status_code == 404
    assert client.get("/blocks/99").status_code == 404


def test_rounds_close_and_show_up(client, node):
    for key in KEYS[:3]:  # quorum 3 closes round 1 in the next block
        assert post(client, "/txs", update_tx(node.chain, key).to_dict()).status_code == 202
    mine_via_api(client)
    rounds = client.get("/rounds").get_json()["rounds"]
    assert rounds[0]["status"] == "closed" and rounds[0]["accepted"] + rounds[0]["rejected"] == 3
    detail = client.get("/rounds/1").get_json()
    assert detail["status"] == "closed" and len(detail["updates"]) == 3 and detail["closed_at"] == 1
    assert client.get("/status").get_json()["round"] == 2
    assert client.get("/model").get_json()["round"] == 1
    assert client.get("/blocks/1", headers={"Accept": "text/html"}).data.count(b"accepted") >= 1


def test_rounds_are_paged(client, node):
    """/rounds: the newest page by default, ?start=&limit= pages, limit bounded."""
    for _ in range(12):  # tiny_config: round_timeout 5, so empty blocks close rounds 1 and 2
        mine_via_api(client)
    doc = client.get("/rounds").get_json()
    assert doc["current"] == 3 and [r["round"] for r in doc["rounds"]] == [1, 2, 3]
    assert [r["status"] for r in doc["rounds"]] == ["closed", "closed", "open"]
    assert [r["closed_at"] for r in doc["rounds"][:2]] == [5, 10]
    page = client.get("/rounds?start=2&limit=1").get_json()
    assert page["start"] == 2 and [r["round"] for r in page["rounds"]] == [2]
    assert [r["round"] for r in client.get("/rounds?limit=2").get_json()["rounds"]] == [2, 3]
    assert client.get("/rounds?start=9").get_json()["rounds"] == []
    for bad in ("limit=0", "limit=201", "start=0", "start=x"):
        r = client.get(f"/rounds?{bad}")
        assert r.status_code == 400 and r.get_json()["reason"] == "bad-query", bad


def test_rounds_wait_is_a_long_poll_answered_by_the_closing_block(client, node):
    """GET /rounds/<r>?wait=S holds the answer until round r closes (issue 13:
    the demo follows rounds by push); more waiters than MAX_ROUND_WAITS get
    the answer at once; a bad wait is 400."""
    import threading
    import time
    from learningchain.node.service import MAX_ROUND_WAITS
    assert client.get("/rounds/1?wait=31").status_code == 400
    assert client.get("/rounds/1?wait=x").get_json()["reason"] == "bad-query"
    answer = {}
    other = client.application.test_client()
    waiter = threading.Thread(target=lambda: answer.update(r=other.get("/rounds/1?wait=30").get_json()))
    waiter.start()
    deadline = time.monotonic() + 20
    while node.round_waits != 1 and time.monotonic() < deadline:  # the request is waiting in the node
        time.sleep(0.01)
    assert node.round_waits == 1
    for k in KEYS[:3]:  # tiny_config: quorum 3
        assert post(client, "/txs", update_tx(node.chain, k).to_dict()).status_code == 202
    mine_via_api(client)  # the block that carries the quorum closes round 1
    waiter.join(20)
    assert not waiter.is_alive() and answer["r"]["status"] == "closed"
    node.round_waits = MAX_ROUND_WAITS  # as if that many long-polls held their threads
    t0 = time.monotonic()
    assert client.get("/rounds/2?wait=30").get_json()["status"] == "open"  # answered at once
    assert time.monotonic() - t0 < 20
    node.round_waits = 0


def test_a_block_page_is_html_for_chromium_json_for_scripts(client, node):
    """Issue 14, item 3: Chromium's real Accept header gets the HTML page (Werkzeug's
    ``best`` picked application/signed-exchange from it); curl's */* and
    Accept: application/json get JSON; ?format= wins over the header."""
    mine_via_api(client)
    chromium = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,"
                "*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
    assert client.get("/blocks/1", headers={"Accept": chromium}).mimetype == "text/html"
    assert client.get("/blocks/1", headers={"Accept": "*/*"}).mimetype == "application/json"
    assert client.get("/blocks/1", headers={"Accept": "application/json"}).mimetype == "application/json"
    assert client.get("/blocks/1").mimetype == "application/json"
    assert client.get("/blocks/1?format=json", headers={"Accept": chromium}).mimetype == "application/json"
    assert client.get("/blocks/1?format=html").mimetype == "text/html"
