"""What a node takes in: txs and blocks from its API, its peers and its own threads.

Each is validated against the node's ledger under its lock, counted and logged
when refused (``/status`` -> ``refused``), and gossiped when it extends what we
hold. An update for the next round from a peer is held until that round opens
(:class:`~learningchain.ledger.mempool.EarlyTxs`); a block whose parent we lack
is an orphan, and a sync is queued from its sender. These functions work on an
:class:`IntakeNode` (:class:`~learningchain.node.service.Node` is one), which
keeps thin methods (``Node.submit_tx``, ``Node.submit_block``, ...) calling them.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import Any, ContextManager, Protocol

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.ledger.block import Block, BlockHeader
from learningchain.ledger.chain import AddResult, Chain
from learningchain.ledger.compact import check_header_work
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.headers import check_next_header
from learningchain.ledger.mempool import EarlyTxs
from learningchain.ledger.tx import UpdateTx
from learningchain.node.chainstate import Ledger


def now_ms() -> int:
    return int(time.time() * 1000)


class PeerGossip(Protocol):
    """What intake uses of the node's peers: who is one, what each sent us, gossip and sync."""

    def is_peer(self, url: str | None) -> bool: ...

    def mark_seen(self, url: str | None, key: str) -> None: ...

    def broadcast_tx(self, tx: UpdateTx, exclude: str | None = None, push: bool = False) -> list: ...

    def relay_tx(self, tx: UpdateTx, exclude: str | None = None) -> None: ...

    def broadcast_block(self, block: Block, exclude: str | None = None) -> list: ...

    def sync_in_background(self, url: str | None) -> bool: ...

    def heard_from(self, url: str | None) -> None: ...


class IntakeNode(Protocol):
    """What taking in txs and blocks uses of the node."""

    lock: ContextManager[Any]
    ledger: Ledger
    config: NetworkConfig
    peers: PeerGossip
    refused: Counter[str]
    early: EarlyTxs
    early_held: int
    orphans: int
    mempool_version: int

    @property
    def chain(self) -> Chain: ...

    def log(self, line: str) -> None: ...

    def observe_energy(self) -> None: ...

    def add_timing(self, name: str, seconds: float, count: int = 1) -> None: ...

    def plausible_target_limit(self) -> int: ...

    def tip_moved(self) -> None: ...

    def mempool_changed(self) -> None: ...

    def hold_miner(self) -> None: ...

    def release_miner(self) -> None: ...


def refuse(node: IntakeNode, exc: ValidationError, what: str, origin: str) -> None:
    node.refused[exc.code] += 1
    exc.counted = True  # the API's error handler must not count it again
    node.log(f"{what} refused ({origin}): {exc.code}: {exc.detail[:160]}")


def submit_tx(node: IntakeNode, tx: UpdateTx, peer: str | None = None, own: bool = False) -> str:
    """Add to our mempool and gossip; returns "accepted", "known" or "early" (from a
    peer, for the next round, or a secure-aggregation tx for a phase not open yet:
    held until it opens, see EarlyTxs). Raises ValidationError."""
    origin = "own" if own else (peer or "api")
    try:
        with node.lock:
            status = node.ledger.submit_tx(tx) or "accepted"
            if status == "accepted":
                node.mempool_changed()
    except ValidationError as exc:
        refusal = exc
        # gossip from a peer only: the next round's tx, or a secure-aggregation tx whose phase is not open
        if exc.code in (errors.TX_ROUND_NOT_OPEN, errors.SA_PHASE_NOT_OPEN) and node.peers.is_peer(peer):
            try:
                held = hold_early(node, tx, peer)
            except ValidationError as why:  # off the allow-list, malformed, forged
                refusal, held = why, False
            if held:
                node.early_held += 1
                node.peers.mark_seen(peer, tx.id)
                return "early"
        refuse(node, refusal, f"tx {tx.id[:12]} round {tx.round}", origin)
        raise refusal from None
    node.peers.mark_seen(peer, tx.id)
    if status == "accepted":
        node.log(f"tx {tx.id[:12]} accepted: round {tx.round} from {tx.sender[:12]} ({origin})")
        if own or peer is None:  # ours, or handed to our API: nobody else has it yet
            node.peers.broadcast_tx(tx, exclude=peer, push=own)
        else:
            node.peers.relay_tx(tx, exclude=peer)
    return status


