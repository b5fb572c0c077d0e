"""The index page renders whole on the server with the hooks its script and the
browser tests use (docs: /work contract, issue 14), and its two JSON documents:
/live (what the script polls) and /baselines (G0 and baselines.json)."""
from __future__ import annotations

import gzip
import json
import re
from html.parser import HTMLParser

import pytest

from learningchain.core.crypto import address
from learningchain.node.baselines_file import FILE, write_baselines
from learningchain.node.service import Node
from learningchain.node.threads import evaluate_closed_rounds
from learningchain.node.web.api import create_app
from learningchain.node.web.index_page import held_out_digest
from tests.helpers import KEYS, next_block, tiny_config, update_tx
from tests.node.test_service import write_partition


class Page(HTMLParser):
    """Every element's tag and attributes, and the text inside each element with an id."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a))
        if tag not in ("input", "br", "meta", "line", "circle", "polyline"):
            self._open.append(a.get("id"))
            if a.get("id"):
                self.text[a["id"]] = ""

    def handle_endtag(self, tag):
        if tag not in ("input", "br", "meta", "line", "circle", "polyline") and self._open:
            self._open.pop()

    def handle_data(self, data):
        for i in self._open:
            if i:
                self.text[i] += data

    def find(self, tag: str, **want) -> list[dict]:
        want = {k.rstrip("_").replace("_", "-"): v for k, v in want.items()}
        return [a for t, a in self.elements if t == tag and all(
            (v in a.get(k, "").split()) if k == "class" else a.get(k) == v for k, v in want.items())]


@pytest.fixture
def node(tmp_path):
    """A node with training data and a held-out set, round 1 closed by three listed
    senders in a block mined by KEYS[1] (node1), G0 and round 1 measured."""
    data = write_partition(tmp_path)
    cfg = tiny_config(allow_list=[k.public_hex for k in KEYS[:3]])
    n = Node(tmp_path / "n", cfg, dataset_path=data, quiet=True, port=5991, local_baseline=True)
    with n.lock:
        txs = [update_tx(n.chain, k) for k in KEYS[:3]]
        blk = next_block(n.chain, txs, miner=KEYS[1])
    assert n.submit_block(blk, relay=False) == "connected"
    assert evaluate_closed_rounds(n) == 1 and n.g0_metrics is not None
    n.closing_block, n.update_ids = blk, [t.id for t in txs]
    yield n
    n.stop()


def get_page(node, url: str = "/") -> Page:
    resp = create_app(node).test_client().get(url, headers={"Accept": "text/html"})
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    return Page(resp.get_data(as_text=True))


def test_the_index_renders_every_hook_without_javascript(node):
    page = get_page(node)
    assert page.find("main", data_page="index")
    assert page.text["height"] == "1" and page.text["round"] == "2"
    assert page.text["mempool"] == "0" and page.text["peers"] == "0"
    assert "rendered at" in page.text["live"]
    assert [a["data-height"] for a in page.find("tr") if "data-height" in a] == ["1", "0"]
    assert [a["data-round"] for a in page.find("tr") if "data-round" in a] == ["2", "1"]
    assert page.find("table", id="blocks") and page.find("table", id="rounds")
    hrefs = {a["href"] for a in page.find("a")}
    blk = node.closing_block
    assert f"/blocks/{blk.hash}" in hrefs and "/rounds/1" in hrefs and "/rounds/2" in hrefs
    assert {f"/txs/{i}" for i in node.update_ids} <= hrefs
    miner = address(KEYS[1].public_hex)
    assert f"/participants/{miner}" in hrefs and "node1" in page.text["blocks"]  # the miner by name
    assert [a["src"] for a in page.find("script")] == ["/static/explorer.js"]  # same origin, nothing else
    assert not [a for _, a in page.elements for k in ("src", "href") if a.get(k, "").startswith(("http", "//"))]


def test_the_chart_has_the_g0_point_its_line_and_a_fixed_axis_by_default(node):
    page = get_page(node)
    (chart,) = page.find("svg", id="chart")
    assert chart["data-rounds"] == "1" and chart["data-axis"] == "fixed"
    (g0,) = page.find("circle", class_="g0")
    assert g0["data-round"] == "0" and float(g0["data-value"]) == pytest.approx(node.g0_metrics["accuracy"], 1e-5)
    assert [a["data-name"] for a in page.find("line", class_="baseline")] == ["g0"]
    assert "checked" in page.find("input", id="fixed-axis")[0]
    assert "not available on this node" in page.text["baselines"]
    scaled = get_page(node, "/?axis=data")
    assert scaled.find("svg", id="chart")[0]["data-axis"] == "data"
    assert "checked" not in scaled.find("input", id="fixed-axis")[0]


def test_baselines_json_draws_both_baselines_and_a_bad_one_is_ignored_with_a_note(node):
    client = create_app(node).test_client()
    write_baselines(node.data_dir, {"source": "node.py demo: test", "rounds": 5, "epochs": 5,
                                    "test_digest": held_out_digest(node), "centralized": {"accuracy": 0.9},
                                    "local_only": {"accuracy": 0.7}, "local_only_mean": {"accuracy": 0.75}})
    page = get_page(node)
    lines = {a["data-name"]: float(a["data-value"]) for a in page.find("line", class_="baseline")}
    assert lines == {"g0": pytest.approx(node.g0_metrics["accuracy"], 1e-5), "local-only": 0.7, "centralized": 0.9}
    assert "pooled data of all nodes" in page.text["baselines"] and "5 epochs" in page.text["baselines"]
    doc = client.get("/baselines").get_json()
    assert doc["centralized"]["metrics"] == {"accuracy": 0.9} and doc["centralized"]["epochs"] == 5
    assert doc["local_only"]["metrics"] == {"accuracy": 0.7} and "baselines.json" in doc["local_only"]["source"]
    assert doc["local_only"]["mean_over_nodes"] == {"accuracy": 0.75}
    assert doc["g0"] == {"metrics": node.g0_metrics, "source": "measured by this node on its held-out set"}
    assert doc["metric"] == "accuracy" and doc["test_samples"] == 60
    assert doc["note"] == "from baselines.json: node.py demo: test"

    (node.data_dir / FILE).write_text(json.dumps({"format": 1, "centralized": {"accuracy": "x"}}))
    page = get_page(node)
    assert [a["data-name"] for a in page.find("line", class_="baseline")] == ["g0"]
    assert "baselines.json ignored: centralized.accuracy must be a finite number" in page.text["baselines"]
    doc = client.get("/baselines").get_json()
    assert doc["centralized"] is None and doc["note"].startswith("baselines.json ignored")


def test_without_baselines_json_the_node_draws_its_own_local_only_line(node):
    node.local_baseline.advance(1)  # what its background thread does (test_local_baseline.py)
    page = get_page(node)
    lines = {a["data-name"]: float(a["data-value"]) for a in page.find("line", class_="baseline")}
    assert lines["local-only"] == pytest.approx(node.local_baseline.metrics["accuracy"], 1e-5)
    assert "centralized" not in lines and "computed by this node in the background" in page.text["baselines"]
    doc = create_app(node).test_client().get("/baselines").get_json()
    assert doc["local_only"]["rounds"] == 1 and doc["local_only"]["epochs"] == node.config.model_spec.epochs


def test_live_is_small_and_the_script_is_served_by_the_node(node):
    client = create_app(node).test_client()
    resp = client.get("/live")
    assert resp.get_json() == {"height": 1, "tip": node.closing_block.hash, "round": 2, "mempool": 0,
                               "peers": 0, "measured": 1}
    assert len(resp.data) < 200
    script = client.get("/static/explorer.js")
    assert script.status_code == 200 and script.mimetype == "text/javascript"
    text = script.get_data(as_text=True)
    assert 'fetch("/live"' in text and not re.search(r"https?://", text)  # same origin only


def test_a_dp_node_does_not_serve_its_local_only_figure(tmp_path):
    data = write_partition(tmp_path)
    n = Node(tmp_path / "dp", tiny_config(), dataset_path=data, dp_mode="sample", dp_epsilon=4.0, dp_rounds=10,
             quiet=True, port=5987)
    try:
        write_baselines(n.data_dir, {"source": "node.py demo: test", "rounds": 5, "epochs": 5,
                                     "test_digest": held_out_digest(n), "centralized": {"accuracy": 0.9},
                                     "local_only": {"accuracy": 0.7}})
        doc = create_app(n).test_client().get("/baselines").get_json()
        assert doc["local_only"] is None and doc["centralized"]["metrics"] == {"accuracy": 0.9}
        assert "differential privacy" in doc["note"]
    finally:
        n.stop()


def test_the_local_only_baseline_is_opt_in(tmp_path):
    """Its background training shares the interpreter with the rounds' work, so a
    node computes it only with run --local-baseline, and the chart says so."""
    cfg = tiny_config(allow_list=[k.public_hex for k in KEYS[:3]])
    n = Node(tmp_path / "n", cfg, dataset_path=write_partition(tmp_path), quiet=True, port=5992)
    try:
        assert n.local_baseline is None
        doc = create_app(n).test_client().get("/baselines").get_json()
        assert doc["local_only"] is None and "run --local-baseline" in doc["note"]
    finally:
        n.stop()


def test_the_index_is_rendered_once_while_nothing_moves(node, monkeypatch):
    """Every open tab refetches the index about once a second while the tip moves
    (N4: 81 kB, ~6 ms a rendering): it is kept per axis while the tip, the open
    round, the newest measurement and the mempool stay, for at most max_age."""
    from learningchain.node.web import index_page as ip
    calls: list[bool] = []
    real = ip.render_index
    monkeypatch.setattr(ip, "render_index", lambda n, fixed: calls.append(fixed) or real(n, fixed))
    app = create_app(node)
    app.extensions["index_cache"] = ip.PageCache(max_age=3600)  # no expiry while the test runs
    client = app.test_client()

    def page(url="/"):
        resp = client.get(url, headers={"Accept": "text/html"})
        assert resp.status_code == 200
        return Page(resp.get_data(as_text=True))
    first = page()
    assert page().text == first.text and calls == [True]
    assert page("/?axis=data").find("svg", id="chart")[0]["data-axis"] == "data" and calls == [True, False]
    assert page().text == first.text and calls == [True, False]
    plain = client.get("/", headers={"Accept": "text/html"}).data
    for _ in range(2):  # the kept page's gzip form, compressed once
        z = client.get("/", headers={"Accept": "text/html", "Accept-Encoding": "gzip"})
        assert z.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in z.vary and z.mimetype == "text/html"
        assert gzip.decompress(z.data) == plain and calls == [True, False]
        assert z.headers["Content-Security-Policy"].startswith("default-src 'self'")

    txs = [update_tx(node.chain, k) for k in KEYS[:3]]
    assert node.submit_tx(txs[0]) == "accepted"  # the mempool moved
    assert page().text["mempool"] == "1" and len(calls) == 3
    with node.lock:
        blk = next_block(node.chain, txs, miner=KEYS[1])
    assert node.submit_block(blk, relay=False) == "connected"  # the tip moved: round 2 closed
    assert page().text["height"] == "2" and len(calls) == 4
    assert page().find("svg", id="chart")[0]["data-rounds"] == "1" and len(calls) == 4
    assert evaluate_closed_rounds(node) == 1 and node.measured == 2  # a new measurement
    assert page().find("svg", id="chart")[0]["data-rounds"] == "2" and len(calls) == 5
    assert client.get("/live").get_json()["measured"] == 2

    app.extensions["index_cache"] = ip.PageCache(max_age=0)  # expired at once: rendered every time
    page(), page()
    assert len(calls) == 7


def test_the_chart_reads_the_newest_rounds_by_round_not_by_sorting_all(node):
    from learningchain.node.web.chart import CHART_ROUNDS
    from learningchain.node.web.index_page import chart_points
    node.metrics.update({r: {"accuracy": r / 10_000} for r in range(2, 2000)})
    node.note_measured(1999)
    points = chart_points(node, "accuracy")
    assert len(points) == CHART_ROUNDS and points[0][0] == 2000 - CHART_ROUNDS and points[-1] == (1999, 0.1999)
    assert node.measured == 1999 and node.status()["metrics_round"] == 1999
