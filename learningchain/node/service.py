"""The running node: one ledger, its key and store, and the threads around it.

:class:`Node` owns the :class:`~learningchain.node.chainstate.Ledger` behind one lock
that HTTP handlers hold briefly; training, evaluation, mining and network I/O
never hold it. Threads:

* *participant* (train), *evaluator* (metrics of every closed round) and *miner*
  (``mine=True``): :mod:`learningchain.node.threads`;
* *peer sync* and gossip: :mod:`learningchain.node.p2p.peers`.

What it takes in (txs and blocks from its API, its peers and its own threads)
is validated, counted and gossiped in :mod:`learningchain.node.intake`; what it
reports about itself (``/status``) is built in :mod:`learningchain.node.status`;
:func:`learningchain.node.run.run_node` serves it over HTTP.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

from learningchain.core.errors import ConfigError, ValidationError
from learningchain.learning.data import load_partition
from learningchain.learning.energy import EnergyMeter
from learningchain.learning.models import build_model, initial_weights
from learningchain.node import user_models
from learningchain.ledger.block import Block, BlockHeader
from learningchain.ledger.compact import plausible_target_limit
from learningchain.ledger.genesis import NetworkConfig, make_genesis
from learningchain.ledger.mempool import EarlyTxs
from learningchain.ledger.tx import UpdateTx
from learningchain.node import intake, status as node_status
from learningchain.node.chainstate import Ledger
from learningchain.node.intake import now_ms
from learningchain.node.keyfile import load_or_create_key
from learningchain.node.local_baseline import LocalBaseline, local_baseline_loop
from learningchain.node.p2p.peer_urls import own_url
from learningchain.node import logs
from learningchain.node.metrics import NodeTelemetry
from learningchain.node.p2p.peers import PeerSet
from learningchain.node.participant import Participant, Role
from learningchain.node.releases import ReleaseLog
from learningchain.node.round_distances import RoundDistances
from learningchain.node.secagg_learner import SaLearner
from learningchain.node.secagg_view import tx_summary
from learningchain.node.store import Store
from learningchain.node.threads import (MinerStats, OwnUpdates, evaluator_loop, miner_loop, participant_loop,
                                        restore_releases)
from learningchain.node.tls import TlsConfig

GENESIS_FILE = "genesis.json"
MAX_TEMPLATES = 32
#: mempool txs offered again to peers per peer-sync pass (Node.rebroadcast_mempool).
REBROADCAST_MAX = 64
#: a mempool tx is offered again only after it has waited this long (seconds).
REBROADCAST_AFTER_S = 4.0
#: mining clients (token holders, by X-Miner-Id or address) whose templates are kept.
MAX_TEMPLATE_CLIENTS = 8
#: /mining/wait long-polls at once (each holds one HTTP thread until its template is stale).
MAX_MINING_WAITS = 4
#: /rounds/<r>?wait= long-polls at once: anyone may ask, and the server has 8 threads.
MAX_ROUND_WAITS = 2
#: how long our miner waits for a block on our tip to be validated (seconds; hold_miner).
MINER_HOLD_S = 0.1


def check_genesis_file(data_dir: Path, config: NetworkConfig) -> None:
    """Write genesis.json on first start; refuse a data dir of another network."""
    path = data_dir / GENESIS_FILE
    mine = make_genesis(config).hash
    if path.exists():
        try:
            theirs = make_genesis(NetworkConfig.from_dict(json.loads(path.read_text()))).hash
        except (ValueError, ConfigError) as exc:
            raise ConfigError(f"{path} is unreadable ({exc}); move it away or use another --data-dir") from None
        if theirs != mine:
            raise ConfigError(f"{data_dir} belongs to another network (genesis {theirs[:16]}..., "
                              f"this config is {mine[:16]}...): use another --data-dir or the same genesis")
        return
    path.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")


def _with_sa(doc: dict, tx) -> dict:
    """``/txs/<id>``: an SA tx's kind and what it holds (a masked input stays masked)."""
    sa = tx_summary(tx)
    if sa is not None:
        doc["secure_aggregation"] = sa
    return doc