def hold_early(node: IntakeNode, tx: UpdateTx, peer: str | None) -> bool:
    """Hold an update for the next round, or a secure-aggregation tx for a phase
    not open yet (EarlyTxs): its signature and weights
    are checked without the lock (milliseconds that HTTP handlers and the
    miner would otherwise wait for), the lock is taken only to insert it."""
    with node.lock:
        open_round, shapes = node.chain.tip_state.round, node.chain.expected_shapes
    if not node.early.admissible(tx, open_round, node.config, shapes):
        return False
    with node.lock:
        return node.early.insert(tx, node.chain.tip_state.round, peer)


def submit_block(node: IntakeNode, block: Block, peer: str | None = None, relay: bool = True,
                 solicited: bool = False) -> str:
    """Validate and add; gossip if it extends our best chain. Returns the ledger's
    status or "orphan" (the missing ancestors are then fetched from ``peer`` if
    it is in our peer table: the ``X-Peer`` header is only the client's word).
    ``solicited``: fetched by headers-first sync along a heavier header chain
    (exempt from side-branch admission, side_branches.py)."""
    node.observe_energy()
    if peer is not None and block.header.prev_hash == node.chain.tip.hash:
        try:  # a peer's block on our tip: its header's rules first (the target our chain requires,
            # not the one it claims), then our miner stops searching on the old tip while we validate
            check_header_on_parent(node, block.header)
        except ValidationError:
            pass  # refused with its reason by the validation below; our miner searches on
    try:
        status = _add_block(node, block, peer, relay, solicited)
    except BaseException:
        node.release_miner()
        raise
    if status not in ("connected", "reorg"):
        node.release_miner()
    return status


def _add_block(node: IntakeNode, block: Block, peer: str | None, relay: bool, solicited: bool) -> str:
    try:
        with node.lock:
            t0 = time.perf_counter()
            result = node.ledger.submit_block(block, now_ms(), solicited=solicited)
            spent = time.perf_counter() - t0
            node.mempool_version += 1
    except ValidationError as exc:
        if exc.code == errors.BLOCK_BAD_PREV:
            try:  # its own proof of work first, against a target our chain could require
                check_header_work(block.header, node.config.pow_limit, node.plausible_target_limit())
            except ValidationError as bad:
                refuse(node, bad, f"orphan block {block.height} {block.hash[:12]}", peer or "api")
                raise bad from None
            return note_orphan(node, block.header, peer)
        refuse(node, exc, f"block {block.height} {block.hash[:12]}", peer or "api")
        raise
    node.peers.mark_seen(peer, block.hash)
    if result.status != "known":
        node.add_timing("validate_closing" if block.commitment else "validate", spent)
    if result.status in ("connected", "reorg"):
        node.peers.heard_from(peer)  # new work from it: reachable again (ends a back-off)
        if relay:  # first: the sooner peers have it, the fewer blocks are mined on the old tip
            node.peers.broadcast_block(block, exclude=peer)
        node.tip_moved()
        log_result(node, result)
        submit_early(node)
    elif result.status == "side":
        node.log(f"block {block.height} {block.hash[:12]} on a side branch")
    if result.evicted:
        chain = node.chain
        node.log(f"evicted {len(result.evicted)} side-branch block(s) of least work"
                 f"{' (this one among them)' if block.hash in result.evicted else ''}: "
                 f"{chain.side_blocks} side blocks kept (cap {chain.max_side_blocks}), "
                 f"{chain.evicted_total} evicted since start")
    return result.status


