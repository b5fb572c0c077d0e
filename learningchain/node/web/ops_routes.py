"""The operations routes (a Flask blueprint): ``GET /healthz``, ``GET /readyz``,
``GET /metrics``, and the admin allow-list of the admin endpoints.

* ``/healthz``: 200 ``{"status": "alive", "port", "uptime_s"}`` whenever the
  process serves HTTP (a liveness probe).
* ``/readyz``: 200 ``{"status": "ready", "height", "best_peer_height",
  "peers", "answering"}`` when the node is synced and serving, else 503
  ``{"error", "reason"}`` (``syncing``, ``starting``, ``stopping``) with the same
  fields (a readiness probe; the rule is :func:`learningchain.node.metrics.readiness`).
  Neither takes the node lock, and neither is counted as a refusal; the API has
  no request-rate limit that could fail a probe (the connection guard of
  :mod:`learningchain.node.web.http_server` evicts idle sockets, not requests).
* ``/metrics``: the node's Prometheus metrics (:mod:`learningchain.node.metrics`),
  text format, or OpenMetrics when the scraper asks for it.
* :func:`require_admin`: the standalone miner's ``/mining/*`` and ``POST /peers``
  naming another host answer 403 ``admin-only`` to a client outside
  ``--admin-allow`` (default loopback), before the miner token is looked at
  (:mod:`learningchain.node.web.mining_auth` is still required). The client is
  the TCP peer (``REMOTE_ADDR``); no forwarded-for header is believed.
  A peer's announce (``POST /peers`` naming a URL on the caller's own address,
  what :meth:`~learningchain.node.p2p.gossip.Gossip.announce` sends) is not admin:
  it can only point us at the caller itself, and peers on other hosts must keep
  finding each other.
"""
from __future__ import annotations

import time
from typing import Protocol
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from learningchain.node.logs import LOOPBACK, OpsSettings, address_allowed, client_ip
from learningchain.node.metrics import MonitoredNode, NodeTelemetry, readiness
from learningchain.node.web.request_input import ApiError

ADMIN_ONLY = "admin-only"

ops_routes = Blueprint("ops_routes", __name__)


class OpsNode(MonitoredNode, Protocol):
    """What the ops routes use of the node (:class:`~learningchain.node.service.Node`)."""
    ops: OpsSettings
    telemetry: NodeTelemetry


def node() -> OpsNode:
    return current_app.config["NODE"]


@ops_routes.get("/healthz")
def healthz():
    n = node()
    return jsonify({"status": "alive", "port": n.port,
                    "uptime_s": round(time.monotonic() - n.telemetry.started, 3)})


@ops_routes.get("/readyz")
def readyz():
    verdict = readiness(node())
    return jsonify(verdict.doc()), 200 if verdict.ready else 503


@ops_routes.get("/metrics")
def metrics():
    data, content_type = node().telemetry.render(request.headers.get("Accept"))
    return Response(data, status=200, content_type=content_type)


# --- the admin allow-list ---------------------------------------------------------------------

def _allowed(addr: str | None) -> bool:
    return address_allowed(current_app.config.get("ADMIN_NETS", LOOPBACK), addr)


def require_admin(what: str) -> None:
    """403 ``admin-only`` unless the client's address is within ``--admin-allow``."""
    if not _allowed(request.remote_addr):
        raise ApiError(403, f"{what} is an admin endpoint: only {current_app.config.get('ADMIN_ALLOW', 'loopback')} "
                            f"may use it (run --admin-allow)", ADMIN_ONLY)


def _same_host(url: str, addr: str | None) -> bool:
    """Does ``url`` name the host ``addr`` (an IP literal equal to the client's address)?"""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    named = client_ip(host)
    return named is not None and named == client_ip(addr)


def require_admin_or_self(url: str) -> str | None:
    """``POST /peers``: a caller may name itself (a peer's announce); naming any
    other host is admin-only. A host *name* from a caller outside the allow-list
    (a pod announcing its DNS name, a host behind its own name) is accepted on
    condition: the returned address is the caller's, and the handshake admits the
    URL only if the name resolves to it (peer_offers.py; resolved off the request
    thread). None: no condition."""
    if _same_host(url, request.remote_addr) or _allowed(request.remote_addr):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        host = None
    addr = client_ip(request.remote_addr)
    if host and client_ip(host) is None and addr is not None:  # a name, not another address
        return addr
    require_admin("POST /peers naming another host")
    return None


def register_ops(app: Flask, node_obj: OpsNode) -> None:
    """The ops blueprint and the node's admin allow-list, on ``app`` (api.create_app)."""
    app.config["ADMIN_NETS"] = node_obj.ops.admin_nets
    app.config["ADMIN_ALLOW"] = node_obj.ops.admin_allow
    app.register_blueprint(ops_routes)
