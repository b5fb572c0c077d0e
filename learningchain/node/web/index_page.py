"""The explorer's index page ``GET /`` and the two small JSON documents its
script polls (a Flask blueprint).

The page renders whole on the server (no script needed to see anything): the
node's height, open round, mempool and peers, the chart of the global metric
per round (:mod:`learningchain.node.web.chart`) with G0 and the baselines, the
latest blocks and rounds. ``static/explorer.js`` then asks ``GET /live`` (a
few dozen bytes) every second, updates the numbers, and only when the tip or
the newest measured round moved fetches this page again and swaps its tables
and chart in place (one rendering, here; no page reload).

* ``GET /live``: height, tip, open round, mempool size, peers, newest measured round;
* ``GET /baselines``: G0's metrics (measured by this node on its held-out set)
  and the centralized / local-only baselines of ``baselines.json``
  (:mod:`learningchain.node.baselines_file`), each with where it comes from.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from learningchain.core.crypto import address
from learningchain.core.units import clock, metric_name, timestamp
from learningchain.node.baselines_file import dataset_digest, read_baselines
from learningchain.node.local_baseline import EVERY_ROUNDS, LocalBaseline
from learningchain.node.p2p.wire import accepts_gzip, gzip_for_wire
from learningchain.node.web.chart import CHART_ROUNDS, Baseline, metric_chart
from learningchain.node.web.explorer import rounds_overview
from learningchain.node.web.names import name_of

index_page = Blueprint("index_page", __name__, template_folder="templates")


class IndexNode(Protocol):
    """What the index reads of the node beside the inspection routes' needs
    (:class:`~learningchain.node.web.chain_routes.InspectedNode`)."""
    data_dir: Path  # its baselines.json
    test_set: Any  # (X, y) of the held-out test.npz, or None
    g0_metrics: dict[str, float] | None
    local_baseline: LocalBaseline | None
    participant: Any  # its role says whether it runs under DP
    pubkey: str
    address: str
    peers: Any  # len(): how many
    measured: int | None  # the newest round in metrics (Node.note_measured)
    measurements: int  # metrics stored since start
    mempool_version: int

#: blocks and rounds on the index (older ones: the block pages' links and /rounds?start=).
INDEX_BLOCKS, INDEX_ROUNDS = 30, 50

_digests: dict[int, tuple[object, str]] = {}  # id(test set) -> (the set, its digest)


def node():
    return current_app.config["NODE"]


def held_out_digest(n) -> str | None:
    """The digest of the node's held-out set (computed once per set)."""
    if n.test_set is None:
        return None
    key = id(n.test_set)
    if key not in _digests:
        _digests[key] = (n.test_set, dataset_digest(*n.test_set))
    return _digests[key][1]


def baselines_doc(n) -> dict:
    """``GET /baselines``: G0 and the baselines this node can show, each with where
    it comes from (``null`` when unknown; ``note`` says why)."""
    label = metric_name(n.config.model_spec.task)
    found, note = read_baselines(n.data_dir, held_out_digest(n))
    found = found or {}
    dp = n.participant is not None and n.participant.role.dp
    horizon = {"rounds": found.get("rounds"), "epochs": found.get("epochs")}
    g0 = ({"metrics": n.g0_metrics, "source": "measured by this node on its held-out set"}
          if n.g0_metrics is not None else
          {"metrics": found["g0"], "source": "baselines.json"} if "g0" in found else None)
    local = None
    if "local_only" in found and not dp:
        local = {"metrics": found["local_only"], **horizon, "mean_over_nodes": found.get("local_only_mean"),
                 "source": "baselines.json: this node's partition alone, trained by node.py demo"}
    elif "local_only" in found:
        note += "; local-only left out: this node runs with differential privacy, and the figure " \
                "describes its private data outside the accountant"
    elif n.local_baseline is not None and n.local_baseline.report() is not None:
        local = {**n.local_baseline.report(), "mean_over_nodes": None,
                 "source": f"computed by this node in the background (every {EVERY_ROUNDS} rounds)"}
    elif n.local_baseline is None and n.participant is not None and not dp:
        note += "; local-only: not computed on this node (start it with run --local-baseline)"
    central = ({"metrics": found["centralized"], **horizon,
                "source": "baselines.json: the pooled data of all nodes, trained by node.py demo"}
               if "centralized" in found else None)
    return {"metric": label, "test_samples": len(n.test_set[1]) if n.test_set is not None else None,
            "g0": g0, "local_only": local, "centralized": central, "note": note,
            "file_source": found.get("source")}


def chart_baselines(doc: dict) -> list[Baseline]:
    label = doc["metric"]
    return [Baseline(name, doc[key]["metrics"][label]) for name, key in
            (("g0", "g0"), ("local-only", "local_only"), ("centralized", "centralized"))
            if doc.get(key) and label in doc[key]["metrics"]]


