"""The work a running node does in its own threads (started by
:meth:`learningchain.node.service.Node.start`):

* :func:`participant_loop`: when round r is open and we have no update in it,
  train from ``tip_state.model`` = G(r-1), sign, submit to our own ledger and
  gossip (:class:`~learningchain.node.participant.Participant`, the learner role).
  If the update is refused because a reorg changed G(r-1) under it, it trains
  again from the new tip (updates are remembered by round *and* base). It is
  woken by the block that opens the round (``Node.tip_moved``), not by a timer;
* :func:`evaluator_loop`: evaluate G(r) of every closed round on the held-out
  ``test.npz``, newest first, once the learner is done with the tip (off the
  round's critical path: evaluating never delays our update). The models come
  from the chain, so after a restart every round's metrics are rebuilt, and a
  reorg re-evaluates the rounds whose model changed. Then the explorer's
  distances of each update to G(r) for the newest rounds
  (:mod:`learningchain.node.round_distances`), once per closing block;
* :func:`miner_loop` (``--mine``): template -> proof of work -> submit -> gossip.
  The search runs in a worker process at lower priority, and is interrupted the
  moment its template goes stale (``Node.template_stale``: a new tip, or the
  round's quorum reached the mempool).

None of them holds the node's lock while training, evaluating or searching.
Each loop names what it uses of the node in a Protocol (:class:`LearnerNode`,
:class:`EvaluatorNode`, :class:`MinerNode`).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, ContextManager, Protocol

from miner.pow import Miner, format_rate

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.learning.models import Model
from learningchain.ledger.block import Block
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.stamp import stamp
from learningchain.ledger.secagg_tx import INPUT, SETUP, UNMASK
from learningchain.ledger.tx import UpdateTx
from learningchain.node.chainstate import Ledger
from learningchain.node.participant import Participant
from learningchain.node.releases import ReleaseLog, released_ids
from learningchain.node.round_distances import RoundDistances, measure_round_distances
from learningchain.node.secagg_learner import SaLearner, sa_participate_once

#: a new template is taken when the mempool changed and the current one is this old
#: (at once when the current one carries no tx, or when the round's quorum arrived:
#: Node.mempool_changed).
TEMPLATE_REFRESH_S = 1.0
#: nice value added to our miner's worker process: hashing takes the CPU that
#: training, validation and the API leave idle (difficulty retargets to it).
MINER_NICE = 10
#: the longest wait (seconds) of a learner or evaluator for an event before it looks
#: again anyway (a fallback: tip changes wake them at once).
IDLE_WAIT_S = 1.0
#: the longest the evaluator defers to a learner still working on the tip (seconds).
EVAL_DEFER_S = 2.0


def now_ms() -> int:
    return int(time.time() * 1000)


# --- participant: train and evaluate ------------------------------------------------

#: seconds between two offers of our own update that the mempool refused as full
OWN_RETRY_S = 1.0


@dataclass
class OwnUpdates:
    """What the learner remembers of its own updates: the (round, base digest)
    pairs it trained for, and the update to offer again (the same signed bytes)
    with when it was last offered: one a full mempool refused (again every
    :data:`OWN_RETRY_S`), or one whose round a reorg closed again while we
    trained (at once, when that round reopens on the same base)."""

    trained: set[tuple[int, str]] = field(default_factory=set)
    retry: tuple[UpdateTx, float] | None = None


class LearnerNode(Protocol):
    """What the participant loop (and :func:`restore_releases`) use of the node."""

    lock: ContextManager[Any]
    ledger: Ledger
    config: NetworkConfig
    pubkey: str
    participant: Participant | None
    sa: SaLearner | None  # the member of secure aggregation, on a network that runs it
    releases: ReleaseLog
    own_updates: OwnUpdates
    stop_event: threading.Event
    resting: threading.Event
    tip_seq: int
    tip_changed: threading.Condition
    learner_idle: threading.Event

    @property
    def chain(self) -> Chain: ...

    def log(self, line: str) -> None: ...

    def wait_tip(self, seconds: float, seen: int | None = None) -> None: ...

    def add_timing(self, name: str, seconds: float, count: int = 1) -> None: ...

    def count_work(self, round: int | None = None, sample_epochs: int = 0, hashes: int = 0) -> None: ...

    def privacy_report(self) -> dict | None: ...

    def submit_tx(self, tx: UpdateTx, peer: str | None = None, own: bool = False) -> str: ...


class EvaluatorNode(Protocol):
    """What the evaluator loop uses of the node."""

    lock: ContextManager[Any]
    model: Model
    test_set: Any  # (X, y) of the held-out test.npz, or None
    metrics: dict[int, dict[str, float]]
    metric_digests: dict[int, str]
    g0_metrics: dict[str, float] | None  # the genesis model's, measured once
    round_distances: RoundDistances  # the newest rounds' update distances to G(r)
    genesis: Block
    evaluated_through: tuple[int, str] | None
    stop_event: threading.Event
    tip_seq: int
    learner_idle: threading.Event

    @property
    def chain(self) -> Chain: ...

    def log(self, line: str) -> None: ...

    def wait_tip(self, seconds: float, seen: int | None = None) -> None: ...

    def add_timing(self, name: str, seconds: float, count: int = 1) -> None: ...

    def note_measured(self, r: int) -> None: ...


def participant_loop(node: LearnerNode) -> None:
    node.ledger.mempool.priority_senders.add(node.pubkey)  # our update outranks strangers' (mempool.py)
    step = participate_once if node.sa is None else sa_participate_once
    while not (node.stop_event.is_set() or node.resting.is_set()):
        seen = node.tip_seq  # read before looking at the tip: a block during the step wakes the wait below
        try:
            step(node)
        except Exception as exc:  # keep the node alive; say what happened
            node.log(f"participant error: {type(exc).__name__}: {exc}")
        with node.tip_changed:  # under the condition tip_moved clears it with: no set after a move
            if node.tip_seq == seen:
                node.learner_idle.set()  # done with this tip: the evaluator may run
        # woken by the next block; the timeout only retries a refused own update
        node.wait_tip(OWN_RETRY_S if node.own_updates.retry is not None else IDLE_WAIT_S, seen)


def evaluator_loop(node: EvaluatorNode) -> None:
    while not node.stop_event.is_set():
        node.learner_idle.wait(EVAL_DEFER_S)  # our own update first: it is on the round's path
        seen = node.tip_seq
        try:
            evaluate_closed_rounds(node)
            measure_round_distances(node)  # after the metrics: /rounds/<r>?wait waits for those only
        except Exception as exc:
            node.log(f"evaluator error: {type(exc).__name__}: {exc}")
        node.wait_tip(IDLE_WAIT_S, seen)


def has_update(node: LearnerNode, r: int) -> bool:
    """Is our update for round r pending on the chain or waiting in the mempool?"""
    state = node.chain.tip_state
    return (any(t.sender == node.pubkey for t in state.pending)
            or any(t.sender == node.pubkey and t.round == r for t in node.ledger.mempool))


def restore_releases(node: LearnerNode) -> int:
    """Bring the DP accountant to the number of updates this node has ever
    released (its release journal and the main chain together,
    :mod:`learningchain.node.releases`; under secure aggregation also every input its
    SA journal says it sent, on any branch), so /status and the log do not restart
    from epsilon 0. Called once when the node is built; returns that number."""
    acc = node.participant.accountant if node.participant is not None else None
    if acc is None or acc.rounds:
        return 0
    with node.lock:
        own = [t for b in node.chain.main_chain(1, node.chain.height) for t in b.txs
               if t.sender == node.pubkey]
        own += [t for t in node.ledger.mempool if t.sender == node.pubkey]
        own = [t for t in own if getattr(t, "kind", None) not in (SETUP, UNMASK)]  # SA: inputs release
    released = released_ids(node.releases, own)
    if node.sa is not None:  # an input counted on a branch that lost was public there too
        released |= {ids[INPUT] for ids in node.sa.journal.sent.values() if INPUT in ids}
    n = len(released)
    if n:
        acc.step(n)
        node.log(f"privacy restored: {n} update(s) released before this start, epsilon "
                 f"{acc.epsilon():.4f}, delta {acc.delta:g}")
    return n


def participate_once(node: LearnerNode) -> None:
    with node.lock:
        state = node.chain.tip_state
        r, base, digest = state.round, state.model, state.model_digest
        if has_update(node, r):
            return
        if (r, digest) in node.own_updates.trained:
            retry = node.own_updates.retry  # (tx, when): refused as mempool-full, or its round reorged away
            if retry is None or (retry[0].round, retry[0].base) != (r, digest) \
                    or time.monotonic() - retry[1] < OWN_RETRY_S:
                return
        else:
            retry = None
        selected = state.selected
    if retry is not None:  # the same signed bytes again: never retrain (DP: one release per round)
        node.log(f"round {r}: offering our update {retry[0].id[:12]} again (same signed bytes)")
        _submit_own(node, retry[0], r)
        return
    node.own_updates.trained.add((r, digest))
    if selected is not None and node.pubkey not in selected:  # selection.py: no training, no energy
        node.log(f"not selected for round {r}")
        return
    sent = node.releases.find(r, digest)
    if sent is not None:  # released before a restart: the same bytes again, never a new noisy copy
        node.log(f"round {r}: resending our update {sent.id[:12]} released before the restart")
        _submit_own(node, sent, r)
        return
    if node.participant.budget_spent():  # one more release would exceed the target epsilon
        node.log(f"round {r}: not training, the privacy budget is spent (epsilon "
                 f"{node.participant.accountant.epsilon():.4f} over {node.participant.role.dp_rounds} rounds)")
        return
    t0 = time.perf_counter()
    tx = node.participant.make_update(r, base, digest, now_ms())
    node.add_timing("train", time.perf_counter() - t0)
    if node.config.stamp_bits:  # an open network prices every tx (stamp.py)
        t1 = time.perf_counter()
        tx = stamp(tx, node.participant.key, node.config.stamp_bits)
        node.add_timing("stamp", time.perf_counter() - t1)
    node.count_work(r, sample_epochs=len(node.participant.X) * node.participant.spec.epochs)
    node.log(f"trained round {r} in {time.perf_counter() - t0:.2f} s; submitting {tx.id[:12]}")
    spent = node.privacy_report()
    if spent is not None:
        node.log(f"privacy after round {r}: epsilon {spent['epsilon']:.4f}, delta {spent['delta']:g} "
                 f"({spent['rounds']} updates released)")
    if node.participant.accountant is not None:
        node.releases.record(tx)  # on disk before it can leave the node (releases.py)
    _submit_own(node, tx, r)


def _submit_own(node: LearnerNode, tx: UpdateTx, r: int) -> None:
    node.own_updates.retry = None
    try:
        node.submit_tx(tx, own=True)
    except ValidationError as exc:
        if exc.code == errors.MEMPOOL_FULL:  # the round is not done: offer it again (issue 10, item 6)
            node.own_updates.retry = (tx, time.monotonic())
            node.log(f"round {r}: our update {tx.id[:12]} met a full mempool; retrying every {OWN_RETRY_S:g} s")
        elif exc.code == errors.TX_ROUND_NOT_OPEN:
            # a reorg took the block that opened round r away while we trained: the same
            # signed update is offered again the moment a block opens round r on the same
            # G(r-1) (competing closing blocks of one round usually carry the same updates)
            node.own_updates.retry = (tx, 0.0)
            node.log(f"round {r} is not open any more (a reorg while training); our update "
                     f"{tx.id[:12]} waits for it to open again")
        elif exc.code == errors.TX_LATE:
            node.log(f"round {r} closed while training ({exc.code}); moving to the next round")
        elif exc.code == errors.TX_WRONG_BASE:
            node.log(f"round {r}: the base model changed while training (reorg); training again")


def evaluate_closed_rounds(node: EvaluatorNode, batch: int = 50) -> int:
    """Evaluate up to ``batch`` closed rounds whose G(r) we have not measured
    (newest first); returns how many. Reads only the rounds closed since the
    last call that found nothing left to do (``node.evaluated_through``, the
    round and closing block hash), going back only as far as a reorg changed
    the models, so a tick costs O(new rounds), not O(chain) (issue 10, item 13)."""
    if node.test_set is None:
        return 0
    if node.g0_metrics is None:  # once: G0 is the chart's round 0 (explorer)
        with node.lock:
            g0 = node.chain.model(node.genesis.hash)[0]
        node.g0_metrics = node.model.evaluate(g0, *node.test_set)
    with node.lock:
        chain = node.chain
        closes = chain.round_closes(_first_unchecked(node, chain))
        todo = []
        for r, height, block_hash in reversed(closes):
            digest = chain.entry(block_hash).state.model_digest  # the kept state: no model is loaded
            if node.metric_digests.get(r) != digest:
                todo.append((r, digest, height, chain.model(block_hash)[0]))
                if len(todo) >= batch:
                    break
        done_through = (closes[-1][0], closes[-1][2]) if closes and len(todo) < batch else None
    X, y = node.test_set
    for r, digest, height, weights in todo:
        t0 = time.perf_counter()
        m = node.model.evaluate(weights, X, y)
        node.add_timing("evaluate", time.perf_counter() - t0)
        node.metrics[r], node.metric_digests[r] = m, digest
        node.note_measured(r)
        main = "accuracy" if "accuracy" in m else "rmse"
        node.log(f"round {r} (closed at {height}): global {main} {m[main]:.4f} on {len(X)} held-out samples")
    if done_through is not None:  # every close up to it is measured (a reorg since: see _first_unchecked)
        node.evaluated_through = done_through
    return len(todo)


def _first_unchecked(node: EvaluatorNode, chain: Chain) -> int:
    """The first round the evaluator must look at (lock held): the one after the
    round it last found evaluated, if that close is still on the main chain;
    after a reorg, the one after the newest round whose measured model is still
    the chain's (a walk back as deep as the reorg)."""
    through = node.evaluated_through
    if through is None:
        return 1
    r, block_hash = through
    if chain.on_main_chain(block_hash):
        return r + 1
    for back in range(r, 0, -1):
        close = chain.round_close(back)
        if close is not None and chain.entry(close[1]).state.model_digest == node.metric_digests.get(back):
            return back + 1
    return 1


