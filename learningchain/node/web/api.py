"""HTTP API of a node: ``create_app(node)`` wires a :class:`~learningchain.node.service.Node`
into Flask routes (served by waitress: :mod:`learningchain.node.web.http_server`).

Handlers stay thin: parse, call the node, serialise. Errors are registered once,
so every 4xx has the shape ``{"error": text}`` (plus ``"reason": code`` for a
validation failure) and nothing ever answers with a traceback. Request bodies
are decoded with :func:`learningchain.core.encoding.parse_json` (NaN, Infinity and
deep nesting refused), never ``request.json``, after ``Content-Encoding: gzip``
is undone within the body cap; replies over 1 KiB are gzipped for clients that
accept it (:mod:`learningchain.node.p2p.wire`). Every endpoint is documented in docs/api.md.
"""
from __future__ import annotations

import logging
import re

from flask import Blueprint, Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from learningchain.core import errors
from learningchain.ledger.block import Block
from learningchain.ledger.compact import check_compact, rebuild_compact
from learningchain.core.encoding import EncodingError, encode_weights, is_hex, parse_json
from learningchain.core.errors import ValidationError
from learningchain.node.web.explorer import MAX_ROUNDS_PAGE, ROUNDS_PAGE, explorer, round_detail as round_view, rounds_overview
from learningchain.ledger.headers import MAX_HEADERS_PAGE
from learningchain.node.mining_auth import HEADER as MINER_TOKEN_HEADER, TOKEN_FILE, token_matches, write_token
from learningchain.node.p2p.peer_counters import HEADER_ESTIMATE, message_type
from learningchain.node.p2p.peer_urls import check_peer_url, peer_url_refusal
from learningchain.node.p2p.peers import SYNC_PAGE_BYTES
from learningchain.ledger.tx import UpdateTx
from learningchain.node.p2p.wire import (MAX_RATIO, ContentEncodingError, RatioError, TooLargeError, compress_reply,
                                gunzip_capped, is_gzip, is_identity)

MAX_BODY_BYTES = 4 << 20
#: decoded body cap of POST /peers, /sync/headers, /sync/blocks (500 hashes: ~34 KB) and /mining/submit.
SMALL_BODY_BYTES = 64 << 10
#: decoded body cap of POST /inv: 1000 ids of 67 bytes each, with room.
INV_BODY_BYTES = 128 << 10
MAX_CHAIN_PAGE = 500
MAX_SYNC_PAGE = 500
#: an integer in a path or query: ASCII digits only (str.isdigit() accepts "²" and "٣").
_DIGITS = re.compile(r"[0-9]{1,15}")

api = Blueprint("api", __name__)
log = logging.getLogger(__name__)


class ApiError(Exception):
    """A client error with its HTTP status (4xx) and optional reason code."""

    def __init__(self, status: int, error: str, reason: str | None = None):
        super().__init__(error)
        self.status, self.error, self.reason = status, error, reason


def node():
    return current_app.config["NODE"]


def body(cap: int | None = None) -> dict:
    """The request's JSON object, strictly decoded, from at most ``cap`` bytes
    (decoded; default ``MAX_CONTENT_LENGTH``, the /blocks cap)."""
    if request.mimetype != "application/json":
        raise ApiError(415, f"Content-Type must be application/json, got {request.mimetype or 'none'!r}",
                       "bad-content-type")
    try:
        doc = parse_json(request_bytes(cap or current_app.config["MAX_CONTENT_LENGTH"]))
    except EncodingError as exc:
        raise ApiError(400, f"malformed JSON body: {exc}", "bad-json") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "the JSON body must be an object", "bad-json")
    return doc


