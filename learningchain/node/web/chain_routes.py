"""The chain inspection routes of the API (a Flask blueprint): ``/status``,
``/tip``, ``/chain``, ``/blocks/<ref>`` (JSON, or the explorer's HTML page),
``/txs/<id>``, ``/mempool``, ``/model`` and ``/rounds``: reads only, under the
node's lock. Documented in docs/api.md.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from flask import Blueprint, current_app, jsonify, request

from learningchain.core.encoding import encode_weights
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import NetworkConfig
from learningchain.node.chainstate import Ledger
from learningchain.node.web.explorer import (MAX_ROUNDS_PAGE, ROUNDS_PAGE, render_block, round_detail as round_view,
                                             rounds_overview)
from learningchain.node.web.request_input import ApiError, hex_id, int_arg, is_number

MAX_CHAIN_PAGE = 500
#: the longest ``GET /rounds/<r>?wait=S`` may wait (seconds).
MAX_ROUND_WAIT_S = 30

chain_routes = Blueprint("chain_routes", __name__)


class InspectedNode(Protocol):
    """What the inspection routes read from the node (:class:`~learningchain.node.service.Node`),
    also what they hand to the explorer's rounds and block page (its network name)."""
    lock: AbstractContextManager
    config: NetworkConfig
    ledger: Ledger  # its mempool
    metrics: dict[int, dict[str, float]]

    @property
    def chain(self) -> Chain: ...

    def status(self) -> dict: ...

    def tip_summary(self) -> dict: ...

    def find_tx(self, txid: str) -> dict | None: ...

    def energy_report(self, round: int | None = None) -> dict | None: ...

    def wait_round(self, r: int, seconds: float) -> None: ...


def node() -> InspectedNode:
    return current_app.config["NODE"]


def summary(entry) -> dict:
    """A main-chain row of ``/chain`` from a chain entry (no block body is read)."""
    c = entry.commitment
    return {"height": entry.height, "hash": entry.hash, "timestamp": entry.header.timestamp,
            "txs": len(entry.tx_ids), "miner": entry.header.miner,
            "round_closed": c.get("round") if isinstance(c, dict) else None}


@chain_routes.get("/status")
def status():
    return jsonify(node().status())


@chain_routes.get("/tip")
def tip():
    """What peers poll every sync tick: a few dozen bytes instead of ``/status``."""
    return jsonify(node().tip_summary())


@chain_routes.get("/chain")
def chain():
    n = node()
    with n.lock:
        height = n.chain.height
        limit = int_arg("limit", 20, 1, MAX_CHAIN_PAGE)
        start = int_arg("start", max(0, height - limit + 1), 0, 2**53)
        blocks = [summary(e) for e in n.chain.main_entries(start, limit)]
    return jsonify({"height": height, "blocks": blocks})


def wants_html() -> bool:
    """Content negotiation: ``?format=json|html`` wins; else the Accept header's
    best match between JSON and HTML, JSON first on a tie (``*/*``: curl, scripts).
    Not ``accept_mimetypes.best``: Chromium's header ends with
    ``application/signed-exchange;v=b3;q=0.7``, which Werkzeug ranked best, and
    browsers got raw JSON (issue 14)."""
    fmt = request.args.get("format")
    if fmt in ("json", "html"):
        return fmt == "html"
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


@chain_routes.get("/blocks/<ref>")
def block(ref: str):
    n = node()
    with n.lock:
        if is_number(ref):
            b = n.chain.block_at(int(ref))
        else:
            b = n.chain.get_block(hex_id(ref, "block hash"))
    if b is None:
        raise ApiError(404, f"no block {ref}")
    if wants_html():
        return render_block(n, b)
    return jsonify({**b.to_dict(), "hash": b.hash})


@chain_routes.get("/txs/<txid>")
def tx(txid: str):
    found = node().find_tx(hex_id(txid, "tx id"))
    if found is None:
        raise ApiError(404, f"no tx {txid} in the mempool or the main chain")
    return jsonify(found)


@chain_routes.get("/mempool")
def mempool():
    n = node()
    with n.lock:
        txs = [{"id": t.id, "sender": t.sender, "round": t.round, "num_samples": t.num_samples,
                "size": t.size} for t in n.ledger.mempool]
    return jsonify({"count": len(txs), "bytes": sum(t["size"] for t in txs), "txs": txs})


@chain_routes.get("/model")
def model():
    n = node()
    with n.lock:
        state = n.chain.tip_state
        weights, digest, r = state.model, state.model_digest, state.round - 1
    return jsonify({"round": r, "digest": digest, "metrics": n.metrics.get(r),
                    "weights": encode_weights(weights)})


@chain_routes.get("/rounds")
def rounds():
    """A page of rounds: ``start`` (default: the newest page) and ``limit``
    (default 50, at most 200), oldest first; ``current`` to page from."""
    limit = int_arg("limit", ROUNDS_PAGE, 1, MAX_ROUNDS_PAGE)
    start = int_arg("start", 0, 1, 2**53) if "start" in request.args else None
    page, current = rounds_overview(node(), limit, start)
    return jsonify({"current": current, "start": page[0]["round"] if page else start, "limit": limit,
                    "rounds": page})


@chain_routes.get("/rounds/<r>")
def round_detail(r: str):
    if not is_number(r) or int(r) < 1:
        raise ApiError(400, "round must be a positive integer", "bad-id")
    wait = int_arg("wait", 0, 0, MAX_ROUND_WAIT_S)
    if wait:  # a long-poll: answer once round r is closed and measured, or after `wait` seconds
        node().wait_round(int(r), wait)
    detail = round_view(node(), int(r))
    if detail is None:
        raise ApiError(404, f"round {r} has not opened yet")
    detail["energy"] = node().energy_report(int(r))  # this node's own estimate (energy.py), or null
    return jsonify(detail)
