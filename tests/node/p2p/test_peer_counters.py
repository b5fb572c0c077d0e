"""A peer's cost (peer_counters.py): slow or huge exchanges back it off in
proportion, and the cost decays."""
from __future__ import annotations

import time





def test_a_costly_peer_backs_off_in_proportion_and_recovers():
    from learningchain.node.p2p.peer_counters import COST_BUDGET
    from learningchain.node.p2p.peer_record import BACKOFF_MAX
    from learningchain.node.p2p.peer_table import PeerTable
    t = PeerTable("http://127.0.0.1:5000", ["http://10.0.0.1:1"])
    peer = t._peers["http://10.0.0.1:1"]
    for _ in range(20):  # /tip polls: small and quick
        t._count_outbound(peer, "tip poll", 0, 80, 0.01)
        t._succeeded(peer)
    assert peer.available(time.monotonic()) and peer.cost == 0  # quick and small: free
    t._count_outbound(peer, "sync", 200, 40 << 20, 1.0)  # one 40 MiB page
    t._succeeded(peer)
    assert peer.cost > COST_BUDGET and not peer.available(time.monotonic())
    assert 0 < peer.next_try - time.monotonic() <= BACKOFF_MAX
    assert t.available_urls() == []
    peer.cost_at -= 300  # ten half-lives later the cost has decayed
    peer.next_try = 0.0
    t._count_outbound(peer, "tip poll", 0, 80, 0.01)
    assert peer.cost < 1 and peer.available(time.monotonic())