def submit_mined(node: IntakeNode, block: Block) -> str:
    """A block our own miner just found on the template our ledger built: its
    compact form goes to the peers *before* we validate it (as BIP 152 lets a
    node announce a block whose header checks out), so the other miners stop
    searching on the old tip a validation sooner. Each peer validates it fully
    anyway; the gossip seen-set keeps :func:`submit_block` from sending it twice."""
    with node.lock:
        extends = block.header.prev_hash == node.chain.tip.hash
    if extends and block.header.check_pow():
        node.peers.broadcast_block(block)
    return submit_block(node, block)


def note_orphan(node: IntakeNode, header: BlockHeader, peer: str | None) -> str:
    """A block (or compact block) whose parent we lack and whose header's own
    work checked out: count it and queue a sync from ``peer`` if it is in our
    peer table. Returns "orphan"."""
    node.orphans += 1
    node.peers.heard_from(peer)  # its header's work checked out: sync from it now, not after its back-off
    queued = node.peers.sync_in_background(peer)
    node.log(f"block {header.height} {header.hash[:12]} is an orphan; "
             + (f"syncing from {peer}" if queued else
                f"no sync queued (sender {peer or 'unnamed'} is not a peer, or a sync with it is pending)"))
    return "orphan"


def check_header_on_parent(node: IntakeNode, header: BlockHeader) -> bool:
    """False if ``header``'s parent is unknown here; otherwise raise unless the
    header meets every rule a header alone can be checked against on that
    parent (headers.check_next_header: height, proof of work, the required
    target, timestamps) and side-branch admission (side_branches.py). What a compact
    block must pass before any of its txs is fetched."""
    with node.lock:
        parent = node.chain.entry(header.prev_hash)
        if parent is None:
            return False
        if not header.check_pow():  # the cheap checks first: a deep parent costs a walk
            raise ValidationError(errors.BLOCK_BAD_POW, f"header hash {header.hash} is not below its target")
        node.chain.check_side_admission(parent, header)
        check_next_header(header, parent, node.config, now_ms())
        extends = parent.hash == node.chain.tip.hash
    if extends:
        node.hold_miner()  # our search is on a tip this block replaces (if its body checks out)
    return True


def submit_early(node: IntakeNode) -> None:
    with node.lock:
        ready = node.early.take(node.chain.tip_state.round)
    for tx, peer in ready:
        try:
            submit_tx(node, tx, peer=peer)
        except ValidationError:
            pass  # counted and logged by submit_tx


def log_result(node: IntakeNode, result: AddResult) -> None:
    if result.status == "reorg":
        node.log(f"reorg: {len(result.disconnected)} block(s) out, {len(result.connected)} in")
    for b in result.connected:
        node.log(f"block {b.height} {b.hash[:12]} connected ({len(b.txs)} txs, miner {b.header.miner[:12]})")
        c = b.commitment
        if c:
            node.log(f"round {c.get('round')} closed at height {b.height}: "
                     f"{len(c.get('accepted', []))} accepted, {len(c.get('rejected', {}))} rejected")


def receive_block_doc(node: IntakeNode, doc: Any, peer: str | None = None, relay: bool = True,
                      solicited: bool = False, expect: str | None = None) -> str:
    """A full block document from a peer or sync; validation errors become a
    status. ``expect``: the hash the block must have (sync fetches by hash)."""
    try:
        block = Block.parse(doc)
        if expect is not None and block.hash != expect:
            raise ValidationError(errors.BLOCK_MALFORMED, f"asked for block {expect}, got {block.hash}")
        return submit_block(node, block, peer=peer, relay=relay, solicited=solicited)
    except ValidationError as exc:
        if not getattr(exc, "counted", False):  # submit_block's _refuse counted the others
            refuse(node, exc, "block document", peer or "sync")
        return exc.code