class Node:
    def __init__(self, data_dir, genesis_config: NetworkConfig, dataset_path=None, peers=(),
                 mine: bool = False, mine_workers: int = 1, attack: str | None = None,
                 dp_sigma: float = 0, dp_clip: float = 0, host: str = "127.0.0.1", port: int = 5000,
                 quiet: bool = False, compression: str | None = None, topk_fraction: float = 0.1,
                 skip_threshold: float = 0.0, dp_mode: str | None = None, dp_epsilon: float = 0.0,
                 dp_delta: float = 1e-5, dp_sample_rate: float = 0.0, dp_rounds: int = 0,
                 local_baseline: bool = False, test_path=None, advertise_url: str | None = None,
                 ops: logs.OpsSettings | None = None, tls: TlsConfig | None = None):
        if genesis_config.secure_aggregation is not None and (compression or skip_threshold > 0):
            raise ConfigError("--compression and --skip-threshold do not apply under secure aggregation (this "
                              "genesis): an input is a masked fixed-point vector, sent whole every round")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config = genesis_config
        self.genesis = make_genesis(genesis_config)
        check_genesis_file(self.data_dir, genesis_config)
        self.key = load_or_create_key(self.data_dir)
        self.pubkey, self.address = self.key.public_hex, self.key.address
        self._held_since: dict[str, float] = {}  # mempool tx id -> when a rebroadcast pass first saw it
        self.quiet = quiet
        self.host, self.port = host, port
        self.ops = ops or logs.OpsSettings()  # logging and --admin-allow (logs.py)
        self.logger = logs.node_logger(port, self.ops, quiet, self.address)  # this node's own: see Node.log
        self.telemetry = NodeTelemetry()  # /metrics (metrics.py): this node's registry and histograms
        self.url = own_url(host, port, advertise_url, "https" if tls else "http")  # --advertise-url, else host:port
        self.lock = threading.RLock()
        self.store = Store(self.data_dir)
        self.ledger = Ledger(self.genesis, self.store)
        self._model = None  # built on first use (property model): a relay or miner needs no backend
        if dataset_path is not None or test_path is not None:  # it trains or measures: build it now,
            self._model = _build_model(genesis_config.model_spec)  # so a missing backend stops the start
        self.mining = bool(mine)
        self.mine_workers = max(1, int(mine_workers))
        self.refused: Counter[str] = Counter()
        self.metrics: dict[int, dict[str, float]] = {}  # round -> global metrics of G(r)
        self.metric_digests: dict[int, str] = {}  # round -> digest of the G(r) measured
        self.measured: int | None = None  # the newest round in metrics (note_measured): /live, the index
        self.measurements = 0  # metrics stored since start (a re-measure after a reorg counts too)
        self.g0_metrics: dict[str, float] | None = None  # G0 on the held-out set (the evaluator, once)
        self.round_distances = RoundDistances()  # the newest rounds' update distances (the evaluator)
        self._timings: dict[str, list] = {}  # name -> [seconds, count]; see add_timing
        self._timings_lock = threading.Lock()
        #: client -> template id -> (block, issued, template_epoch then); see new_template
        self.templates: OrderedDict[str, OrderedDict[str, tuple[Block, float]]] = OrderedDict()
        self.early = EarlyTxs()
        self.early_held = 0  # updates for the next round held since start (EarlyTxs)
        self.orphans = 0  # blocks with an unknown parent received since start
        self.tip_changed = threading.Condition()
        self.tip_seq = 0  # bumped under tip_changed whenever the tip moves (wait_tip)
        self.progress_seq = 0  # ... and with every round measured too (wait_round)
        self.tip_moved_at = time.monotonic()  # when it last moved (tip_age)
        self.learner_idle = threading.Event()  # set while our learner has nothing to do for the tip
        self.mempool_version = 0
        self.mempool_seq = 0  # bumped with mempool_cv notified for every tx taken in (await_txs)
        self.mempool_cv = threading.Condition()
        self.template_epoch = 0  # bumped whenever our miner's template goes stale (template_stale)
        self.own_template: Block | None = None  # what our miner searches now
        self.last_template: Block | None = None  # the newest template any miner was given
        self.template_cv = threading.Condition()  # notified with every template_epoch bump
        self.mining_waits = 0  # /mining/wait long-polls running now (wait_template)
        self.round_waits = 0  # /rounds/<r>?wait= long-polls running now (wait_round)
        self.miner = None  # the miner.pow.Miner of our miner thread, while it runs
        self.miner_hold_until = 0.0  # monotonic time before which our miner waits (hold_miner) ...
        self.miner_hold_seq = 0  # ... for the tip to move on from this tip_seq
        self.stop_event = threading.Event()
        #: set by :meth:`rest`: the learner and our miner stop, the API keeps serving.
        self.resting = threading.Event()
        self._threads: list[threading.Thread] = []
        self.participant: Participant | None = None
        self.test_set = None
        if dataset_path is not None:
            X, y = load_partition(dataset_path)
            self.participant = Participant(self.key, genesis_config.model_spec, X, y,
                                           Role(attack=attack, dp_sigma=dp_sigma, dp_clip=dp_clip,
                                                dp_mode=dp_mode, dp_epsilon=dp_epsilon, dp_delta=dp_delta,
                                                dp_sample_rate=dp_sample_rate, dp_rounds=dp_rounds,
                                                compression=compression, topk_fraction=topk_fraction,
                                                skip_threshold=skip_threshold))
            if test_path is None and Path(dataset_path).with_name("test.npz").exists():
                test_path = Path(dataset_path).with_name("test.npz")  # the partition directory's hold-out
        if test_path is not None:  # run --test FILE (a node without --data may evaluate too)
            self.test_set = load_partition(test_path)
            spec = genesis_config.model_spec
            if self.test_set[0].shape[1] != spec.n_features:
                raise ConfigError(f"--test {test_path}: {self.test_set[0].shape[1]} features per sample, the "
                                  f"genesis model takes {spec.n_features}")
        # the explorer's local-only line (local_baseline.py): opt-in (run --local-baseline), as its training
        # in the background shares the interpreter with the round's work; node.py demo writes baselines.json
        self.local_baseline: LocalBaseline | None = None
        if (local_baseline and self.participant is not None and self.test_set is not None
                and not self.participant.role.dp and genesis_config.secure_aggregation is None):
            listed = list(genesis_config.roster)
            self.local_baseline = LocalBaseline(genesis_config.model_spec, X, y, self.test_set,
                                                listed.index(self.pubkey) if self.pubkey in listed else 0)
        if self.participant is None:
            self.learner_idle.set()  # no learner to wait for: the evaluator runs on every tip
        self.peers = PeerSet(self, self.url, peers, tls=tls)
        # energy.py: our own estimate, priced with the profile we declared in genesis (if any)
        self.energy = EnergyMeter(genesis_config.profiles.get(self.pubkey))
        self._energy_lock = threading.Lock()
        self.hashes = 0  # proof-of-work hashes our miner computed
        self.own_updates = OwnUpdates()  # what the participant loop trained and must offer again
        self.evaluated_through: tuple[int, str] | None = None  # see threads.evaluate_closed_rounds
        self.miner_stats: MinerStats | None = None  # our miner's hash rate, once it runs
        self.sa: SaLearner | None = None  # secure aggregation (secagg_learner.py): journal loaded now
        if genesis_config.secure_aggregation is not None and self.participant is not None:
            self.sa = SaLearner(self.key, genesis_config, self.data_dir, self.participant,
                                initial_weights(genesis_config.model_spec))  # its size fixes distributed DP's noise
        self.releases = ReleaseLog(self.data_dir)  # DP: the updates we ever released (releases.py)
        restore_releases(self)  # DP: releases before this start count
        self.telemetry.watch(self)

    # --- logging ------------------------------------------------------------------
    @property
    def model(self):
        """The genesis model's backend object, built when first needed (training,
        measuring): a node that only validates, relays or mines a PyTorch
        network's chain needs no PyTorch (the chain takes shapes and G0 from genesis)."""
        if self._model is None:
            self._model = _build_model(self.config.model_spec)
        return self._model

    def log(self, line: str, level: int = logging.INFO) -> None:
        """One record on this node's logger (logs.py: one line each, never interleaved;
        text as before, or JSON; stdout or --log-file)."""
        logs.emit(self.logger, line, level)

    # --- queries (lock held briefly) -------------------------------------------------
    @property
    def chain(self):
        return self.ledger.chain

    def tip_info(self) -> tuple[int, str]:
        with self.lock:
            return self.chain.height, self.chain.tip.hash

    def tip_work(self) -> int:
        with self.lock:
            return self.chain.tip_work

    def tip_age(self) -> float:
        """Seconds since a block last moved our tip (or since start)."""
        return time.monotonic() - self.tip_moved_at

    def knows_block(self, block_hash: str) -> bool:
        with self.lock:
            return block_hash in self.chain  # no body read (old blocks live in the store)

    def locator(self) -> list[str]:
        with self.lock:
            return self.chain.locator()

    def chain_entry(self, block_hash: str):
        """Our index entry of a block we hold, or None (headers-first sync)."""
        with self.lock:
            return self.chain.entry(block_hash)

    def plausible_target_limit(self) -> int:
        """The easiest target we accept on a block we cannot connect yet (compact.py)."""
        with self.lock:
            return plausible_target_limit(self.chain)

    def add_timing(self, name: str, seconds: float, count: int = 1) -> None:
        """Accumulate a duration: train, mine (proof-of-work search; ``count`` is the
        blocks found), validate (blocks that extended a branch), validate_closing
        (those closing a round: aggregation included), evaluate."""
        with self._timings_lock:
            row = self._timings.setdefault(name, [0.0, 0])
            row[0] += seconds
            row[1] += count
        self.telemetry.observe(name, seconds)  # the /metrics histograms

    def timings_snapshot(self) -> dict[str, list]:
        """A copy of the accumulated durations: name -> [seconds, count] (add_timing)."""
        with self._timings_lock:
            return {k: list(v) for k, v in self._timings.items()}

    def count_work(self, round: int | None = None, sample_epochs: int = 0, hashes: int = 0) -> None:
        """Training (sample-epochs of ``round``) and mining (hashes) for the energy estimate."""
        with self._energy_lock:
            self.hashes += hashes
            if sample_epochs:
                self.energy.trained(round, sample_epochs)

    def observe_energy(self) -> None:
        """Charge the traffic and hashes since the last reading to the round open now
        (called before each block is applied, so a round's bytes stay in that round)."""
        with self.lock:
            r = self.chain.tip_state.round
        t = self.peers.traffic()
        with self._energy_lock:
            self.energy.observe(r, t["sent"], t["received"], self.hashes)

    def energy_doc(self, round: int | None = None) -> dict | None:
        """Our energy estimate (energy.py) up to now: the whole run, or one ``round``
        (None if it has no reading); the traffic and hashes since the last reading
        are charged first (observe_energy)."""
        self.observe_energy()
        with self._energy_lock:
            return self.energy.report() if round is None else self.energy.round_report(round)

    # --- reporting: the /status document and its parts (status.py) ----------------
    def tip_summary(self) -> dict:
        return node_status.tip_summary(self)

    def status(self) -> dict:
        return node_status.status(self)

    def timings(self) -> dict:
        return node_status.timings(self)

    def energy_report(self, round: int | None = None) -> dict | None:
        return node_status.energy_report(self, round)

    def privacy_report(self) -> dict | None:
        return node_status.privacy_report(self)

    def find_tx(self, txid: str) -> dict | None:
        with self.lock:
            tx = self.ledger.mempool.get(txid)
            if tx is not None:
                return _with_sa({"tx": tx.to_dict(), "status": "mempool", "block": None}, tx)
            found = self.chain.find_tx(txid)
            if found is None:
                for t in self.chain.tip_state.pending:  # defensive: pending are in the main chain
                    if t.id == txid:
                        return {"tx": t.to_dict(), "status": "confirmed", "block": None}
                return None
            tx, block_hash = found
            where = self.chain.tx_block(txid)
            return _with_sa({"tx": tx.to_dict(), "status": "confirmed", "block": block_hash,
                             "height": where[1] if where else None}, tx)

    def lookup_tx(self, txid: str) -> UpdateTx | None:
        """A tx by id from the mempool or a recent block (compact block rebuilding:
        a tx of a block deep below the tip cannot be in a valid new block, so the
        store is never read for one; a compact block naming many costs no I/O)."""
        with self.lock:
            tx = self.ledger.mempool.get(txid)
            if tx is not None:
                return tx
            found = self.chain.find_tx(txid, stored=False)
            return found[0] if found else None

    def await_txs(self, txids: list[str], seconds: float) -> None:
        """Wait up to ``seconds`` until every one of ``txids`` can be looked up
        (:meth:`lookup_tx`): woken by each tx our mempool takes in."""
        deadline = time.monotonic() + seconds
        while True:
            seen = self.mempool_seq  # before looking: a tx in between ends the wait below
            if all(self.lookup_tx(t) is not None for t in txids):
                return
            left = deadline - time.monotonic()
            if left <= 0 or self.stop_event.is_set():
                return
            with self.mempool_cv:
                self.mempool_cv.wait_for(lambda: self.mempool_seq != seen, left)

    def has_tx(self, txid: str) -> bool:
        """In the mempool, held for the next round, or in the main chain? (``/inv``:
        no body is read for it.)"""
        with self.lock:
            return (txid in self.ledger.mempool or self.early.holds(txid)
                    or self.chain.tx_block(txid) is not None)

    # --- writes: txs and blocks taken in (intake.py) -------------------------------------
    def submit_tx(self, tx: UpdateTx, peer: str | None = None, own: bool = False) -> str:
        t0 = time.perf_counter()
        status = "refused"
        try:
            status = intake.submit_tx(self, tx, peer, own)
            return status
        finally:
            if status != "known":  # a known tx costs a lookup: not a validation
                self.telemetry.observe("tx", time.perf_counter() - t0)

    def submit_block(self, block: Block, peer: str | None = None, relay: bool = True,
                     solicited: bool = False) -> str:
        return intake.submit_block(self, block, peer, relay, solicited)

    def submit_mined(self, block: Block) -> str:
        return intake.submit_mined(self, block)

    def receive_block_doc(self, doc: Any, peer: str | None = None, relay: bool = True,
                          solicited: bool = False, expect: str | None = None) -> str:
        return intake.receive_block_doc(self, doc, peer, relay, solicited, expect)

    def note_orphan(self, header: BlockHeader, peer: str | None) -> str:
        return intake.note_orphan(self, header, peer)

    def check_header_on_parent(self, header: BlockHeader) -> bool:
        return intake.check_header_on_parent(self, header)

    def rebroadcast_mempool(self, limit: int = REBROADCAST_MAX) -> int:
        """Offer the waiting updates we hold again, ours first, then the others in tx
        id order, at most ``limit`` per call (the peer-sync loop calls it every
        ``SYNC_SECONDS``): peers it already reached skip it (seen-set, no request);
        peers that were down, or a miner that restarted with an empty mempool,
        get it now by ``/inv`` (issue 10 item 14: a tx whose sender or first
        relay died must not be lost with it). Returns the txs offered."""
        now = time.monotonic()
        with self.lock:
            held = {t.id: t for t in self.ledger.mempool}
        # first noticed by this pass; offered only once it has waited a while, so a
        # tx that gossip is still spreading costs no extra /inv to each peer
        self._held_since = {i: self._held_since.get(i, now) for i in held}
        waiting = [t for i, t in held.items() if now - self._held_since[i] >= REBROADCAST_AFTER_S]
        txs = sorted(waiting, key=lambda t: (t.sender != self.pubkey, t.id))[:max(0, limit)]
        for tx in txs:
            self.peers.broadcast_tx(tx)  # announced: a peer may have it from a relay by now
        return len(txs)

    # --- mining templates (served to external miners and used by our own) ----------
    def new_template(self, client: str = "own") -> tuple[str, Block]:
        """A template for ``client`` (our miner thread, or one holder of the miner
        token): each client keeps its own last :data:`MAX_TEMPLATES`, so one
        polling hard cannot evict another's; at most :data:`MAX_TEMPLATE_CLIENTS`."""
        with self.lock:
            t0 = time.perf_counter()
            block = self.ledger.template(self.pubkey, now_ms())
            if block.commitment is not None:  # the round's aggregate computed for this block
                self.telemetry.observe("aggregate", time.perf_counter() - t0)
            tid = secrets.token_hex(8)
            mine = self.templates.setdefault(client, OrderedDict())
            self.templates.move_to_end(client)
            mine[tid] = (block, time.monotonic(), self.template_epoch)
            self.last_template = block
            while len(mine) > MAX_TEMPLATES:
                mine.popitem(last=False)
            while len(self.templates) > MAX_TEMPLATE_CLIENTS:
                self.templates.popitem(last=False)
        return tid, block

    def submit_nonce(self, template_id: str, nonce: int, client: str = "own") -> tuple[str, Block]:
        with self.lock:
            entry = self.templates.get(client, {}).get(template_id)
            tip = self.chain.tip.hash
        if entry is None:
            raise ValidationError("template-unknown", f"no template {template_id!r} (expired or never issued); "
                                                      f"fetch a new one from /mining/template")
        block = entry[0]
        if block.header.prev_hash != tip:
            raise ValidationError("template-stale", "the chain moved on since this template; fetch a new one")
        block = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
        status = self.submit_block(block)
        if status in ("connected", "reorg", "side"):  # a new block (a bad proof of work raised)
            self.telemetry.mined_standalone += 1
        return status, block

    # --- threads ----------------------------------------------------------------------
    def start(self) -> None:
        if self.ledger.evicted_on_open:
            self.log(f"store: {self.ledger.evicted_on_open} side-branch block(s) over the caps evicted on open")
        if self.ledger.mempool_restored or self.ledger.mempool_dropped:
            self.log(f"mempool: {self.ledger.mempool_restored} stored tx(s) restored, "
                     f"{self.ledger.mempool_dropped} no longer valid on the tip dropped")
        if self.participant is not None:
            self._spawn(lambda: participant_loop(self), "participant")
        if self.test_set is not None:
            self._spawn(lambda: evaluator_loop(self), "evaluator")
        else:
            self.log("no test set (--test FILE, or test.npz next to --data): this node does not evaluate "
                     "the global model")
        if self.local_baseline is not None:
            self._spawn(lambda: local_baseline_loop(self), "local-baseline")
        if self.mining:
            self._spawn(lambda: miner_loop(self), "miner")
        self.peers.start()

    def _spawn(self, target, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def wait_tip(self, seconds: float, seen: int | None = None) -> None:
        """Sleep until the tip changes or ``seconds`` pass. ``seen``: the
        :attr:`tip_seq` the caller last acted on; if the tip moved since, return
        at once (no wake-up is lost between looking at the tip and waiting)."""
        with self.tip_changed:
            if seen is None:
                self.tip_changed.wait(seconds)
            else:
                self.tip_changed.wait_for(lambda: self.tip_seq != seen or self.stop_event.is_set(), seconds)

    def wait_round(self, r: int, seconds: float, limited: bool = True) -> None:
        """``GET /rounds/<r>?wait=S``: return once round ``r`` is closed on the main
        chain and, if we hold a test set, G(r) is measured; or after ``seconds``.
        At most :data:`MAX_ROUND_WAITS` wait at once (each holds one HTTP thread);
        beyond that the call returns at once, as a plain ``/rounds/<r>``.
        ``limited=False``: our own ``--until-round`` watch, neither limited nor counted."""
        with self.tip_changed:
            if limited and self.round_waits >= MAX_ROUND_WAITS:
                return
            self.round_waits += limited
        deadline = time.monotonic() + seconds
        try:
            while not self.stop_event.is_set():
                seen = self.progress_seq  # before looking: a close or a measurement after it wakes us
                with self.lock:  # never under tip_changed: a long validation must not hold its waiters
                    closed = self.chain.round_close(r) is not None
                if closed and (self.test_set is None or r in self.metrics):
                    return
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                with self.tip_changed:
                    self.tip_changed.wait_for(lambda: self.progress_seq != seen or self.stop_event.is_set(), left)
        finally:
            with self.tip_changed:
                self.round_waits -= limited

    def note_measured(self, r: int) -> None:
        """The evaluator stored round ``r``'s metrics: keep the newest measured
        round (so /live and the index never scan every round) and wake ``wait_round``."""
        with self.tip_changed:
            self.measured = r if self.measured is None else max(self.measured, r)
            self.measurements += 1
            self.progress_seq += 1
            self.tip_changed.notify_all()

    # --- events that move a round on (intake.py calls them) -------------------------
    def tip_moved(self) -> None:
        """A block moved our tip: wake the learner (it trains on the new round at
        once), hold the evaluator back until the learner is done, and drop our
        miner's template (it built on the old tip)."""
        self.tip_moved_at = time.monotonic()
        with self.tip_changed:
            self.tip_seq += 1
            self.progress_seq += 1
            if self.participant is not None:
                self.learner_idle.clear()
            self.tip_changed.notify_all()
        self.template_stale()

    def mempool_changed(self) -> None:
        """A tx entered our mempool (lock held). Our miner's template is rebuilt
        at once if it carries no tx, or if the mempool now holds what closes the
        round and the template would not close it: the round closes in the block
        that carries its quorum, not one template later."""
        self.mempool_version += 1
        with self.mempool_cv:
            self.mempool_seq += 1
            self.mempool_cv.notify_all()
        t = self.last_template
        if t is not None and t.commitment is None and (not t.txs or self.ledger.would_close()):
            self.template_stale()

    def hold_miner(self) -> None:
        """A block on our tip whose header checked out (its proof of work against
        the target our chain requires: intake.check_header_on_parent) is arriving: stop our search
        now and start the next one when the tip moved, or as soon as the block
        turns out not to connect (:meth:`release_miner`), or after
        :data:`MINER_HOLD_S` at most. Mining on the old tip meanwhile could only
        find a block that loses to it (a stale block). A header's proof of work is
        real work, and an invalid body releases us at once, so a peer holds us
        only by mining, and only while we validate what it mined."""
        miner = self.miner
        if miner is None or self.miner_hold_seq == self.tip_seq and self.miner_hold_until > time.monotonic():
            return  # held already on this tip: a second header (its full block) changes nothing
        self.miner_hold_seq = self.tip_seq  # the tip it waits to move from
        self.miner_hold_until = time.monotonic() + MINER_HOLD_S
        miner.interrupt()  # our own search only: standalone miners learn of the block when it connects

    def release_miner(self) -> None:
        """The block that held our miner did not connect (invalid, a side branch,
        txs missing): search again now. So a peer that mines invalid blocks holds
        us for their validation only, not for :data:`MINER_HOLD_S` each."""
        if self.miner_hold_until:
            with self.tip_changed:
                self.miner_hold_until = 0.0
                self.tip_changed.notify_all()

    def wait_miner_hold(self) -> None:
        """Our miner's wait while held: until the tip moves, the hold is released
        or it expires."""
        with self.tip_changed:
            self.tip_changed.wait_for(lambda: self.tip_seq != self.miner_hold_seq or self.stop_event.is_set()
                                      or time.monotonic() >= self.miner_hold_until,
                                      max(0.0, self.miner_hold_until - time.monotonic()))

    def template_stale(self) -> None:
        """Every template issued so far is out of date: stop our miner's search
        now and answer the standalone miners' ``/mining/wait``."""
        with self.template_cv:
            self.template_epoch += 1
            self.template_cv.notify_all()
        miner = self.miner
        if miner is not None:
            miner.interrupt()

    def wait_template(self, template_id: str, client: str, timeout: float) -> bool | None:
        """``POST /mining/wait``: block until ``client``'s template ``template_id``
        is stale (True at once if it is unknown or stale already) or ``timeout``
        seconds pass (False: still current). None when :data:`MAX_MINING_WAITS`
        run already (each holds an HTTP thread)."""
        with self.lock:
            entry = self.templates.get(client, {}).get(template_id)
        if entry is None:
            return True
        with self.template_cv:
            if self.mining_waits >= MAX_MINING_WAITS:
                return None
            self.mining_waits += 1
            try:
                return self.template_cv.wait_for(
                    lambda: self.template_epoch != entry[2] or self.stop_event.is_set(), max(0.0, timeout))
            finally:
                self.mining_waits -= 1

    def rest(self) -> None:
        """Stop learning and mining for good but keep serving the chain, the API and
        the explorer (``run --rest-after-round``; ``demo --keep`` ends its network's
        rounds this way instead of letting it run forever: issue 14)."""
        self.resting.set()
        self.template_stale()  # interrupts our miner's search
        with self.tip_changed:
            self.tip_changed.notify_all()  # wakes the learner

    def stop(self) -> None:
        self.stop_event.set()
        self.template_stale()  # wakes our miner and every /mining/wait
        self.learner_idle.set()
        with self.tip_changed:
            self.tip_changed.notify_all()
        self.peers.stop()
        for t in self._threads:
            t.join(timeout=10)
        with self.lock:
            self.store.close()



def _build_model(spec):
    """The genesis model, its user architecture loaded first; a torch model trains
    on ``LC_TORCH_THREADS`` threads (default 1: several nodes share the machine's cores)."""
    user_models.ensure(spec.kind)
    model = build_model(spec)
    if spec.backend == "torch":
        import torch
        threads = os.environ.get("LC_TORCH_THREADS", "1")
        torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else 1)
    return model
