"""Compact blocks (the idea of BIP 152): a block travels as header, commitment
and tx ids, and the receiver rebuilds it from its mempool and chain, fetching
only the txs it lacks from the sender. Split from :mod:`learningchain.peers`,
which sends them; :mod:`learningchain.api` receives them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from learningchain import errors
from learningchain.block import Block, BlockHeader
from learningchain.chain import Chain
from learningchain.encoding import is_hex
from learningchain.errors import ValidationError
from learningchain.tx import UpdateTx

if TYPE_CHECKING:
    from learningchain.service import Node

#: the most one retarget can ease the target: chain.next_target clamps the
#: measured time to 4x the expected (docs/protocol.md, section 5).
MAX_RETARGET_FACTOR = 4


def compact_block(block) -> dict:
    """Header, commitment and tx ids: what a peer needs to rebuild ``block`` from its mempool."""
    return {"header": block.header.to_dict(), "commitment": block.commitment,
            "txids": [t.id for t in block.txs]}


def plausible_target_limit(chain: Chain) -> int:
    """The easiest target a block near our tip can carry: the easiest target on our
    main chain within the last ``retarget_window`` blocks, times
    :data:`MAX_RETARGET_FACTOR`, capped by ``pow_limit``.

    Sound for every block whose parent is on our main chain within that window or
    descends from it across at most one retarget boundary: such a block's target
    is its parent's, or its parent's eased by at most the clamp. An orphan from a
    peer further ahead, or on a fork from deeper history, may be refused by it; it
    then arrives by the periodic ``/tip`` sync, which checks each block against
    its parent. Without this bound the sender writes the target itself and, with
    the default ``pow_limit`` of 2^255 - 1, half of all headers pass at nonce 0."""
    window = chain.config.retarget_window
    recent = chain.main_chain(max(0, chain.height - window + 1), window)
    easiest = max(b.header.target for b in recent)
    return min(chain.config.pow_limit, easiest * MAX_RETARGET_FACTOR)


def check_header_work(header: BlockHeader, pow_limit: int, plausible: int | None = None) -> None:
    """Context-free proof of work: the header's target is no easier than the
    network's ``pow_limit`` (``block-wrong-target``: never valid) nor than
    ``plausible`` (:func:`plausible_target_limit`; ``block-target-too-easy``: local
    policy), and the header hashes below it. Checked before a block whose parent
    we lack, or whose txs we lack, costs us anything (a fetch, a sync); the exact
    target is checked against the parent when the block connects (chain.py)."""
    if header.target > pow_limit:
        raise ValidationError(errors.BLOCK_BAD_TARGET,
                              f"target {header.target:064x} is easier than the pow limit {pow_limit:064x}")
    if plausible is not None and header.target > plausible:
        raise ValidationError(errors.BLOCK_TARGET_TOO_EASY,
                              f"target {header.target:064x} is easier than any block near our tip may carry "
                              f"({plausible:064x}: our easiest recent target times {MAX_RETARGET_FACTOR}); "
                              f"if the block is valid it arrives by sync")
    if not header.check_pow():
        raise ValidationError(errors.BLOCK_BAD_POW, f"header hash {header.hash} is not below its target")


def rebuild_compact(node: "Node", doc: Any, peer: str | None) -> Block | None:
    """A block from its compact form: header + commitment + tx ids; txs from our
    mempool/chain or fetched from ``peer``. None if some tx cannot be found.

    The header's proof of work is checked first (against a target no easier than
    :func:`plausible_target_limit` when its parent is unknown here), and missing txs are fetched only
    from ``peer`` if it is already in our peer table and not backing off (the
    ``X-Peer`` header is the client's word: otherwise any client could make us
    send requests to any URL). Without such a sender a block whose txs we lack is
    refused with ``compact-unknown-peer``; the sender then posts the full block."""
    if not isinstance(doc, dict) or set(doc) != {"header", "commitment", "txids"}:
        raise ValidationError(errors.BLOCK_MALFORMED,
                              "a compact block is an object with exactly header, commitment, txids")
    header = BlockHeader.parse(doc["header"])
    # before anything costs us a request; the plausible-target bound only for an
    # unknown parent: with a known one the exact target is checked when it connects
    known_parent = node.knows_block(header.prev_hash)
    check_header_work(header, node.config.pow_limit, None if known_parent else node.plausible_target_limit())
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
            fetch_from = node.peers.fetch_source(peer)  # raises compact-unknown-peer
        if tx is None:  # the first failure ends it: a slow sender holds us once, not per tx
            fetched = node.peers.fetch_tx(fetch_from, txid)
            if fetched is not None:
                tx = UpdateTx.parse(fetched)
        if tx is None or tx.id != txid:
            return None
        txs.append(tx)
    return Block(header=header, txs=tuple(txs), commitment=doc["commitment"], config=None)