def block_rows(n) -> list[dict]:
    """The newest blocks, from the chain's entries (no block body is read)."""
    with n.lock:
        entries = n.chain.main_entries(max(0, n.chain.height - INDEX_BLOCKS + 1), INDEX_BLOCKS)[::-1]
    return [{"height": e.height, "hash": e.hash, "time": timestamp(e.header.timestamp), "txs": len(e.tx_ids),
             "miner": address(e.header.miner), "miner_name": name_of(n, e.header.miner),
             "round": e.commitment.get("round") if isinstance(e.commitment, dict) else None}
            for e in entries]


#: the longest the index is served as rendered before (seconds); within it only
#: while the chain, the measured rounds and the mempool stay as they were.
INDEX_CACHE_S = 1.0


class Rendered:
    """One rendering of the index: its key, when, the page and (once a client
    asked for it) its gzip form, so a kept page is not compressed again either."""

    def __init__(self, key: tuple, at: float, page: str):
        self.key, self.at, self.page = key, at, page
        self._gzipped: bytes | None | bool = False  # False: not computed yet

    def gzipped(self) -> bytes | None:
        if self._gzipped is False:
            self._gzipped = gzip_for_wire(self.page.encode())
        return self._gzipped


class PageCache:
    """The index as last rendered, one per axis: every open tab asks for it about
    once a second while the tip moves, and a rendering costs milliseconds (issue
    14, N4). ``get`` answers the kept rendering while ``key`` holds and it is
    younger than ``max_age`` (what the key leaves out, the peer count or a new
    baselines.json, shows at most that late), else renders it anew."""

    def __init__(self, max_age: float = INDEX_CACHE_S):
        self.max_age = max_age
        self._lock = threading.Lock()
        self._pages: dict[Any, Rendered] = {}  # axis -> its newest rendering

    def get(self, axis: Any, key: tuple, render) -> Rendered:
        now = time.monotonic()
        with self._lock:
            kept = self._pages.get(axis)
        if kept is not None and kept.key == key and now - kept.at < self.max_age:
            return kept
        fresh = Rendered(key, now, render())
        with self._lock:
            self._pages[axis] = fresh
        return fresh

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()


def page_cache() -> PageCache:
    """The app's index cache (one per app: a test's fresh app starts empty)."""
    return current_app.extensions.setdefault("index_cache", PageCache())


@index_page.get("/")
def index():
    n = node()
    fixed = request.args.get("axis") != "data"
    with n.lock:
        key = (n.chain.tip.hash, n.chain.tip_state.round, n.measured, n.measurements, n.mempool_version,
               len(n.ledger.mempool))
    page = page_cache().get(fixed, key, lambda: render_index(n, fixed))
    gzipped = page.gzipped() if accepts_gzip(request.headers.get("Accept-Encoding")) else None
    if gzipped is None:
        return page.page  # compressed (or not) as any reply (api.py)
    resp = Response(gzipped, mimetype="text/html")
    resp.headers["Content-Encoding"] = "gzip"  # api.py's compress_reply leaves it as it is
    resp.vary.add("Accept-Encoding")
    return resp


def render_index(n, fixed: bool) -> str:
    status = n.status()
    rounds = rounds_overview(n, limit=INDEX_ROUNDS)[0][::-1]
    label = metric_name(n.config.model_spec.task)
    points = chart_points(n, label)
    doc = baselines_doc(n)
    blocks = block_rows(n)
    return render_template("explorer.html", status=status, blocks=blocks, rounds=rounds, fixed=fixed,
                           chart=metric_chart(points, label, chart_baselines(doc), fixed), label=label,
                           baselines=doc, measured=n.measured, own=name_of(n, n.pubkey),
                           rendered=clock(),
                           older_blocks=blocks[-1]["height"] - 1 if blocks and blocks[-1]["height"] > 0 else None,
                           older_rounds=(max(1, rounds[-1]["round"] - INDEX_ROUNDS), rounds[-1]["round"] - 1)
                           if rounds and rounds[-1]["round"] > 1 else None)


def chart_points(n, label: str) -> list[tuple[int, float]]:
    """The chart's (round, metric) points: the newest :data:`CHART_ROUNDS` rounds
    up to the newest measured one, looked up by round (not a sort of every round)."""
    newest = n.measured
    if newest is None:
        return []
    metrics = n.metrics
    out = []
    for r in range(max(1, newest - CHART_ROUNDS + 1), newest + 1):
        m = metrics.get(r)
        if m is not None and label in m:
            out.append((r, m[label]))
    return out


@index_page.get("/live")
def live():
    """What the index page polls every second: a few dozen bytes."""
    n = node()
    with n.lock:
        doc = {"height": n.chain.height, "tip": n.chain.tip.hash, "round": n.chain.tip_state.round,
               "mempool": len(n.ledger.mempool)}
    doc.update(peers=len(n.peers), measured=n.measured)
    return jsonify(doc)


@index_page.get("/baselines")
def baselines():
    return jsonify(baselines_doc(node()))
