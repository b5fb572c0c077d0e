"""/metrics, /healthz and /readyz of real nodes (:mod:`learningchain.node.metrics`): a
node behind waitress on its own port, scraped over HTTP and parsed with
prometheus-client's own text parser; the values follow the node (height after a
block, a refusal under its reason, tx / block / aggregate timings), two nodes in one
process keep their own registries; the readiness rule."""
from __future__ import annotations

from types import SimpleNamespace
import threading

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from learningchain.cli.processes import free_port
from learningchain.node.metrics import READY_LAG_BLOCKS, readiness
from tests.helpers import KEYS, update_tx
from tests.served import network_factory, wait_for


@pytest.fixture
def network(tmp_path):
    yield from network_factory(tmp_path)


def scrape(url: str) -> dict:
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(r.text)}


def value(fams: dict, family: str, sample: str | None = None, **labels) -> float:
    for s in fams[family].samples:
        if s.name == (sample or family) and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, sample, labels))


TYPES = {"lc_height": "gauge", "lc_round": "gauge", "lc_mempool_txs": "gauge", "lc_peers": "gauge",
         "lc_hash_rate_hps": "gauge", "lc_ready": "gauge", "lc_refusals": "counter", "lc_wire_bytes": "counter",
         "lc_blocks_mined": "counter", "lc_blocks_accepted": "counter", "lc_train_seconds": "histogram",
         "lc_validate_seconds": "histogram", "lc_aggregate_seconds": "histogram",
         "lc_evaluate_seconds": "histogram"}


def test_metrics_of_a_real_node_follow_it(network):
    a = network("a")
    b = network("b", peers=(a.url,))
    fams = scrape(a.url)
    assert {name: fams[name].type for name in TYPES} == TYPES
    assert value(fams, "lc_height") == 0 and value(fams, "lc_round") == 1  # rounds count from 1
    assert "lc_dp_epsilon_spent" not in fams  # no differential privacy here

    for key in KEYS[:3]:  # the quorum of tiny_config: the next block closes round 1
        tx = update_tx(a.node.chain, key)
        assert requests.post(a.url + "/txs", json=tx.to_dict(), timeout=10).status_code == 202
    fams = scrape(a.url)
    assert value(fams, "lc_mempool_txs") == 3
    assert value(fams, "lc_validate_seconds", "lc_validate_seconds_count", kind="tx") == 3

    a.mine_one()
    fams = scrape(a.url)
    assert value(fams, "lc_height") == 1 and value(fams, "lc_round") == 2 and value(fams, "lc_mempool_txs") == 0
    assert value(fams, "lc_aggregate_seconds", "lc_aggregate_seconds_count") == 1
    assert value(fams, "lc_validate_seconds", "lc_validate_seconds_count", kind="closing_block") == 1
    assert value(fams, "lc_blocks_accepted", "lc_blocks_accepted_total") == 1
    a.mine_one()
    assert value(scrape(a.url), "lc_height") == 2

    r = requests.post(a.url + "/txs", json={"not": "a tx"}, timeout=10)
    reason = r.json()["reason"]
    assert r.status_code == 400 and reason
    fams = scrape(a.url)
    assert value(fams, "lc_refusals", "lc_refusals_total", reason=reason) == a.status()["refused"][reason]

    # the peer: its own registry, the blocks gossiped or synced, bytes on the wire both ways
    wait_for(lambda: value(scrape(b.url), "lc_height") == 2, 20, "b at height 2")
    fb = scrape(b.url)
    assert value(fb, "lc_aggregate_seconds", "lc_aggregate_seconds_count") == 0  # a built nothing
    assert value(fb, "lc_peers") == 1 and value(fb, "lc_ready") == 1
    traffic = b.status()["traffic"]
    got = {d: sum(s.value for s in fb["lc_wire_bytes"].samples if s.labels["direction"] == d)
           for d in ("in", "out")}
    assert got["in"] > 0 and got["out"] > 0
    assert got["in"] <= traffic["received"] and got["out"] <= traffic["sent"]  # read live: it only grows
    assert value(fb, "lc_node_info", port=str(b.port)) == 1


