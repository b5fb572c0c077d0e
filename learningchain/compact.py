"""Compact blocks (the idea of BIP 152): a block travels as header, commitment
and tx ids, and the receiver rebuilds it from its mempool and chain, fetching
only the txs it lacks from the sender. Split from :mod:`learningchain.peers`,
which sends them; :mod:`learningchain.api` receives them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learningchain import errors
from learningchain.block import Block, BlockHeader
from learningchain.encoding import is_hex
from learningchain.errors import ValidationError
from learningchain.tx import UpdateTx

if TYPE_CHECKING:
    from learningchain.service import Node

#: refusal of a compact block whose missing txs we will not fetch from its sender.
COMPACT_UNKNOWN_PEER = "compact-unknown-peer"


def compact_block(block) -> dict:
    """Header, commitment and tx ids: what a peer needs to rebuild ``block`` from its mempool."""
    return {"header": block.header.to_dict(), "commitment": block.commitment,
            "txids": [t.id for t in block.txs]}


def check_header_work(header: BlockHeader, pow_limit: int) -> None:
    """Context-free proof of work: the header hashes below its own target, and that
    target is no easier than the network's ``pow_limit``. Checked before a block
    from an unknown sender costs us anything (a fetch, a sync); the exact target
    is checked against the parent when the block connects (chain.py)."""
    if header.target > pow_limit:
        raise ValidationError(errors.BLOCK_BAD_TARGET,
                              f"target {header.target:064x} is easier than the pow limit {pow_limit:064x}")
    if not header.check_pow():
        raise ValidationError(errors.BLOCK_BAD_POW, f"header hash {header.hash} is not below its target")


def rebuild_compact(node: "Node", doc: Any, peer: str | None) -> Block | None:
    """A block from its compact form: header + commitment + tx ids; txs from our
    mempool/chain or fetched from ``peer``. None if some tx cannot be found.

    The header's proof of work is checked first, and missing txs are fetched only
    from ``peer`` if it is already in our peer table and not backing off (the
    ``X-Peer`` header is the client's word: otherwise any client could make us
    send requests to any URL). Without such a sender a block whose txs we lack is
    refused with ``compact-unknown-peer``; the sender then posts the full block."""
    if not isinstance(doc, dict) or set(doc) != {"header", "commitment", "txids"}:
        raise ValidationError(errors.BLOCK_MALFORMED,
                              "a compact block is an object with exactly header, commitment, txids")
    header = BlockHeader.parse(doc["header"])
    check_header_work(header, node.config.pow_limit)  # before anything costs us a request
    txids = doc["txids"]
    if not isinstance(txids, list) or not all(is_hex(t, 32) for t in txids):
        raise ValidationError(errors.BLOCK_MALFORMED, "txids must be a list of 64-hex ids")
    if doc["commitment"] is not None and not isinstance(doc["commitment"], dict):
        raise ValidationError(errors.BLOCK_MALFORMED, "commitment must be an object or null")
    fetch_from = None
    txs = []
    for txid in txids:
        tx = node.lookup_tx(txid)
        if tx is None and fetch_from is None:
            fetch_from = node.peers.fetch_source(peer)  # raises COMPACT_UNKNOWN_PEER
        if tx is None:  # the first failure ends it: a slow sender holds us once, not per tx
            fetched = node.peers.fetch_tx(fetch_from, txid)
            if fetched is not None:
                tx = UpdateTx.parse(fetched)
        if tx is None or tx.id != txid:
            return None
        txs.append(tx)
    return Block(header=header, txs=tuple(txs), commitment=doc["commitment"], config=None)