def request_bytes(cap: int) -> bytes:
    """The body as sent, or decoded from ``Content-Encoding: gzip``, at most
    ``cap`` bytes (the route's own cap: parsing JSON costs ~0.15 s per MiB, so a
    16 KB gzip body must not become 16 MiB to parse), and refused when it
    decodes to more than :data:`~learningchain.node.p2p.wire.MAX_RATIO` times its size
    (learningchain/node/p2p/wire.py)."""
    raw, coding = request.get_data(cache=True), request.headers.get("Content-Encoding")
    where = f"{request.method} {request.path}"
    if is_identity(coding):
        if len(raw) > cap:
            raise ApiError(413, f"request body of {len(raw)} bytes is over the cap of {cap} bytes for {where}",
                           "body-too-large")
        return raw
    if not is_gzip(coding):
        raise ApiError(415, f"Content-Encoding must be gzip or absent, got {coding!r}",
                       "unsupported-content-encoding")
    try:
        return gunzip_capped(raw, cap, MAX_RATIO)
    except RatioError as exc:
        raise ApiError(413, f"request body refused: {exc}", "body-compression-ratio") from None
    except TooLargeError:
        raise ApiError(413, f"request body decodes to more than the cap of {cap} bytes for {where}",
                       "body-too-large") from None
    except ContentEncodingError as exc:
        raise ApiError(400, str(exc), "bad-content-encoding") from None


def hex_id(value: str, what: str) -> str:
    if not is_hex(value, 32):
        raise ApiError(400, f"{what} must be 64 lowercase hex characters", "bad-id")
    return value


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not is_number(raw) or not lo <= int(raw) <= hi:
        raise ApiError(400, f"query parameter {name} must be an integer in [{lo}, {hi}]", "bad-query")
    return int(raw)