def test_probes_of_a_real_node(network):
    dead = f"http://127.0.0.1:{free_port()}"  # a peer that never answers
    a = network("a", peers=())
    b = network("b", peers=(dead,))
    r = requests.get(a.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "alive"
    r = requests.get(a.url + "/readyz", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ready" and r.json()["peers"] == 0
    # b's only peer is down: once its first tip poll failed, b serves alone and is ready
    doc = wait_for(lambda: (lambda r: r.status_code == 200 and r.json())(
        requests.get(b.url + "/readyz", timeout=10)), 20, "b ready")
    assert doc["peers"] == 1 and doc["answering"] == 0

    # probes stay quick while the node lock is held (a long validation): they never take it
    held, release = threading.Event(), threading.Event()

    def hold():
        with a.node.lock:
            held.set()
            release.wait(20)
    threading.Thread(target=hold, daemon=True).start()
    held.wait(5)
    try:
        for path in ("/healthz", "/readyz"):
            assert requests.get(a.url + path, timeout=5).status_code == 200
    finally:
        release.set()


def fake(height: int, peers: list[dict], stopping: bool = False, penalized=()):
    return SimpleNamespace(
        chain=SimpleNamespace(tip_entry=SimpleNamespace(height=height)),
        peers=SimpleNamespace(snapshot=lambda: peers, sync_penalized=lambda url: url in penalized),
        stop_event=SimpleNamespace(is_set=lambda: stopping))


def peer(url="http://10.0.0.2:5000", height=None, failures=0, ahead=True):
    return {"url": url, "height": height, "failures": failures, "ahead": ahead}


@pytest.mark.parametrize("height, peers, kw, reason", [
    (0, [], {}, None),  # genesis, no peers yet
    (10, [peer(height=10 + READY_LAG_BLOCKS)], {}, None),  # within the lag
    (10, [peer(height=11 + READY_LAG_BLOCKS)], {}, "syncing"),
    (10, [peer(height=500, failures=2), peer("http://10.0.0.3:5000", height=10)], {}, None),  # stale claim
    (10, [peer(height=500)], {"penalized": ("http://10.0.0.2:5000",)}, None),  # broke sync rules
    (10, [peer(height=10 ** 9, ahead=False)], {}, None),  # a height claimed with no more work than ours
    (0, [peer()], {}, "starting"),  # not polled yet
    (0, [peer(failures=1)], {}, None),  # down: we serve alone
    (10, [], {"stopping": True}, "stopping"),
])
def test_readiness_rule(height, peers, kw, reason):
    verdict = readiness(fake(height, peers, **kw))
    assert verdict.reason == reason and verdict.ready is (reason is None)
    doc = verdict.doc()
    assert doc["height"] == height and (("error" in doc) is (reason is not None))


def test_epsilon_spent_and_training_time_hidden_under_dp(tmp_path):
    """A DP node shows lc_dp_epsilon_spent (as /status -> privacy) and keeps its training
    time out of lc_train_seconds (it grows with its data-set size); a plain node times it."""
    from learningchain.node.service import Node
    from learningchain.node.threads import participate_once
    from learningchain.node.web.api import create_app
    from tests.helpers import tiny_config
    from tests.node.test_service import write_partition
    data = write_partition(tmp_path)
    roles = {"dp": dict(dp_sigma=2.0, dp_clip=0.5), "plain": {}}
    nodes = {name: Node(tmp_path / name, tiny_config(), dataset_path=data, quiet=True, port=5990 + i, **kw)
             for i, (name, kw) in enumerate(roles.items())}
    dp, plain = nodes["dp"], nodes["plain"]
    try:
        got = {}
        for n in nodes.values():
            participate_once(n)  # trains, signs and submits round 1 (a DP node: noised and accounted)
            c = create_app(n).test_client()
            got[n] = ({f.name: f for f in text_string_to_metric_families(c.get("/metrics").get_data(as_text=True))},
                      c.get("/status").get_json())
        fams, status = got[dp]
        assert status["privacy"]["epsilon"] > 0
        assert value(fams, "lc_dp_epsilon_spent") == pytest.approx(status["privacy"]["epsilon"])
        assert value(fams, "lc_train_seconds", "lc_train_seconds_count") == 0
        fams, status = got[plain]
        assert "lc_dp_epsilon_spent" not in fams and status["privacy"] is None
        assert value(fams, "lc_train_seconds", "lc_train_seconds_count") == 1
        assert value(fams, "lc_validate_seconds", "lc_validate_seconds_count", kind="tx") == 1  # its own update
    finally:
        for n in nodes.values():
            n.stop()
