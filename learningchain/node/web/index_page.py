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

from pathlib import Path
from typing import Any, Protocol

from flask import Blueprint, current_app, jsonify, render_template, request

from learningchain.core.crypto import address
from learningchain.core.units import clock, metric_name, timestamp
from learningchain.node.baselines_file import dataset_digest, read_baselines
from learningchain.node.local_baseline import EVERY_ROUNDS, LocalBaseline
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


@index_page.get("/")
def index():
    n = node()
    status = n.status()
    fixed = request.args.get("axis") != "data"
    rounds = rounds_overview(n, limit=INDEX_ROUNDS)[0][::-1]
    label = metric_name(n.config.model_spec.task)
    points = sorted((r, m[label]) for r, m in dict(n.metrics).items() if label in m)[-CHART_ROUNDS:]
    doc = baselines_doc(n)
    blocks = block_rows(n)
    return render_template("explorer.html", status=status, blocks=blocks, rounds=rounds, fixed=fixed,
                           chart=metric_chart(points, label, chart_baselines(doc), fixed), label=label,
                           baselines=doc, measured=max(points)[0] if points else None, own=name_of(n, n.pubkey), rendered=clock(),
                           older_blocks=blocks[-1]["height"] - 1 if blocks and blocks[-1]["height"] > 0 else None,
                           older_rounds=(max(1, rounds[-1]["round"] - INDEX_ROUNDS), rounds[-1]["round"] - 1)
                           if rounds and rounds[-1]["round"] > 1 else None)


@index_page.get("/live")
def live():
    """What the index page polls every second: a few dozen bytes."""
    n = node()
    with n.lock:
        doc = {"height": n.chain.height, "tip": n.chain.tip.hash, "round": n.chain.tip_state.round,
               "mempool": len(n.ledger.mempool)}
    doc.update(peers=len(n.peers), measured=max(list(n.metrics), default=None))
    return jsonify(doc)


@index_page.get("/baselines")
def baselines():
    return jsonify(baselines_doc(node()))
