"""The peer HTTP client (httpclient.py): its watchdog shuts down only sockets
an expired exchange still holds."""
from __future__ import annotations

import socket
import time

from tests.served import wait_for





def test_the_watchdog_never_shuts_down_a_socket_its_exchange_let_go():
    """The pool took the connection back (detach) before the deadline passed: the
    socket may serve another thread by now and must survive; a socket still held
    by an expired exchange is shut down."""
    from learningchain.node.p2p.httpclient import _WATCHDOG, _Exchange
    released, released_peer = socket.socketpair()
    held, held_peer = socket.socketpair()
    try:
        gone, live = _Exchange(time.monotonic() - 1), _Exchange(time.monotonic() - 1)
        assert _WATCHDOG.attach(gone, released) and _WATCHDOG.attach(live, held)
        assert _WATCHDOG.detach(gone) is False  # the pool takes it back in time
        _WATCHDOG.watch(gone)
        _WATCHDOG.watch(live)  # same deadline, watched later: expires after ``gone``
        wait_for(lambda: live.expired, seconds=5, what="the watchdog to expire both")
        assert gone.expired
        released.sendall(b"x")
        assert released_peer.recv(1) == b"x"  # untouched
        held_peer.settimeout(5)
        assert held_peer.recv(1) == b""  # shut down: the peer sees EOF
    finally:
        for s in (released, released_peer, held, held_peer):
            s.close()
