"""What a running node reports about itself: the ``GET /status`` document and
its parts (``GET /tip``, the energy estimate of ``GET /rounds/<r>``).

Read-only views of a node (:class:`StatusSource`, which
:class:`~learningchain.node.service.Node` is): each takes the node's lock only
to copy what it reports, and reads timings and energy through the node's own
snapshots. The node keeps thin methods (``Node.status()``,
``Node.privacy_report()``, ...) that call these, for the API handlers, the
node threads and the tests.
"""
from __future__ import annotations

import threading

from collections import Counter
from typing import Any, ContextManager, Protocol

from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.mempool import EarlyTxs
from learningchain.node.chainstate import Ledger
from learningchain.node.participant import Participant
from learningchain.node.secagg_view import status_sa


class PeerCounters(Protocol):
    """What the status reads of the node's peers: how many, their traffic and gossip time."""

    def __len__(self) -> int: ...

    def traffic(self) -> dict: ...

    def gossip_time(self) -> tuple[float, int]: ...


class MinerReport(Protocol):
    """The built-in miner's hash-rate counters (:class:`~learningchain.node.threads.MinerStats`)."""

    def report(self) -> dict: ...


class StatusSource(Protocol):
    """Everything the ``/status`` document and its parts read of a node."""

    lock: ContextManager[Any]
    ledger: Ledger
    genesis: Block
    config: NetworkConfig
    address: str
    pubkey: str
    mining: bool
    resting: threading.Event
    participant: Participant | None
    metrics: dict[int, dict[str, float]]
    measured: int | None  # the newest round in metrics
    peers: PeerCounters
    miner_stats: MinerReport | None
    refused: Counter[str]
    orphans: int
    early: EarlyTxs
    early_held: int

    @property
    def chain(self) -> Chain: ...

    def timings_snapshot(self) -> dict[str, list]: ...

    def energy_doc(self, round: int | None = None) -> dict | None: ...


def latest_metrics(node: StatusSource) -> tuple[int | None, dict]:
    r = node.measured  # kept by Node.note_measured: no scan of every round per /status
    if r is None or r not in node.metrics:
        return None, {}
    return r, node.metrics[r]


def _dp(node: StatusSource) -> bool:
    return node.participant is not None and node.participant.accountant is not None


#: what a DP node keeps out of /status and /rounds/<r>: its training work is
#: (samples x epochs), i.e. its data-set size, which the accountant does not cover
DP_HIDDEN = ("train_j", "sample_epochs")


def hide_training(doc: dict | None) -> dict | None:
    """An energy document without the training figures (and total_j without them)."""
    if doc is None:
        return None
    out = {k: v for k, v in doc.items() if k not in DP_HIDDEN}
    if "total_j" in out:
        out["total_j"] = round(out.get("comm_j", 0.0) + out.get("pow_j", 0.0), 9)
    out["training_hidden"] = True
    if isinstance(out.get("last_round_energy"), dict):
        out["last_round_energy"] = hide_training(out["last_round_energy"])
    return out


def timings(node: StatusSource) -> dict:
    """Cumulative seconds and counts since start (``/status`` -> ``timings``); a
    DP node leaves out its training time (it grows with its data-set size)."""
    rows = {k: v for k, v in node.timings_snapshot().items() if not (k == "train" and _dp(node))}
    rows["gossip"] = list(node.peers.gossip_time())
    doc = {}
    for name in sorted(rows):
        doc[f"{name}_s"], doc[f"{name}_count"] = round(rows[name][0], 6), rows[name][1]
    return doc


def energy_report(node: StatusSource, round: int | None = None) -> dict | None:
    doc = node.energy_doc(round)
    return hide_training(doc) if _dp(node) else doc


def tip_summary(node: StatusSource) -> dict:
    with node.lock:
        return {"height": node.chain.height, "tip": node.chain.tip.hash,
                "work": f"{node.chain.tip_work:x}",
                "genesis": node.genesis.hash}  # the peer handshake checks it (peer_offers.py)


def status(node: StatusSource) -> dict:
    with node.lock:
        chain, state = node.chain, node.chain.tip_state
        doc = {"height": chain.height, "tip": chain.tip.hash, "round": state.round,
               "mempool": len(node.ledger.mempool), "model_digest": state.model_digest,
               "work": f"{chain.tip_work:x}", "side_blocks": chain.side_blocks,
               "evicted": chain.evicted_total,
               # valid txs we held that rounds closed without (censorship, seen locally)
               "not_included": node.ledger.mempool.left_out_report(),
               "secure_aggregation": status_sa(chain, node.config)}
    r, m = latest_metrics(node)
    doc.update(peers=len(node.peers), address=node.address, pubkey=node.pubkey,
               network=node.config.network, genesis=node.genesis.hash,
               mining=node.mining and not node.resting.is_set(), resting=node.resting.is_set(),
               miner=node.miner_stats.report() if node.miner_stats is not None else None,
               refused=dict(node.refused), orphans=node.orphans,
               early={"held": len(node.early), "held_total": node.early_held}, metrics=m, metrics_round=r,
               traffic=node.peers.traffic(), timings=timings(node), energy=energy_report(node),
               privacy=privacy_report(node))
    return doc


def privacy_report(node: StatusSource) -> dict | None:
    """``/status`` -> ``privacy``: the (epsilon, delta)-DP our published updates
    have spent (privacy.py's accountant); None without differential privacy."""
    acc = node.participant.accountant if node.participant is not None else None
    if acc is None:
        return None
    p = node.participant
    doc = {"sigma": p.sigma if acc.mode == "node" else acc.noise_multiplier, "clip": p.role.clip,
           **acc.report()}
    if p.role.dp_epsilon:
        doc["planned_rounds"] = p.role.dp_rounds
    return doc
