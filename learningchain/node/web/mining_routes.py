"""The mining routes of the API (a Flask blueprint): ``GET /mining/template``,
``POST /mining/wait`` (a long-poll: returns when the template went stale) and
``POST /mining/submit``, served only to a holder of the node's miner token
(:mod:`learningchain.node.web.mining_auth`; ``python -m miner``). Documented in
docs/api.md.
"""
from __future__ import annotations

from typing import Protocol

from flask import Blueprint, current_app, jsonify, request

from learningchain.core import errors
from learningchain.ledger.block import Block
from learningchain.node.web.mining_auth import HEADER as MINER_TOKEN_HEADER, TOKEN_FILE, token_matches
from learningchain.node.web.ops_routes import require_admin
from learningchain.node.web.request_input import SMALL_BODY_BYTES, ApiError, body

mining_routes = Blueprint("mining_routes", __name__)


class MiningNode(Protocol):
    """What the mining routes use of the node (:class:`~learningchain.node.service.Node`):
    templates kept per client, and the nonce that solves one."""

    def new_template(self, client: str = "own") -> tuple[str, Block]: ...

    def submit_nonce(self, template_id: str, nonce: int, client: str = "own") -> tuple[str, Block]: ...

    def wait_template(self, template_id: str, client: str, timeout: float) -> bool | None: ...


def node() -> MiningNode:
    return current_app.config["NODE"]


def mining_client() -> str:
    """The caller of ``/mining/*`` if it holds the node's miner token
    (:mod:`learningchain.node.web.mining_auth`), else 403 ``mining-forbidden``. Returns
    its template bucket: ``X-Miner-Id`` if given (several miners on one host),
    else its address. A client outside ``--admin-allow`` gets 403 ``admin-only`` first."""
    require_admin("/mining/*")
    if not token_matches(current_app.config["MINER_TOKEN"], request.headers.get(MINER_TOKEN_HEADER)):
        raise ApiError(403, f"/mining/* serve only this node's own miner: send the token from "
                            f"<data-dir>/{TOKEN_FILE} in the {MINER_TOKEN_HEADER} header "
                            f"(python -m miner --data-dir <data-dir>)", errors.MINING_FORBIDDEN)
    name = request.headers.get("X-Miner-Id", "")
    return f"id:{name[:32]}" if name else f"addr:{request.remote_addr}"


@mining_routes.get("/mining/template")
def mining_template():
    tid, b = node().new_template(mining_client())
    return jsonify({"template_id": tid, "height": b.height, "prev_hash": b.header.prev_hash,
                    "prefix": b.header.prefix().hex(), "target": f"{b.header.target:064x}"})


#: the longest a /mining/wait may ask to wait (seconds).
MAX_WAIT_S = 30


@mining_routes.post("/mining/wait")
def mining_wait():
    """``{"template_id", "timeout"}`` -> ``{"stale": bool}`` once the template is
    stale (a new tip, or the mempool now holds the round's quorum) or ``timeout``
    seconds passed: the standalone miner learns of a new tip by push, not by
    polling ``/status``."""
    client = mining_client()
    doc = body(SMALL_BODY_BYTES)
    tid, timeout = doc.get("template_id"), doc.get("timeout", 10)
    if not isinstance(tid, str) or len(tid) > 64:
        raise ApiError(400, "template_id must be the string /mining/template returned", "template-unknown")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 <= timeout <= MAX_WAIT_S:
        raise ApiError(400, f"timeout must be a number of seconds in [0, {MAX_WAIT_S}]", "bad-query")
    stale = node().wait_template(tid, client, float(timeout))
    if stale is None:
        raise ApiError(429, "too many /mining/wait calls run at once; poll /status instead", errors.MINING_BUSY)
    return jsonify({"stale": stale})


@mining_routes.post("/mining/submit")
def mining_submit():
    client = mining_client()
    doc = body(SMALL_BODY_BYTES)
    tid, nonce = doc.get("template_id"), doc.get("nonce")
    if not isinstance(tid, str) or len(tid) > 64:
        raise ApiError(400, "template_id must be the string /mining/template returned", "template-unknown")
    if not isinstance(nonce, int) or isinstance(nonce, bool) or not 0 <= nonce < 2**64:
        raise ApiError(400, "nonce must be an integer in [0, 2^64)", "bad-nonce")
    status, b = node().submit_nonce(tid, nonce, client)
    return jsonify({"status": status, "hash": b.hash}), 202