# --- miner ----------------------------------------------------------------------------

#: how often the miner logs its hash rate (seconds).
HASHRATE_LOG_S = 30.0


class MinerStats:
    """Hash rate of the node's built-in miner: hashes over the seconds spent
    searching (not idle between templates), in total and over the last log
    window. ``/status`` -> ``miner`` shows :meth:`report`."""

    def __init__(self, workers: int, log_every_s: float = HASHRATE_LOG_S):
        self.workers = workers
        self.found = 0  # blocks our miner found (on the main chain or not: the stale rate's denominator)
        self.hashes, self.seconds = 0, 0.0
        self._win_hashes, self._win_seconds = 0, 0.0
        self._last_rate = 0.0
        self._log_every, self._last_log = log_every_s, time.monotonic()

    def add(self, hashes: int, seconds: float) -> float | None:
        """Count one search; the window's hash rate when a log line is due, else None."""
        self.hashes += hashes
        self.seconds += seconds
        self._win_hashes += hashes
        self._win_seconds += seconds
        now = time.monotonic()
        if now - self._last_log < self._log_every or self._win_seconds <= 0:
            return None
        self._last_rate = self._win_hashes / self._win_seconds
        self._win_hashes, self._win_seconds, self._last_log = 0, 0.0, now
        return self._last_rate

    def report(self) -> dict:
        rate = self.hashes / self.seconds if self.seconds > 0 else 0.0
        return {"workers": self.workers, "blocks_found": self.found, "hashes": self.hashes,
                "search_s": round(self.seconds, 3),
                "hashrate": round(rate, 1), "hashrate_recent": round(self._last_rate or rate, 1)}