def is_number(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def peer_header() -> str | None:
    url = request.headers.get("X-Peer")
    return url if url and check_peer_url(url) is None else None


def summary(entry) -> dict:
    """A main-chain row of ``/chain`` from a chain entry (no block body is read)."""
    c = entry.commitment
    return {"height": entry.height, "hash": entry.hash, "timestamp": entry.header.timestamp,
            "txs": len(entry.tx_ids), "miner": entry.header.miner,
            "round_closed": c.get("round") if isinstance(c, dict) else None}


# --- reads -----------------------------------------------------------------------------

@api.get("/status")
def status():
    return jsonify(node().status())


@api.get("/tip")
def tip():
    """What peers poll every sync tick: a few dozen bytes instead of ``/status``."""
    return jsonify(node().tip_summary())


@api.get("/chain")
def chain():
    n = node()
    with n.lock:
        height = n.chain.height
        limit = int_arg("limit", 20, 1, MAX_CHAIN_PAGE)
        start = int_arg("start", max(0, height - limit + 1), 0, 2**53)
        blocks = [summary(e) for e in n.chain.main_entries(start, limit)]
    return jsonify({"height": height, "blocks": blocks})


@api.get("/blocks/<ref>")
def block(ref: str):
    n = node()
    with n.lock:
        if is_number(ref):
            b = n.chain.block_at(int(ref))
        else:
            b = n.chain.get_block(hex_id(ref, "block hash"))
    if b is None:
        raise ApiError(404, f"no block {ref}")
    if request.accept_mimetypes.best == "text/html":
        from learningchain.node.web.explorer import render_block
        return render_block(n, b)
    return jsonify({**b.to_dict(), "hash": b.hash})


def sync_locator(doc: dict) -> list[str]:
    locator = doc.get("locator")
    if not isinstance(locator, list) or len(locator) > 200 or not all(is_hex(h, 32) for h in locator):
        raise ApiError(400, "locator must be a list of at most 200 block hashes (64 hex)", "bad-locator")
    return locator


def sync_limit(doc: dict, default: int, most: int) -> int:
    limit = doc.get("limit", default)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
        raise ApiError(400, f"limit must be an integer in [1, {most}]", "bad-query")
    return limit


@api.post("/sync/headers")
def sync_headers():
    """Headers-first sync: up to ``limit`` main-chain headers after the locator."""
    doc = body(SMALL_BODY_BYTES)
    locator, limit = sync_locator(doc), sync_limit(doc, MAX_HEADERS_PAGE, MAX_HEADERS_PAGE)
    n = node()
    with n.lock:
        headers = n.chain.headers_after(locator, limit + 1)
        height, tip, work = n.chain.height, n.chain.tip.hash, n.chain.tip_work
    return jsonify({"height": height, "tip": tip, "work": f"{work:x}",
                    "headers": [h.to_dict() for h in headers[:limit]], "more": len(headers) > limit})


@api.post("/sync/blocks")
def sync_blocks():
    """Blocks by hash (``{"hashes"}``, what headers-first sync asks for), or the
    main-chain blocks after a locator (``{"locator", "limit"}``)."""
    doc = body(SMALL_BODY_BYTES)
    n = node()
    if "hashes" in doc:
        hashes = doc["hashes"]
        if not isinstance(hashes, list) or not 1 <= len(hashes) <= MAX_SYNC_PAGE or not all(
                is_hex(h, 32) for h in hashes):
            raise ApiError(400, f"hashes must be a list of 1 to {MAX_SYNC_PAGE} block hashes (64 hex)",
                           "bad-locator")
        with n.lock:
            entries = []
            for h in hashes:  # in the order asked, up to the first we do not hold
                e = n.chain.entry(h)
                if e is None:
                    break
                entries.append(e)
            page, height = _sync_page(entries), n.chain.height
    else:
        locator, limit = sync_locator(doc), sync_limit(doc, 100, MAX_SYNC_PAGE)
        with n.lock:
            entries = n.chain.entries_after(locator, limit)
            page, height = _sync_page(entries), n.chain.height
    return jsonify({"height": height, "blocks": page, "more": len(page) < len(entries)})


def _sync_page(entries) -> list[dict]:
    """The first entries' blocks within the page's byte budget (peers cap what they
    read: peers.max_reply_bytes), sized from the index before any body is read,
    so a page never reads more than :data:`SYNC_PAGE_BYTES` of bodies from the store."""
    page, size = [], 0
    for e in entries:
        if page and size + e.size > SYNC_PAGE_BYTES:
            break
        page.append(e.block.to_dict())
        size += e.size
    return page


@api.get("/txs/<txid>")
def tx(txid: str):
    found = node().find_tx(hex_id(txid, "tx id"))
    if found is None:
        raise ApiError(404, f"no tx {txid} in the mempool or the main chain")
    return jsonify(found)


@api.get("/mempool")
def mempool():
    n = node()
    with n.lock:
        txs = [{"id": t.id, "sender": t.sender, "round": t.round, "num_samples": t.num_samples,
                "size": t.size} for t in n.ledger.mempool]
    return jsonify({"count": len(txs), "bytes": sum(t["size"] for t in txs), "txs": txs})


@api.get("/peers")
def peers():
    n = node()
    return jsonify({"self": n.url, "peers": n.peers.snapshot(), "traffic": n.peers.traffic()})


@api.get("/model")
def model():
    n = node()
    with n.lock:
        state = n.chain.tip_state
        weights, digest, r = state.model, state.model_digest, state.round - 1
    return jsonify({"round": r, "digest": digest, "metrics": n.metrics.get(r),
                    "weights": encode_weights(weights)})


@api.get("/rounds")
def rounds():
    """A page of rounds: ``start`` (default: the newest page) and ``limit``
    (default 50, at most 200), oldest first; ``current`` to page from."""
    limit = int_arg("limit", ROUNDS_PAGE, 1, MAX_ROUNDS_PAGE)
    start = int_arg("start", 0, 1, 2**53) if "start" in request.args else None
    page, current = rounds_overview(node(), limit, start)
    return jsonify({"current": current, "start": page[0]["round"] if page else start, "limit": limit,
                    "rounds": page})


@api.get("/rounds/<r>")
def round_detail(r: str):
    if not is_number(r) or int(r) < 1:
        raise ApiError(400, "round must be a positive integer", "bad-id")
    detail = round_view(node(), int(r))
    if detail is None:
        raise ApiError(404, f"round {r} has not opened yet")
    detail["energy"] = node().energy_report(int(r))  # this node's own estimate (energy.py), or null
    return jsonify(detail)


# --- writes ------------------------------------------------------------------------------

@api.post("/txs")
def post_tx():
    doc = body(node().config.max_tx_bytes + SMALL_BODY_BYTES)
    t = UpdateTx.parse(doc)  # ValidationError -> 400 with its reason
    status = node().submit_tx(t, peer=peer_header())
    return jsonify({"status": status, "id": t.id}), 202


@api.post("/inv")
def inv():
    """Announced tx ids -> the ones we want (neither in the mempool nor the chain)."""
    ids = body(INV_BODY_BYTES).get("txs")
    if not isinstance(ids, list) or len(ids) > 1000 or not all(is_hex(i, 32) for i in ids):
        raise ApiError(400, "txs must be a list of at most 1000 tx ids (64 hex)", "bad-id")
    return jsonify({"want": node().peers.wanted(ids, peer_header())})


@api.post("/blocks")
def post_block():
    doc, n, peer = body(), node(), peer_header()
    g.compact = "compact" in doc  # for the per-message-type byte counters
    if "compact" in doc:
        if set(doc) != {"compact"}:
            raise ApiError(400, "a compact block message holds only 'compact'", errors.BLOCK_MALFORMED)
        compact = check_compact(n, doc["compact"])  # all that costs no request, before any fetch
        if compact.known:
            return jsonify({"status": "known", "hash": compact.header.hash}), 202
        if not compact.parent_known:  # fetch nothing for it: sync from the sender brings it
            return jsonify({"status": n.note_orphan(compact.header, peer), "hash": compact.header.hash}), 202
        b = rebuild_compact(n, compact, peer)
        if b is None:
            return jsonify({"status": "missing-txs",
                            "error": "some transactions are unknown here; send the full block"}), 202
    else:
        b = Block.parse(doc)
    status = n.submit_block(b, peer=peer)
    return jsonify({"status": status, "hash": b.hash}), 202


@api.post("/peers")
def post_peer():
    """Someone names a peer (itself, usually). A malformed URL or one with a
    path is 400; otherwise the URL is *offered* (peers.py): it joins our table
    only once it answers ``GET /tip`` with our genesis, so ``added`` is false
    and ``status`` says what happens: ``pending`` (handshake queued), ``known``,
    ``self``, or the refusal (``peer-host-full``, ``peer-subnet-full``,
    ``peer-table-full``, ``peer-handshake-failed``, ``peer-handshake-busy``)."""
    url = body(SMALL_BODY_BYTES).get("url")
    refusal = peer_url_refusal(url)
    if refusal:
        raise ApiError(400, refusal[1], refusal[0])
    n = node()
    status = n.peers.offer(url)
    return jsonify({"added": False, "status": status, "peers": [n.url] + n.peers.urls()})


def mining_client() -> str:
    """The caller of ``/mining/*`` if it holds the node's miner token
    (:mod:`learningchain.node.mining_auth`), else 403 ``mining-forbidden``. Returns
    its template bucket: ``X-Miner-Id`` if given (several miners on one host),
    else its address."""
    if not token_matches(current_app.config["MINER_TOKEN"], request.headers.get(MINER_TOKEN_HEADER)):
        raise ApiError(403, f"/mining/* serve only this node's own miner: send the token from "
                            f"<data-dir>/{TOKEN_FILE} in the {MINER_TOKEN_HEADER} header "
                            f"(python -m miner --data-dir <data-dir>)", errors.MINING_FORBIDDEN)
    name = request.headers.get("X-Miner-Id", "")
    return f"id:{name[:32]}" if name else f"addr:{request.remote_addr}"


@api.get("/mining/template")
def mining_template():
    tid, b = node().new_template(mining_client())
    return jsonify({"template_id": tid, "height": b.height, "prev_hash": b.header.prev_hash,
                    "prefix": b.header.prefix().hex(), "target": f"{b.header.target:064x}"})


@api.post("/mining/submit")
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


# --- errors, registered once ------------------------------------------------------------------

def _json_error(status: int, error: str, reason: str | None = None):
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


def create_app(node_obj) -> Flask:
    app = Flask(__name__)
    app.config["NODE"] = node_obj
    app.config["MINER_TOKEN"] = write_token(node_obj.data_dir)  # a new one at every start
    app.config["MAX_CONTENT_LENGTH"] = max(MAX_BODY_BYTES, node_obj.config.max_block_bytes + (64 << 10))
    app.json.sort_keys = False
    app.register_blueprint(api)
    app.register_blueprint(explorer)
    register_errors(app)

    @app.after_request
    def compress_and_count(resp):
        resp = compress_reply(resp, request.headers.get("Accept-Encoding"))  # counted as sent
        peer = request.headers.get("X-Peer")
        if peer:
            kind = message_type(request.method, request.path, g.get("compact", False))
            node_obj.peers.count_inbound(peer, (request.content_length or 0) + HEADER_ESTIMATE,
                                         (resp.calculate_content_length() or 0) + HEADER_ESTIMATE, kind)
        return resp
    return app
