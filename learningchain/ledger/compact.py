"""Compact blocks (the idea of BIP 152): what one carries, and every check on it that costs no request.

A block travels as header, commitment and tx ids, and the receiver rebuilds it
from its mempool and chain, fetching only the txs it lacks from the sender.
:mod:`learningchain.node.p2p.gossip` sends them; :mod:`learningchain.node.web.peer_routes`
receives them, checks them here (:func:`check_compact`, against the narrow
:class:`CompactContext` a node provides) and rebuilds them in the node layer
(:func:`learningchain.node.p2p.relay.rebuild_compact`, the only part that does I/O).

Nothing is fetched before the compact block has passed every check that costs
no request (:func:`check_compact`): a compact block costs its sender a header
with the work our chain requires on that parent, not a 26 KB request naming 400
ids each of which we would fetch (issue 10, item 3).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from learningchain.core import errors
from learningchain.ledger.block import BlockHeader, commitment_hash_of, merkle_root
from learningchain.ledger.chain import Chain
from learningchain.core.encoding import EncodingError, is_hex
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig

#: the most one retarget can ease the target: header_rules.next_target clamps the
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
    recent = chain.main_entries(max(0, chain.height - window + 1), window)  # headers: no body read
    easiest = max(e.header.target for e in recent)
    return min(chain.config.pow_limit, easiest * MAX_RETARGET_FACTOR)


def check_header_work(header: BlockHeader, pow_limit: int, plausible: int | None = None) -> None:
    """Context-free proof of work: the header's target is no easier than the
    network's ``pow_limit`` (``block-wrong-target``: never valid) nor than
    ``plausible`` (:func:`plausible_target_limit`; ``block-target-too-easy``: local
    policy), and the header hashes below it. Checked before a block whose parent
    we lack, or whose txs we lack, costs us anything (a fetch, a sync); the exact
    target is checked against the parent when the block connects (header_rules.check_header)."""
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


#: no transaction serializes to fewer bytes (field names, sender key, base digest
#: and signature alone take more): a block of ``max_block_bytes`` holds at most
#: ``max_block_bytes // MIN_TX_BYTES`` txs.
MIN_TX_BYTES = 200
#: the most tx ids a compact block may name, whatever ``max_block_bytes`` allows;
#: a larger block travels in full.
MAX_COMPACT_TXIDS = 4096


def max_compact_txids(max_block_bytes: int) -> int:
    return min(MAX_COMPACT_TXIDS, max_block_bytes // MIN_TX_BYTES)


@dataclass(frozen=True)
class Compact:
    """A compact block whose header passed every check a header alone allows."""
    header: BlockHeader
    commitment: dict | None
    txids: tuple[str, ...]
    parent_known: bool
    known: bool = False  # we hold this block already: nothing else was checked


class CompactContext(Protocol):
    """What :func:`check_compact` needs of the receiving node: which blocks it
    holds, its network config, and the header checks against our chain (each
    taking the node's lock itself)."""

    @property
    def config(self) -> NetworkConfig: ...

    def knows_block(self, block_hash: str) -> bool: ...

    def plausible_target_limit(self) -> int: ...

    def check_header_on_parent(self, header: BlockHeader) -> bool:
        """False if the parent is unknown; raises unless the header passes on it."""
        ...


def check_compact(node: CompactContext, doc: Any) -> Compact:
    """Everything about a compact block that costs no request, before any tx is
    fetched (docs/api.md, ``POST /blocks``): its shape; at most
    :func:`max_compact_txids` ids; the merkle root of the ids and the commitment
    hash against the header; and the header itself: a target no easier than
    ``pow_limit`` and its proof of work (:func:`check_header_work`), then with a known parent the
    header rules against that parent (height, proof of work, the target the
    chain requires there, timestamps: :func:`~learningchain.ledger.headers.check_next_header`)
    and side-branch admission (``block-side-work-too-low``, side_branches.py); with an
    unknown parent a target no easier than :func:`plausible_target_limit`."""
    if not isinstance(doc, dict) or set(doc) != {"header", "commitment", "txids"}:
        raise ValidationError(errors.BLOCK_MALFORMED,
                              "a compact block is an object with exactly header, commitment, txids")
    header = BlockHeader.parse(doc["header"])
    txids, commitment = doc["txids"], doc["commitment"]
    if node.knows_block(header.hash):
        return Compact(header, None, (), True, known=True)
    if not isinstance(txids, list):
        raise ValidationError(errors.BLOCK_MALFORMED, "txids must be a list of 64-hex ids")
    most = max_compact_txids(node.config.max_block_bytes)
    if len(txids) > most:
        raise ValidationError(errors.COMPACT_TOO_MANY_TXIDS,
                              f"{len(txids)} tx ids; a compact block names at most {most}: send the full block")
    if not all(is_hex(t, 32) for t in txids):
        raise ValidationError(errors.BLOCK_MALFORMED, "txids must be a list of 64-hex ids")
    if commitment is not None and not isinstance(commitment, dict):
        raise ValidationError(errors.BLOCK_MALFORMED, "commitment must be an object or null")
    if merkle_root([bytes.fromhex(t) for t in txids]).hex() != header.merkle_root:
        raise ValidationError(errors.BLOCK_BAD_MERKLE, "merkle root does not match the tx ids")
    try:
        chash = commitment_hash_of(commitment, None)
    except EncodingError as exc:
        raise ValidationError(errors.BLOCK_MALFORMED, f"commitment: {exc}") from None
    if chash != header.commitment_hash:
        raise ValidationError(errors.BLOCK_BAD_COMMITMENT_HASH, "commitment hash does not match the commitment")
    parent_known = node.knows_block(header.prev_hash)
    check_header_work(header, node.config.pow_limit, None if parent_known else node.plausible_target_limit())
    if parent_known:
        parent_known = node.check_header_on_parent(header)  # False only if the parent just went
    return Compact(header, commitment, tuple(txids), parent_known)