class MinerNode(Protocol):
    """What the miner loop uses of the node."""

    mine_workers: int
    miner_stats: MinerStats | None
    mempool_version: int
    template_epoch: int
    own_template: Block | None
    miner: Miner | None
    miner_hold_until: float
    stop_event: threading.Event
    resting: threading.Event

    @property
    def chain(self) -> Chain: ...

    def log(self, line: str) -> None: ...

    def new_template(self, client: str = "own") -> tuple[str, Block]: ...

    def submit_mined(self, block: Block) -> str: ...

    def wait_miner_hold(self) -> None: ...

    def add_timing(self, name: str, seconds: float, count: int = 1) -> None: ...

    def count_work(self, round: int | None = None, sample_epochs: int = 0, hashes: int = 0) -> None: ...


def miner_loop(node: MinerNode) -> None:
    node.miner_stats = MinerStats(node.mine_workers)
    with Miner(workers=node.mine_workers, in_process=False, nice=MINER_NICE) as miner:
        node.miner = miner  # Node.template_stale interrupts it
        try:
            while not (node.stop_event.is_set() or node.resting.is_set()):
                try:
                    mine_once(node, miner)
                except ValidationError:
                    pass  # counted and logged by submit_block
                except Exception as exc:
                    node.log(f"miner error: {type(exc).__name__}: {exc}")
                    node.stop_event.wait(1.0)
        finally:
            node.miner = None


