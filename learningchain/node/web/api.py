"""HTTP API of a node: ``create_app(node)`` wires a node (a
:class:`~learningchain.node.service.Node`) into Flask (served by waitress:
:mod:`learningchain.node.web.http_server`).

The routes are blueprints, one per seam: chain inspection
(:mod:`~learningchain.node.web.chain_routes`), what peers send and sync
(:mod:`~learningchain.node.web.peer_routes`), the node's own miner
(:mod:`~learningchain.node.web.mining_routes`), and the HTML explorer
(:mod:`~learningchain.node.web.explorer`, its index
:mod:`~learningchain.node.web.index_page`; scripts under ``static/``, Flask's
default static folder of this package); they read their requests with
:mod:`~learningchain.node.web.request_input`. Handlers stay thin: parse, call
the node, serialise. Errors are registered here, once, so every 4xx has the
shape ``{"error": text}`` (plus ``"reason": code`` for a validation failure) and
nothing ever answers with a traceback; a browser (``wants_html``) gets the same
error as a small explorer page, with the same status. Replies over 1 KiB are
gzipped for clients that accept it (:mod:`learningchain.node.p2p.wire`). Every
response whose body depended on the Accept header says ``Vary: Accept``; HTML
ones carry a Content-Security-Policy that lets a page load nothing but what
this node serves (:data:`CSP`). Every endpoint is documented in docs/api.md.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Protocol

from flask import Flask, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from learningchain.core import errors
from learningchain.core.encoding import EncodingError
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.node.web.mining_auth import write_token
from learningchain.node.p2p.peer_counters import HEADER_ESTIMATE, message_type
from learningchain.node.p2p.peers import PeerSet
from learningchain.node.p2p.wire import compress_reply
from learningchain.node.web.chain_routes import InspectedNode, chain_routes, wants_html
from learningchain.node.web.explorer import explorer
from learningchain.node.web.index_page import IndexNode, index_page
from learningchain.node.web.mining_routes import MiningNode, mining_routes
from learningchain.node.web.ops_routes import OpsNode, register_ops
from learningchain.node.web.peer_routes import PeerFacingNode, peer_routes
from learningchain.node.web.request_input import ApiError

MAX_BODY_BYTES = 4 << 20
#: what an explorer page may load: this node's own scripts, styles and images
#: (the inline <style> of base.html; SVG is inline markup), nothing off the machine.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")

log = logging.getLogger(__name__)


class ServedNode(Protocol):
    """What the app itself uses of the node (:class:`~learningchain.node.service.Node`),
    beside what its blueprints use: where the miner token goes, the body cap,
    the per-peer byte counters and the count of refused requests."""
    data_dir: Path
    config: NetworkConfig
    peers: PeerSet
    refused: Counter[str]


class ApiNode(ServedNode, InspectedNode, PeerFacingNode, MiningNode, IndexNode, OpsNode, Protocol):
    """Everything :func:`create_app` needs of its node: the app's and its blueprints' needs."""


def node() -> ServedNode:
    return current_app.config["NODE"]


# --- errors, registered once ------------------------------------------------------------------

def _json_error(status: int, error: str, reason: str | None = None):
    """The error document, or for a browser's GET (:func:`wants_html`) the explorer's
    error page (``main[data-page="error"]``) with the same status. Peers and the
    CLI send ``Accept: */*`` (requests' default) or none: JSON, as before."""
    if request.method in ("GET", "HEAD") and wants_html():
        try:
            return render_template("error.html", status=status, error=error, reason=reason), status
        except Exception:  # noqa: BLE001 - the error must still be answered: as JSON then
            log.exception("the error page of %s failed to render", request.path)
    doc = {"error": error}
    if reason:
        doc["reason"] = reason
    return jsonify(doc), status


#: reasons of the HTTP-level refusals (werkzeug raises them before our handlers run).
_HTTP_REASONS = {404: "unknown-route", 405: "bad-method", 413: "body-too-large"}


def refused(reason: str | None) -> None:
    """Count a refused request in ``/status`` -> ``refused`` (the node counts what it
    validates itself; these are the refusals that never reach it)."""
    if reason:
        node().refused[reason] += 1


def register_errors(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        refused(exc.reason)
        return _json_error(exc.status, exc.error, exc.reason)

    @app.errorhandler(ValidationError)
    def validation_error(exc: ValidationError):
        if not getattr(exc, "counted", False):  # parse failures, stale templates
            refused(exc.code)
        # our own store failed, not the sender: a server-side error, try again later
        return _json_error(503 if exc.code == errors.STORE_WRITE_FAILED else 400, exc.detail, exc.code)

    @app.errorhandler(EncodingError)
    def encoding_error(exc: EncodingError):
        refused("bad-encoding")
        return _json_error(400, str(exc), "bad-encoding")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        texts = {404: "no such endpoint; see docs/api.md",
                 405: f"method {request.method} is not allowed on {request.path}",
                 413: f"request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes"}
        reason = _HTTP_REASONS.get(exc.code or 0, "bad-request")
        refused(reason)
        return _json_error(exc.code or 500, texts.get(exc.code, exc.description or exc.name), reason)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _json_error(500, "internal error; the node logged it and keeps serving")


def create_app(node_obj: ApiNode) -> Flask:
    """The node's Flask app: its blueprints, the JSON error handlers, gzip and
    the per-peer byte counters."""
    app = Flask(__name__)
    app.config["NODE"] = node_obj
    app.config["MINER_TOKEN"] = write_token(node_obj.data_dir)  # a new one at every start
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_BODY_BYTES, node_obj.config.max_block_bytes + (64 << 10))
    app.json.sort_keys = False
    for blueprint in (chain_routes, peer_routes, mining_routes, explorer, index_page):
        app.register_blueprint(blueprint)
    register_ops(app, node_obj)  # /healthz /readyz /metrics, the admin allow-list (ops_routes.py)
    register_errors(app)

    @app.get("/favicon.ico")
    def favicon():
        """No icon: 204, and not a refusal (a browser asks on every page; /status
        counted them as unknown-route)."""
        return "", 204

    @app.after_request
    def compress_and_count(resp):
        if g.get("negotiated"):  # the body depended on Accept (chain_routes.wants_html)
            resp.vary.add("Accept")
        if resp.mimetype == "text/html":
            resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp = compress_reply(resp, request.headers.get("Accept-Encoding"))  # counted as sent
        peer = request.headers.get("X-Peer")
        if peer:
            kind = message_type(request.method, request.path, g.get("compact", False))
            node_obj.peers.count_inbound(peer, (request.content_length or 0) + HEADER_ESTIMATE,
                                         (resp.calculate_content_length() or 0) + HEADER_ESTIMATE, kind)
        return resp
    return app
