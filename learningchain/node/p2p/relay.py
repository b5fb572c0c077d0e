"""Compact-block relay: rebuilding a compact block from our mempool and chain, fetching only the missing txs from its sender.

The checks that cost no request are in :func:`learningchain.ledger.compact.check_compact`
and run first; this is the part of receiving a compact block that does I/O
(through the peer set, :meth:`PeerSet.fetch_txs <learningchain.node.p2p.peers.PeerSet.fetch_txs>`).
It is typed against the narrow :class:`RelayNode`, not the whole node.
"""
from __future__ import annotations

from typing import Protocol

from learningchain.core.errors import ValidationError
from learningchain.ledger.block import Block
from learningchain.ledger.compact import Compact
from learningchain.ledger.tx import UpdateTx
from learningchain.ledger.txs import parse_tx


#: how long a compact block with a few unknown txs waits for their authors' pushes
#: before fetching them from its sender (seconds): the last update of a round is
#: pushed to every node at once, and a closing block could overtake it at a node;
#: fetching it then sent its body twice (6 % of a node's bytes per round).
PUSH_WAIT_S = 0.05
#: ... only when it misses at most this many.
PUSH_WAIT_MAX_TXS = 8


class TxFetcher(Protocol):
    """The peer set's side of fetching a compact block's missing txs."""

    def fetch_source(self, url: str | None) -> str:
        """``url`` if we may fetch from it; raises ``compact-unknown-peer`` otherwise."""
        ...

    def fetch_txs(self, url: str, txids: list[str]) -> list[dict] | None: ...


class RelayNode(Protocol):
    """What :func:`rebuild_compact` needs of the node: txs we hold, and its peers."""

    @property
    def peers(self) -> TxFetcher: ...

    def lookup_tx(self, txid: str) -> UpdateTx | None: ...

    def await_txs(self, txids: list[str], seconds: float) -> None: ...


def rebuild_compact(node: RelayNode, compact: Compact, peer: str | None) -> Block | None:
    """The block of a checked compact block (:func:`~learningchain.ledger.compact.check_compact`,
    known parent): txs from our mempool/chain, the missing ones fetched from ``peer``
    (:meth:`PeerSet.fetch_txs <learningchain.node.p2p.peers.PeerSet.fetch_txs>`: in bounded
    parallel, within a per-peer budget). None if some tx cannot be had: the
    sender then posts the full block. Missing txs are fetched only from ``peer``
    if it is already in our peer table and not backing off (the ``X-Peer`` header
    is the client's word: otherwise any client could make us send requests to any
    URL); without such a sender it is ``compact-unknown-peer``."""
    found = {txid: node.lookup_tx(txid) for txid in compact.txids}
    missing = [txid for txid, tx in found.items() if tx is None]
    if missing and len(missing) <= PUSH_WAIT_MAX_TXS:  # their authors' pushes are most likely in flight
        node.await_txs(missing, PUSH_WAIT_S)
        found.update({txid: node.lookup_tx(txid) for txid in missing})
        missing = [txid for txid, tx in found.items() if tx is None]
    if missing:
        source = node.peers.fetch_source(peer)  # raises compact-unknown-peer
        fetched = node.peers.fetch_txs(source, missing)
        if fetched is None:
            return None
        for txid, doc in zip(missing, fetched):
            try:
                tx = parse_tx(doc)
            except ValidationError:
                return None
            if tx.id != txid:
                return None
            found[txid] = tx
    return Block(header=compact.header, txs=tuple(found[t] for t in compact.txids),
                 commitment=compact.commitment, config=None)
