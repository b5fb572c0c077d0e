"""What a node tells its operator's monitoring: Prometheus metrics and the readiness verdict.

:class:`NodeTelemetry` (one per :class:`~learningchain.node.service.Node`) owns
its own ``CollectorRegistry``, never prometheus-client's global one: tests run
several nodes in one process, and each ``/metrics`` must show its own node.

* Histograms, observed as the work happens (:meth:`NodeTelemetry.observe`, fed by
  ``Node.add_timing`` and the node's tx intake and template building):
  ``lc_train_seconds`` (local training of one update; never observed on a node
  with differential privacy, as ``/status`` hides it), ``lc_validate_seconds``
  with ``kind`` = ``tx`` (a tx taken in or refused: the whole intake, the wait
  for the node lock and the queueing of its gossip included), ``block`` (a block that
  extended a branch) or ``closing_block`` (one that closes a round: every update
  checked and the aggregate recomputed), ``lc_aggregate_seconds`` (building a
  round-closing block: the round's updates aggregated into G(r) and its
  commitment) and ``lc_evaluate_seconds`` (measuring G(r) on the test set).
* Everything else is read from the node's own counters at scrape time
  (:class:`NodeCollector`), no state kept twice: gauges ``lc_height``,
  ``lc_round`` (the open round), ``lc_mempool_txs``, ``lc_peers``,
  ``lc_hash_rate_hps``, ``lc_dp_epsilon_spent`` (with differential privacy only),
  ``lc_ready``, ``lc_tip_age_seconds``, ``lc_global_model`` (the newest
  measured round's metrics); counters ``lc_refusals_total{reason}``,
  ``lc_wire_bytes_total{direction,type}`` (the peer traffic counters of
  :mod:`learningchain.node.p2p.peer_counters`, as ``/status`` -> ``traffic``),
  ``lc_blocks_mined_total{miner}``, ``lc_blocks_accepted_total``,
  ``lc_orphan_blocks_total``, ``lc_hashes_total``.

:func:`readiness` decides ``/readyz``: the node is ready when it is not
stopping and not catching up: no peer that answers claims a tip more than
:data:`READY_LAG_BLOCKS` above ours, and, if it has peers, at least one has
answered a tip poll or failed (a node whose peers are all down serves alone:
ready). It reads the tip without the node lock (one attribute read) and the
peer table under the table's own lock.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from learningchain.ledger.chain import Chain
from learningchain.ledger.mempool import Mempool
from learningchain.node.status import privacy_report, latest_metrics

#: a node this many blocks behind the best tip its peers claim is still ready
#: (two blocks: one being gossiped, one being mined while we validate).
READY_LAG_BLOCKS = 2
#: seconds; from a millisecond (a tx) to minutes (a torch model's local epochs).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
#: Node.add_timing's names -> (histogram, label value)
_TIMINGS = {"train": ("train", None), "validate": ("validate", "block"),
            "validate_closing": ("validate", "closing_block"), "evaluate": ("evaluate", None)}


class PeerView(Protocol):
    def __len__(self) -> int: ...

    def snapshot(self) -> list[dict]: ...

    def traffic(self) -> dict: ...

    def sync_penalized(self, url: str) -> bool: ...


class MinerReport(Protocol):
    def report(self) -> dict: ...


class LedgerView(Protocol):
    @property
    def mempool(self) -> Mempool: ...


class MonitoredNode(Protocol):
    """What the metrics and the readiness verdict read of a node
    (:class:`~learningchain.node.service.Node`); also what ``privacy_report`` reads."""
    port: int
    address: str
    config: Any
    genesis: Any
    ledger: LedgerView
    peers: PeerView
    participant: Any
    miner_stats: MinerReport | None
    refused: Counter[str]
    orphans: int
    hashes: int
    metrics: dict[int, dict[str, float]]
    measured: int | None
    stop_event: threading.Event

    @property
    def chain(self) -> Chain: ...

    def tip_age(self) -> float: ...

    def timings_snapshot(self) -> dict[str, list]: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str | None
    height: int
    best_peer_height: int | None
    peers: int
    answering: int

    def doc(self) -> dict:
        out = {"status": "ready" if self.ready else "not-ready", "height": self.height,
               "best_peer_height": self.best_peer_height, "peers": self.peers, "answering": self.answering}
        if not self.ready:
            out.update(error=_REASONS[self.reason or ""].format(lag=READY_LAG_BLOCKS), reason=self.reason)
        return out


_REASONS = {"stopping": "the node is shutting down",
            "syncing": "catching up: a peer's tip is more than {lag} blocks above ours",
            "starting": "no peer has answered a tip poll yet (the first sync pass is under way)",
            "": "not ready"}


def readiness(node: MonitoredNode) -> Readiness:
    """``/readyz``: see the module docstring. No node lock: the tip entry is read
    once (a consistent height), the peer table under its own lock."""
    height = node.chain.tip_entry.height
    peers = node.peers.snapshot()
    heard = [p for p in peers if p.get("height") is not None and p.get("failures") == 0
             and not node.peers.sync_penalized(p["url"])]  # a peer that broke sync rules may lie about its tip
    # a height counts only with more work claimed than our tip: a claim that sync then tests (a peer
    # claiming a height of 10^9 with no work kept /readyz at 503 for good); one that fails it is penalized
    best = max((p["height"] for p in heard if p.get("ahead", True) or p["height"] <= height), default=None)
    tried = [p for p in peers if p.get("height") is not None or p.get("failures")]
    reason = None
    if node.stop_event.is_set():
        reason = "stopping"
    elif best is not None and best > height + READY_LAG_BLOCKS:
        reason = "syncing"
    elif peers and not tried:
        reason = "starting"
    return Readiness(reason is None, reason, height, best, len(peers), len(heard))


class NodeTelemetry:
    """A node's registry: its histograms, and (:meth:`watch`) the collector that reads the node."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.histograms = {
            "train": Histogram("lc_train_seconds", "Local training of one update (seconds)", registry=r,
                               buckets=BUCKETS),
            "validate": Histogram("lc_validate_seconds", "Validation of a tx, a block, or a block closing a "
                                  "round (its aggregate recomputed), in seconds", ["kind"], registry=r,
                                  buckets=BUCKETS),
            "aggregate": Histogram("lc_aggregate_seconds", "Building a round-closing block: the round's "
                                   "updates aggregated into G(r) and its commitment (seconds)", registry=r,
                                   buckets=BUCKETS),
            "evaluate": Histogram("lc_evaluate_seconds", "Measuring a closed round's global model on the "
                                  "test set (seconds)", registry=r, buckets=BUCKETS)}
        for kind in ("tx", "block", "closing_block"):  # every series from the first scrape on
            self.histograms["validate"].labels(kind=kind)
        self.mined_standalone = 0  # blocks a standalone miner solved from our templates (POST /mining/submit)
        self.started = time.monotonic()
        self.hide_training = False  # a DP node: see watch

    def watch(self, node: MonitoredNode) -> None:
        """Read ``node`` at every scrape. A node with differential privacy keeps its
        training time out of ``lc_train_seconds``, as out of ``/status`` (it grows
        with its data-set size, which the accountant does not cover)."""
        self.hide_training = node.participant is not None and node.participant.accountant is not None
        self.registry.register(NodeCollector(node, self))

    def observe(self, name: str, seconds: float) -> None:
        """One duration: a ``Node.add_timing`` name (train, validate, validate_closing,
        evaluate; others are not histograms), or ``tx`` / ``aggregate``."""
        if name == "tx":
            self.histograms["validate"].labels(kind="tx").observe(seconds)
            return
        if name == "aggregate":
            self.histograms["aggregate"].observe(seconds)
            return
        which = _TIMINGS.get(name)
        if which is None or (which[0] == "train" and self.hide_training):
            return
        h = self.histograms[which[0]]
        (h.labels(kind=which[1]) if which[1] else h).observe(seconds)

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The scrape's body and content type (OpenMetrics if the scraper asks for it)."""
        from prometheus_client.exposition import choose_encoder
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class NodeCollector(Collector):
    """Reads the node's own counters at each scrape."""

    def __init__(self, node: MonitoredNode, telemetry: NodeTelemetry):
        self.node, self.telemetry = node, telemetry

    def describe(self):
        return []  # names vary with what the node has (DP, measured rounds): nothing to check at register

    def collect(self):
        n = self.node
        tip = n.chain.tip_entry  # one read: height and round of the same tip, no lock
        yield _gauge("lc_height", "Height of our best chain's tip", tip.height)
        yield _gauge("lc_round", "The open round on our tip", tip.state.round)
        yield _gauge("lc_mempool_txs", "Transactions waiting in our mempool", len(n.ledger.mempool))
        yield _gauge("lc_peers", "Peers in our table", len(n.peers))
        yield _gauge("lc_tip_age_seconds", "Seconds since a block last moved our tip", n.tip_age())
        ready = readiness(n)
        yield _gauge("lc_ready", "1 if /readyz answers 200 (synced and serving)", int(ready.ready))
        miner = n.miner_stats.report() if n.miner_stats is not None else None
        yield _gauge("lc_hash_rate_hps", "Our built-in miner's hash rate (hashes/s, recent window; 0 without "
                     "it)", miner["hashrate_recent"] if miner else 0.0)
        privacy = privacy_report(n)
        if privacy is not None:
            yield _gauge("lc_dp_epsilon_spent", "Differential privacy: epsilon our published updates spent "
                         f"(delta {privacy.get('delta')})", float(privacy.get("epsilon") or 0.0))
        r, measured = latest_metrics(n)
        if measured:
            g = GaugeMetricFamily("lc_global_model", "The newest measured global model G(r) on our test set",
                                  labels=["metric"])
            for name, value in sorted(measured.items()):
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    g.add_metric([name], float(value))
            yield g
            yield _gauge("lc_global_model_round", "The round of lc_global_model", r)
        refusals = CounterMetricFamily("lc_refusals", "Requests, txs and blocks refused, by reason",
                                       labels=["reason"])
        for reason, count in sorted(dict(n.refused).items()):
            refusals.add_metric([reason], count)
        yield refusals
        wire = CounterMetricFamily("lc_wire_bytes", "Bytes exchanged with peers (bodies plus an estimate of "
                                   "the header lines), by direction and message type",
                                   labels=["direction", "type"])
        for kind, row in n.peers.traffic().get("by_type", {}).items():
            wire.add_metric(["in", kind], row["received"])
            wire.add_metric(["out", kind], row["sent"])
        yield wire
        mined = CounterMetricFamily("lc_blocks_mined", "Blocks found by our built-in miner or solved by a "
                                    "standalone miner from our templates", labels=["miner"])
        mined.add_metric(["builtin"], miner["blocks_found"] if miner else 0)
        mined.add_metric(["standalone"], self.telemetry.mined_standalone)
        yield mined
        timings = n.timings_snapshot()
        accepted = sum(timings.get(k, [0, 0])[1] for k in ("validate", "validate_closing"))
        yield _counter("lc_blocks_accepted", "Blocks validated and stored (main chain or side branch)", accepted)
        yield _counter("lc_orphan_blocks", "Blocks received whose parent we lacked", n.orphans)
        yield _counter("lc_hashes", "Proof-of-work hashes our built-in miner computed", n.hashes)
        info = GaugeMetricFamily("lc_node_info", "This node: its network, address and genesis",
                                 labels=["network", "address", "genesis", "port"])
        info.add_metric([str(n.config.network), n.address, n.genesis.hash[:16], str(n.port)], 1)
        yield info
        yield _gauge("lc_uptime_seconds", "Seconds since the node was built", time.monotonic()
                     - self.telemetry.started)


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _counter(name: str, doc: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))
