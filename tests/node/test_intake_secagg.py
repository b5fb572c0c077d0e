"""A node's intake under secure aggregation (node/intake.py): a peer's tx whose
phase is not open yet is held as early, offered again at each block, and
admitted once a block opens its phase."""
from __future__ import annotations

from learningchain.core import errors
from learningchain.node.service import Node
from tests.secagg_net import SaNet


def test_a_peer_tx_for_a_phase_not_open_is_held_and_admitted_when_it_opens(tmp_path):
    net = SaNet(10)
    n = Node(tmp_path / "sa", net.config, quiet=True, port=5997)
    try:
        peer = "http://127.0.0.1:6002"
        assert n.peers.add(peer)
        setups = net.setups()
        b1 = net.block(setups[:9])  # quorum 10: the setup phase stays open
        assert n.submit_block(b1) == "connected"
        for tx in setups[9:]:
            assert n.submit_tx(tx) == "accepted"
        b2 = net.block(setups[9:])  # closes setup
        early = net.inputs([0])[0]  # built on the mirror, where the input phase is open
        assert n.submit_tx(early, peer=peer) == "early"
        assert n.refused[errors.SA_PHASE_NOT_OPEN] == 0 and len(n.early) == 1
        assert n.submit_block(b2) == "connected"  # opens input: the held input is offered again
        assert early.id in n.ledger.mempool and len(n.early) == 0
    finally:
        n.stop()
