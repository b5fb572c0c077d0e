"""The chain inspection routes of the API (a Flask blueprint): ``/status``,
``/tip``, ``/chain``, ``/blocks/<ref>``, ``/txs/<ref>``, ``/mempool``,
``/model``, ``/rounds``, ``/participants`` and ``/search``: reads only, under
the node's lock. Each answers JSON as documented in docs/api.md, or for a
browser (:func:`wants_html`) the explorer's page of the same resource
(:mod:`learningchain.node.web.pages`). A block hash or tx id may be any unique
prefix of at least 4 hex characters (:mod:`learningchain.node.web.lookup`).
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import re

from flask import Blueprint, current_app, g, jsonify, redirect, request

from learningchain.core import units
from learningchain.core.encoding import encode_weights, is_hex
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import NetworkConfig
from learningchain.node.chainstate import Ledger
from learningchain.node.web import names, pages
from learningchain.node.web.explorer import MAX_ROUNDS_PAGE, ROUNDS_PAGE, round_detail as round_view, rounds_overview
from learningchain.node.web.lookup import MAX_MATCHES, MIN_PREFIX, AmbiguousId, is_height, is_prefix, resolve_block, resolve_tx
from learningchain.node.web.lookup import search_all
from learningchain.node.web.request_input import ApiError, int_arg, is_number

MAX_CHAIN_PAGE = 500
_NODE_NAME = re.compile(r"node[0-9]{1,6}")
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
    doc = node().status()
    return pages.status_page(node(), doc) if wants_html() else jsonify(doc)


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
    browsers got raw JSON (issue 14). Marks the response ``Vary: Accept``."""
    g.negotiated = True  # the response says Vary: Accept (api.py)
    fmt = request.args.get("format")
    if fmt in ("json", "html"):
        return fmt == "html"
    return request.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"


def _ref_error(what: str) -> ApiError:
    return ApiError(400, f"{what} must be 64 lowercase hex characters, or a unique prefix of at least "
                         f"{MIN_PREFIX} of them", "bad-id")


@chain_routes.errorhandler(AmbiguousId)
def ambiguous(exc: AmbiguousId):
    """A prefix naming several ids: 409 with the candidates; a browser gets the
    search page listing them."""
    if wants_html():
        return redirect(f"/search?q={exc.prefix}")
    return jsonify({"error": str(exc), "reason": "ambiguous-id", "matches": exc.matches}), 409


@chain_routes.get("/blocks/<ref>")
def block(ref: str):
    n = node()
    b = None
    if is_height(ref):
        with n.lock:
            b = n.chain.block_at(int(ref))
    if b is None and (not is_height(ref) or len(ref) >= MIN_PREFIX):  # 00004d or a 4+ digit non-height
        if not is_prefix(ref):
            raise _ref_error("block hash")
        full = resolve_block(n, ref)
        with n.lock:
            b = n.chain.get_block(full) if full else None
    if b is None:
        raise ApiError(404, f"no block {ref}")
    if wants_html():
        return pages.block_page(n, b)
    return jsonify({**b.to_dict(), "hash": b.hash})


@chain_routes.get("/txs/<txid>")
def tx(txid: str):
    if not is_prefix(txid):
        raise _ref_error("tx id")
    full = resolve_tx(node(), txid)
    found = node().find_tx(full) if full else None
    if found is None:
        raise ApiError(404, f"no tx {txid} in the mempool or the main chain")
    if wants_html():
        return pages.tx_page(node(), found)
    return jsonify({**found, "id": full})  # the full id, for a client that gave a prefix


@chain_routes.get("/mempool")
def mempool():
    n = node()
    with n.lock:
        txs = [{"id": t.id, "sender": t.sender, "round": t.round, "num_samples": t.num_samples,
                "size": t.size} for t in n.ledger.mempool]
    doc = {"count": len(txs), "bytes": sum(t["size"] for t in txs), "txs": txs}
    return pages.mempool_page(n, doc) if wants_html() else jsonify(doc)


@chain_routes.get("/model")
def model():
    n = node()
    with n.lock:
        state = n.chain.tip_state
        weights, digest, r = state.model, state.model_digest, state.round - 1
    if wants_html():  # shapes and norms; the weights only as JSON
        return pages.model_page(n, r, digest, weights, n.metrics.get(r))
    return jsonify({"round": r, "digest": digest, "metrics": n.metrics.get(r),
                    "weights": encode_weights(weights)})


@chain_routes.get("/rounds")
def rounds():
    """A page of rounds: ``start`` (default: the newest page) and ``limit``
    (default 50, at most 200), oldest first; ``current`` to page from."""
    limit = int_arg("limit", ROUNDS_PAGE, 1, MAX_ROUNDS_PAGE)
    start = int_arg("start", 0, 1, 2**53) if "start" in request.args else None
    if wants_html():
        return pages.rounds_page(node(), limit, start)
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
    if "wait" not in request.args and wants_html():  # a long-poll is JSON only
        return pages.round_page(node(), detail)
    return jsonify(detail)


@chain_routes.get("/participants")
def participants():
    """The genesis participants (node0, node1, ...), with reputation and energy profile."""
    doc = pages.participants_doc(node())
    return pages.participants_page(node(), doc) if wants_html() else jsonify(doc)


@chain_routes.get("/participants/<who>")
def participant(who: str):
    """One participant by name (``node3``), address or public key: its updates with
    their verdicts in a page of rounds (``start``), reputation and energy."""
    start = int_arg("start", 0, 1, 2**53) if "start" in request.args else None
    doc = pages.participant_doc(node(), who, start)
    if doc is None:
        if _NODE_NAME.fullmatch(who) or names.pubkey_of(node(), who) is not None or is_hex(who, 20):
            raise ApiError(404, f"no participant {who} known to this node (no genesis entry, record or update)")
        raise ApiError(400, f"no participant {who}: give node<i> (the i-th genesis participant), an address "
                            f"(40 hex) or a public key (66 hex)", "bad-id")
    return pages.participant_page(node(), doc, who) if wants_html() else jsonify(doc)


@chain_routes.get("/search")
def search():
    """``?q=``: a height, block hash or prefix, tx id or prefix, address, public key,
    node name or round. JSON: ``{"query", "matches": [{"kind", "id", "url", "label"}], "more"}``
    (``more``: the kinds, "block" or "tx", with more than :data:`MAX_MATCHES` matches);
    a browser is redirected to a single match, else shown the candidates."""
    q = request.args.get("q", "")[:200]
    matches, more = search_all(node(), q)
    if not wants_html():
        return jsonify({"query": q, "matches": matches, "more": more})
    if len(matches) == 1:
        return redirect(matches[0]["url"], 302)
    note = None
    if q.strip() and not matches and len(q.strip()) < MIN_PREFIX:
        note = f"An id prefix needs at least {MIN_PREFIX} hex characters."
    elif more:
        note = (f"More than {MAX_MATCHES} {' and '.join(k + 's' for k in more)} start with {q.strip()}: "
                f"the first {MAX_MATCHES} of each are listed; give more characters.")
    return pages.search_page(node(), q, matches, note)


chain_routes.add_app_template_filter(units.byte_size, "bytes")
chain_routes.add_app_template_filter(units.hash_rate, "rate")
chain_routes.add_app_template_filter(units.duration, "duration")
