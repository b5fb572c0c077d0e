"""What the peer set needs from the node it serves: :class:`PeerHost`, a narrow protocol instead of the Node itself.

:class:`~learningchain.node.p2p.peers.PeerSet` and its parts (gossip, sync,
offers, tx fetches) are typed against it, so p2p never imports
:mod:`learningchain.node.service`; the Node satisfies it as it is.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Protocol

from learningchain.ledger.block import Block
from learningchain.ledger.chain import Entry
from learningchain.ledger.genesis import NetworkConfig


class PeerHost(Protocol):
    """The node as the peer set sees it: its network rules, files, log, chain
    queries and the two ways blocks and txs re-enter it."""

    config: NetworkConfig
    #: where the peer list is kept (peer_file.py)
    data_dir: Path
    #: the handshake checks a peer's genesis hash against ours (peer_offers.py)
    genesis: Block
    #: set when the node stops: a sync in progress ends
    stop_event: threading.Event

    def log(self, line: str) -> None: ...

    def tip_info(self) -> tuple[int, str]:
        """(height, tip hash) of our chain."""
        ...

    def tip_work(self) -> int: ...

    def tip_age(self) -> float:
        """Seconds since our tip last moved (a block connected)."""
        ...

    def chain_entry(self, block_hash: str) -> Entry | None:
        """Our index entry of a block we hold, or None."""
        ...

    def locator(self) -> list[str]: ...

    def knows_block(self, block_hash: str) -> bool: ...

    def has_tx(self, txid: str) -> bool: ...

    def rebroadcast_mempool(self) -> int: ...

    def receive_block_doc(self, doc: Any, peer: str | None = None, relay: bool = True,
                          solicited: bool = False, expect: str | None = None) -> str:
        """Submit a full block document; its status (``connected``, ``known``, a reason code...)."""
        ...
