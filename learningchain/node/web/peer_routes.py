"""The routes peers talk to (a Flask blueprint): gossip intake (``POST /txs``,
``/inv``, ``/blocks``, full or compact), headers-first sync pages
(``POST /sync/headers``, ``/sync/blocks``) and the peer list (``GET`` and
``POST /peers``). Documented in docs/api.md and docs/protocol.md.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

from flask import Blueprint, current_app, g, jsonify

from learningchain.core import errors
from learningchain.core.encoding import is_hex
from learningchain.ledger.block import Block, BlockHeader
from learningchain.ledger.chain import Chain
from learningchain.ledger.compact import CompactContext, check_compact
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.headers import MAX_HEADERS_PAGE
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.txs import parse_tx
from learningchain.node.p2p.peer_urls import peer_url_refusal
from learningchain.node.p2p.peers import SYNC_PAGE_BYTES, PeerSet
from learningchain.node.p2p.relay import RelayNode, rebuild_compact
from learningchain.node.web.chain_routes import wants_html
from learningchain.node.web.ops_routes import require_admin_or_self
from learningchain.node.web.pages import peers_page
from learningchain.node.web.request_input import INV_BODY_BYTES, SMALL_BODY_BYTES, ApiError, body, peer_header

MAX_SYNC_PAGE = 500

peer_routes = Blueprint("peer_routes", __name__)


class PeerFacingNode(CompactContext, RelayNode, Protocol):
    """What the peer routes use of the node (:class:`~learningchain.node.service.Node`).
    ``POST /blocks`` also hands it to :func:`~learningchain.ledger.compact.check_compact`
    and :func:`~learningchain.node.p2p.relay.rebuild_compact`, so it includes their
    needs (:class:`CompactContext`, :class:`RelayNode`)."""
    url: str
    lock: AbstractContextManager
    config: NetworkConfig
    peers: PeerSet

    @property
    def chain(self) -> Chain: ...

    def submit_tx(self, tx: UpdateTx, peer: str | None = None) -> str: ...

    def submit_block(self, block: Block, peer: str | None = None) -> str: ...

    def note_orphan(self, header: BlockHeader, peer: str | None) -> str: ...

    def release_miner(self) -> None: ...


def node() -> PeerFacingNode:
    return current_app.config["NODE"]


# --- sync pages --------------------------------------------------------------------------

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


@peer_routes.post("/sync/headers")
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


@peer_routes.post("/sync/blocks")
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


# --- gossip intake and the peer list ---------------------------------------------------

@peer_routes.post("/txs")
def post_tx():
    doc = body(node().config.max_tx_bytes + SMALL_BODY_BYTES)
    t = parse_tx(doc)  # ValidationError -> 400 with its reason
    peer = peer_header()
    status = node().submit_tx(t, peer=peer)
    # a peer (X-Peer) gets the status alone: it knows the id, and every node answers
    # N-1 of these per round (bytes per node per round, issue 13)
    return jsonify({"status": status} if peer else {"status": status, "id": t.id}), 202


@peer_routes.post("/inv")
def inv():
    """Announced tx ids -> the ones we want (neither in the mempool nor the chain)."""
    ids = body(INV_BODY_BYTES).get("txs")
    if not isinstance(ids, list) or len(ids) > 1000 or not all(is_hex(i, 32) for i in ids):
        raise ApiError(400, "txs must be a list of at most 1000 tx ids (64 hex)", "bad-id")
    return jsonify({"want": node().peers.wanted(ids, peer_header())})


@peer_routes.post("/blocks")
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
        try:  # a compact block on our tip holds our miner (check_header_on_parent) until it connects
            b = rebuild_compact(n, compact, peer)
        except BaseException:
            n.release_miner()
            raise
        if b is None:
            n.release_miner()
            return jsonify({"status": "missing-txs",
                            "error": "some transactions are unknown here; send the full block"}), 202
    else:
        b = Block.parse(doc)
    status = n.submit_block(b, peer=peer)
    return jsonify({"status": status} if peer else {"status": status, "hash": b.hash}), 202


@peer_routes.get("/peers")
def peers():
    """The peer table and traffic; a browser gets the peers page (its graph and tables)."""
    n = node()
    doc = {"self": n.url, "peers": n.peers.snapshot(), "traffic": n.peers.traffic()}
    if wants_html():
        return peers_page(n, doc)
    return jsonify(doc)


@peer_routes.post("/peers")
def post_peer():
    """Someone names a peer (itself, usually). A malformed URL or one with a
    path is 400; otherwise the URL is *offered* (peer_offers.py): it joins our table
    only once it answers ``GET /tip`` with our genesis, so ``added`` is false
    and ``status`` says what happens: ``pending`` (handshake queued), ``known``,
    ``self``, or the refusal (``peer-host-full``, ``peer-subnet-full``,
    ``peer-table-full``, ``peer-handshake-failed``, ``peer-handshake-busy``).
    Naming a host other than the caller's own address is admin-only (403
    ``admin-only`` outside ``--admin-allow``, ops_routes.py); a peer's announce names itself."""
    url = body(SMALL_BODY_BYTES).get("url")
    refusal = peer_url_refusal(url)
    if refusal:
        raise ApiError(400, refusal[1], refusal[0])
    resolves_to = require_admin_or_self(url)  # naming another host: --admin-allow only (ops_routes.py)
    n = node()
    status = n.peers.offer(url, resolves_to=resolves_to)
    return jsonify({"added": False, "status": status, "peers": [n.url] + n.peers.urls()})
