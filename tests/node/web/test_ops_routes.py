"""The ops routes (:mod:`learningchain.node.web.ops_routes`) over a real Node through
Flask's test client: /healthz and /readyz answer, /metrics is Prometheus text, and the
admin endpoints answer 403 ``admin-only`` to clients outside ``--admin-allow``
(the client address set with ``environ_base`` REMOTE_ADDR), the miner token still required."""
from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from learningchain.node.logs import OpsSettings
from learningchain.node.service import Node
from tests.helpers import tiny_config
from tests.node.web.api_client import mine_via_api, miner_client, post, started_node


@pytest.fixture
def node(tmp_path):
    yield from started_node(tmp_path)


def client_from(node, addr: str, token: bool = True):
    c = miner_client(node)
    c.environ_base["REMOTE_ADDR"] = addr
    if not token:
        del c.environ_base["HTTP_X_MINER_TOKEN"]
    return c


def test_healthz_and_readyz_of_a_node_without_peers(node):
    c = miner_client(node)
    r = c.get("/healthz")
    assert r.status_code == 200 and r.get_json()["status"] == "alive" and r.get_json()["port"] == 5999
    r = c.get("/readyz")  # no peers, genesis only: nothing to catch up with
    doc = r.get_json()
    assert r.status_code == 200 and doc["status"] == "ready" and doc["height"] == 0 and doc["peers"] == 0
    node.stop_event.set()
    r = c.get("/readyz")
    assert r.status_code == 503 and r.get_json()["reason"] == "stopping" and r.get_json()["error"]
    assert "stopping" not in c.get("/status").get_json()["refused"]  # a probe is not a refusal


def test_metrics_is_prometheus_text_of_this_node(node):
    c = miner_client(node)
    r = c.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    fams = {f.name: f for f in text_string_to_metric_families(r.get_data(as_text=True))}
    assert fams["lc_height"].type == "gauge" and fams["lc_height"].samples[0].value == 0
    assert fams["lc_train_seconds"].type == "histogram" and fams["lc_refusals"].type == "counter"
    mine_via_api(c)
    fams = {f.name: f for f in text_string_to_metric_families(c.get("/metrics").get_data(as_text=True))}
    assert fams["lc_height"].samples[0].value == 1
    mined = {s.labels["miner"]: s.value for s in fams["lc_blocks_mined"].samples if s.name.endswith("_total")}
    assert mined == {"builtin": 0, "standalone": 1}
    r = c.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.mimetype == "application/openmetrics-text" and r.get_data(as_text=True).endswith("# EOF\n")


@pytest.mark.parametrize("addr", ["10.1.2.3", "192.168.0.7", "2001:db8::1"])
def test_admin_endpoints_refuse_other_addresses_even_with_the_token(node, addr):
    c = client_from(node, addr)
    r = c.get("/mining/template")
    assert r.status_code == 403 and r.get_json()["reason"] == "admin-only", r.get_json()
    for path, doc in (("/mining/submit", {"template_id": "ab", "nonce": 1}),
                      ("/mining/wait", {"template_id": "ab", "timeout": 0}),
                      ("/peers", {"url": "http://127.0.0.1:6001"})):
        r = post(c, path, doc)
        assert r.status_code == 403 and r.get_json()["reason"] == "admin-only", (path, r.get_json())
    assert c.get("/status").get_json()["refused"]["admin-only"] == 4
    assert c.get("/tip").status_code == 200 and c.get("/peers").status_code == 200  # the rest serves


def test_loopback_keeps_the_token_check(node):
    for addr in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"):
        r = client_from(node, addr, token=False).get("/mining/template")
        assert r.status_code == 403 and r.get_json()["reason"] == "mining-forbidden"
        assert client_from(node, addr).get("/mining/template").status_code == 200


def test_a_peer_may_announce_itself_from_its_own_address(node):
    c = client_from(node, "10.1.2.3", token=False)
    r = post(c, "/peers", {"url": "http://10.1.2.3:5000"})
    assert r.status_code == 200 and r.get_json()["status"] == "pending"
    r = post(c, "/peers", {"url": "http://10.1.2.4:5000"})  # another host: admin-only
    assert r.status_code == 403 and r.get_json()["reason"] == "admin-only"
    # a name (a pod's DNS name): taken on condition, off the request thread: the handshake
    # admits it only if the name resolves to the caller (localhost is 127.0.0.1, not 10.1.2.3)
    r = post(c, "/peers", {"url": "http://localhost:6002"})
    assert r.status_code == 200 and r.get_json()["status"] in ("pending", "peer-handshake-failed")
    peers = node.peers
    deadline = time.monotonic() + 10
    while "http://localhost:6002" not in peers._handshake_failed and time.monotonic() < deadline:
        time.sleep(0.02)  # polling the handshake worker's verdict, with a deadline
    assert "http://localhost:6002" in peers._handshake_failed and "http://localhost:6002" not in peers.urls()
    assert peers.name_problem("http://localhost:6002", "127.0.0.1") is None  # what a local caller would pass
    assert "not to the caller 10.1.2.3" in peers.name_problem("http://localhost:6002", "10.1.2.3")


@pytest.mark.parametrize("allow, ok, refused", [
    ("10.0.0.0/8", ["10.1.2.3"], ["127.0.0.1", "192.168.0.7"]),
    ("loopback,192.168.0.0/24", ["127.0.0.1", "192.168.0.7"], ["10.1.2.3", "192.168.1.7"]),
    ("any", ["10.1.2.3", "2001:db8::1", "127.0.0.1"], []),
    ("2001:db8::/32", ["2001:db8::1"], ["10.1.2.3", "2001:db9::1"]),
])
def test_admin_allow_lists(tmp_path, allow, ok, refused):
    n = Node(tmp_path / "n", tiny_config(), quiet=True, port=5998, ops=OpsSettings.parse(admin_allow=allow))
    try:
        for addr in ok:
            assert client_from(n, addr).get("/mining/template").status_code == 200, addr
        for addr in refused:
            r = client_from(n, addr).get("/mining/template")
            assert r.status_code == 403 and r.get_json()["reason"] == "admin-only", addr
            assert allow in r.get_json()["error"]
    finally:
        n.stop()