def mine_once(node: MinerNode, miner: Miner) -> None:
    if node.miner_hold_until > time.monotonic():  # a block on our tip is being validated (Node.hold_miner)
        node.wait_miner_hold()
    epoch = node.template_epoch  # before the template: a change while it is built makes it stale
    _tid, block = node.new_template()
    node.own_template = block
    prev, version, t0 = block.header.prev_hash, node.mempool_version, time.monotonic()

    def should_stop() -> bool:  # the fallback of Node.template_stale's interrupt (a race, a lost wake-up)
        return (node.stop_event.is_set() or node.resting.is_set() or node.template_epoch != epoch or node.chain.tip.hash != prev
                or (node.mempool_version != version and (not block.txs or time.monotonic() - t0 > TEMPLATE_REFRESH_S)))

    if should_stop():
        return

    t_search = time.perf_counter()
    result = miner.mine(block.header.prefix(), block.header.target, should_stop)
    node.add_timing("mine", time.perf_counter() - t_search, 0 if result.nonce is None else 1)
    node.count_work(hashes=result.hashes)
    stats = node.miner_stats
    rate = stats.add(result.hashes, result.seconds) if stats is not None else None
    if rate is not None:
        node.log(f"miner: {format_rate(rate)} over the last {HASHRATE_LOG_S:.0f} s "
                 f"({stats.workers} worker{'s' if stats.workers != 1 else ''}, {stats.hashes} hashes in all)")
    if result.nonce is None:
        return
    mined = Block(block.header.with_nonce(result.nonce), block.txs, block.commitment, block.config)
    if stats is not None:
        stats.found += 1
    node.submit_mined(mined)
