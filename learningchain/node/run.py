"""Running a node process: build the Node, serve its API with waitress, stop cleanly on SIGTERM.

:func:`run_node` is what ``python node.py run`` ends in: it builds a
:class:`~learningchain.node.service.Node`, serves
:func:`learningchain.node.web.api.create_app` for it with waitress
(:mod:`learningchain.node.web.http_server`; HTTPS with ``tls``), starts the node's threads and, on
SIGTERM, SIGINT or SIGHUP, stops the server and then the node.
"""
from __future__ import annotations

import errno
import signal
import sys
import threading

from learningchain.core.errors import LearningChainError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.node.logs import route_process_logs
from learningchain.node.service import Node
from learningchain.node.tls import TlsConfig
from learningchain.node.web.api import create_app
from learningchain.node.web.http_server import create_http_server, serve_until

#: how often the interpreter hands the GIL to another thread (default 0.005 s).
SWITCH_INTERVAL_S = 0.0005


def watch_round(node: Node, r: int, stop: threading.Event, flag: str, what: str, then) -> None:
    """Call ``then()`` once round ``r`` is closed on our chain and, with a test
    set, measured: a thread woken by every close and measurement
    (:meth:`Node.wait_round`), no poll."""
    def watch() -> None:
        while not stop.is_set():
            node.wait_round(r, 5.0, limited=False)
            with node.lock:
                closed = node.chain.round_close(r) is not None
            if closed and (node.test_set is None or r in node.metrics):
                node.log(f"round {r} closed ({flag}): {what}")
                then()
                return
    threading.Thread(target=watch, name=flag.strip("-"), daemon=True).start()


def run_node(data_dir, genesis_config: NetworkConfig, host: str = "127.0.0.1", port: int = 5000,
             until_round: int | None = None, rest_after_round: int | None = None,
             tls: TlsConfig | None = None, **kw) -> None:
    """Build the node, start its threads and serve the API until SIGTERM/SIGINT,
    or until round ``until_round`` is closed (and measured, with a test set).
    Once round ``rest_after_round`` is closed the node stops learning and mining
    and goes on serving (:meth:`Node.rest`)."""
    # The learner's training holds the GIL in short numpy steps; at the default 5 ms
    # switch interval a block arriving meanwhile waited tens of ms for each of the
    # GIL hand-overs its handling needs, and the other miner searched a stale tip.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    node = Node(data_dir, genesis_config, host=host, port=port, tls=tls, **kw)
    route_process_logs(node.logger)  # waitress and unhandled errors: the node's log, its format
    if host != "127.0.0.1":
        node.log(f"WARNING: serving on {host}:{port}, reachable from other machines; "
                 f"the API has no authentication")
    try:
        server = create_http_server(create_app(node), host=host, port=port, threads=8, tls=tls)
    except OSError as exc:  # one line that names the address and what to do (issue 14)
        node.stop()
        what = {errno.EADDRINUSE: "is in use (another node on it?): pick another --port or stop that process",
                errno.EACCES: "needs privileges here: use a port above 1023",
                errno.EADDRNOTAVAIL: "is not an address of this machine: check --host"}.get(exc.errno, exc.strerror)
        # a failure of this machine, not of the command line: exit status 1, not 2 (cli/main.py)
        raise LearningChainError(f"cannot listen on {host}:{port}: it {what}") from None
    node.log(f"node {node.address} on {node.url}, network {genesis_config.network}, "
             f"genesis {node.genesis.hash[:16]}, height {node.chain.height}")

    stop = threading.Event()

    def shutdown(signum, _frame):
        node.log(f"signal {signum}: shutting down")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # HUP: its terminal closed
        signal.signal(sig, shutdown)
    node.start()
    if until_round:
        watch_round(node, until_round, stop, "--until-round", "stopping", stop.set)
    if rest_after_round:
        watch_round(node, rest_after_round, stop, "--rest-after-round",
                    "learning and mining stop, the API keeps serving", node.rest)
    try:
        serve_until(server, stop)
    finally:
        node.stop()
        node.log("stopped")
