"""In-process simulation of a LearningChain network: N participants, R rounds,
one machine, the real ledger core.

What is real: secp256k1 keys (derived from the seed), signed update
transactions, proof of work (at low difficulty), full validation of every tx
and block by every full node (:class:`learningchain.node.chainstate.Ledger`), and the
global model taken from the chain (``tip_state.model``), never computed on the
side. What is simulated: the transport (txs and blocks are handed to each
full node in memory, as their canonical bytes re-parsed, as gossip would
deliver them) and the clock (a virtual ``now_ms`` advancing by
``target_block_ms`` per block).

Only ``full_nodes`` (default ``min(N, 3)``) Ledger instances run: a hundred
participants do not need a hundred copies of the chain to be validated; every
full node still validates everything. Miners rotate among full nodes with a
seeded choice.

Scale (bench/sim_scale.py): a round costs time linear in N, each update
trained, signed, parsed from its bytes and validated by each full node once.
Nothing per round may scan the other participants per participant: the
mempool's one-per-sender check is an index lookup, the attack context is
counted once per round, and each tx and block is serialised once and parsed
by each receiving full node. Memory grows with N x rounds: every full node
keeps every block (no store here).

The configuration (:class:`~learningchain.sim.config.SimConfig`) and its
validation live in :mod:`learningchain.sim.config`.
"""
from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np

from learningchain.learning import aggregation, baselines, data, energy
from learningchain.ledger.block import Block
from learningchain.learning.compression import payload_bytes
from learningchain.core.crypto import PrivateKey
from learningchain.core.encoding import canonical_json, encode_weights, parse_json
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import DEMO_TIMESTAMP, NetworkConfig, make_genesis, target_for_hashes
from learningchain.learning.models import build_model, decimal_string
from learningchain.node.participant import Participant, derive_seed
from learningchain.sim import sa_round
from learningchain.sim.config import SimConfig
from learningchain.sim.errors import SimulationError
from learningchain.ledger.txs import Tx, parse_tx
from miner.pow import search


def _canonical_params(params: Mapping[str, Any]) -> dict:
    """Genesis is hashed without floats: fractions become decimal strings."""
    return {k: decimal_string(v) if isinstance(v, float) else v for k, v in params.items()}


class Simulation:
    """A network of ``cfg.nodes`` participants and ``cfg.n_full`` full nodes."""

    def __init__(self, cfg: SimConfig):
        from learningchain.node.chainstate import Ledger  # chainstate imports the store and sqlite3: keep `node.py --help` light
        self.cfg = cfg
        self.spec = cfg.model_spec()
        if cfg.data_dir is not None:  # the user's node files are the partitions, test.npz the hold-out
            user = data.load_data_dir(cfg.data_dir, self.spec.task)
            self.dataset = user.dataset()
            self.parts = list(user.partitions)
        else:
            self.dataset = data.load_dataset(cfg.dataset, cfg.seed, cfg.generate_samples)
            self.parts = data.partition(self.dataset.X_train, self.dataset.y_train, cfg.nodes, cfg.split,
                                        cfg.alpha, cfg.seed)
        order = np.random.default_rng(cfg.seed + 1).permutation(cfg.nodes)
        self.attackers = sorted(int(i) for i in order[:cfg.byzantine])
        self.participants = []
        budget = None if cfg.energy_budget_j is None else int(cfg.energy_budget_j * 1e9)
        self.profiles = energy.random_profiles(cfg.nodes, derive_seed(cfg.seed, "energy"), budget, hash_nj=cfg.hash_nj)
        for i, (X, y) in enumerate(self.parts):
            honest = i not in self.attackers
            role = cfg.role(attack=None if honest else cfg.attack, compression=cfg.compression,
                            topk_fraction=float(cfg.topk_fraction),
                            skip_threshold=float(cfg.skip_threshold) if honest else 0.0)
            key = PrivateKey.from_secret(derive_seed(cfg.seed, "participant", i))
            self.participants.append(Participant(key, self.spec, X, y, role, seed=cfg.seed,
                                                 reproducible_noise=cfg.dp_noise == "seeded"))
        self.attacker_keys = {self.participants[i].key.public_hex for i in self.attackers}
        self.miner_keys = [PrivateKey.from_secret(derive_seed(cfg.seed, "full-node", j)) for j in range(cfg.n_full)]
        keys = [p.key.public_hex for p in self.participants]
        self.names = {k: f"node{i}" for i, k in enumerate(keys)}
        self.energy_profiles = {f"node{i}": prof for i, prof in enumerate(self.profiles)}
        full_profile = replace(energy.DEFAULT_PROFILE, hash_nj=cfg.hash_nj)
        self.energy_profiles.update({f"full{j}": full_profile for j in range(cfg.n_full)})
        selecting = cfg.selection != "all"
        # sized for the attackers as demo and experiment size them; explicit --agg-param wins
        rule_params = aggregation.sized_params(cfg.aggregator, cfg.nodes, cfg.byzantine, cfg.n_quorum,
                                               cfg.aggregator_params)
        self.rule_params = rule_params
        self.undersized = aggregation.undersized(cfg.aggregator, rule_params, cfg.nodes, cfg.byzantine)
        sel_doc = None
        if selecting:
            params = {"k": cfg.select_k, **cfg.selection_params}
            if cfg.selection == "energy-aware":
                params.setdefault("min_k", max(1, min(cfg.select_k, aggregation.min_updates(
                    cfg.aggregator, rule_params))))
            sel_doc = {"policy": cfg.selection, "params": params}
        self.network = NetworkConfig(
            network=f"sim-{cfg.name}-{cfg.seed}"[:64], model=self.spec.to_dict(),
            aggregation={"rule": cfg.aggregator,
                         "params": _canonical_params(rule_params)},
            quorum=cfg.n_quorum, round_timeout=cfg.round_timeout, target_block_ms=cfg.target_block_ms,
            initial_target=target_for_hashes(cfg.difficulty), pow_limit=(1 << 255) - 1,
            retarget_window=20, max_tx_bytes=1 << 20, max_block_bytes=64 << 20,
            allow_list=None if selecting else tuple(keys), timestamp=DEMO_TIMESTAMP,
            participants=tuple({"pubkey": k, "energy": prof.to_dict()} for k, prof in zip(keys, self.profiles))
            if selecting else None, selection=sel_doc)
        if cfg.secure_aggregation:
            self.network = self.network.with_secure_aggregation(cfg.sa_params())
        self.genesis = make_genesis(self.network)
        self.ledgers = [Ledger(self.genesis) for _ in range(cfg.n_full)]
        self.model = build_model(self.spec)
        self.now_ms = DEMO_TIMESTAMP
        self._miner_rng = random.Random(derive_seed(cfg.seed, "miners"))
        self.blocks_mined = 0
        self.hashes = 0
        self.activity: dict[str, energy.Activity] | None = None  # this round's, while it runs
        self.clients = sa_round.make_clients(self) if cfg.secure_aggregation else {}
        self.sa_deltas: dict[str, np.ndarray] = {}  # SA: last round's w - G(r-1) per input sender (flat)

    # --- transport ------------------------------------------------------------
    @staticmethod
    def _deliver_tx(wire: bytes) -> Tx:
        """What a full node makes of a tx's bytes: its own parsed copy."""
        return parse_tx(parse_json(wire))

    @staticmethod
    def _deliver_block(wire: bytes) -> Block:
        return Block.parse(parse_json(wire))

    def _tick(self) -> None:
        self.now_ms += self.cfg.target_block_ms

    def gossip_tx(self, tx: Tx) -> str | None:
        """Hand ``tx`` to every full node; the reject code of the first that refuses, if any."""
        code, wire = None, tx.serialize()  # serialised once, as a gossiping node sends it
        for ledger in self.ledgers:
            try:
                ledger.submit_tx(self._deliver_tx(wire))
            except ValidationError as exc:
                code = code or exc.code
        return code

    def mine_one(self, timing: dict) -> Block:
        """One block by a seeded choice of full node, then delivered to all."""
        j = self._miner_rng.randrange(len(self.ledgers))
        self._tick()
        t0 = time.perf_counter()
        template = self.ledgers[j].template(self.miner_keys[j].public_hex, self.now_ms)
        t1 = time.perf_counter()
        nonce, hashes = search(template.header.prefix(), template.header.target, 0, 1 << 62)
        if nonce is None:
            raise SimulationError("proof-of-work search exhausted its nonce range")
        block = replace(template, header=template.header.with_nonce(nonce))
        t2 = time.perf_counter()
        if self.activity is not None:
            self.activity[f"full{j}"].add(hashes=hashes, sent=block.size * (len(self.ledgers) - 1))
            for k in range(len(self.ledgers)):
                if k != j:
                    self.activity[f"full{k}"].add(received=block.size)
        wire = block.serialize() if len(self.ledgers) > 1 else b""
        for k in [j] + [k for k in range(len(self.ledgers)) if k != j]:
            try:
                self.ledgers[k].submit_block(block if k == j else self._deliver_block(wire), self.now_ms)
            except ValidationError as exc:
                raise SimulationError(f"full node {k} refused block {block.height} mined by node {j}: "
                                      f"{exc.code}: {exc.detail}") from None
        t3 = time.perf_counter()
        timing["template"] += t1 - t0
        timing["mine"] += t2 - t1
        timing["validate_block"] += t3 - t2
        self.blocks_mined += 1
        self.hashes += hashes
        return block

    # --- one round ------------------------------------------------------------
    def evaluate(self, weights) -> dict:
        return self.model.evaluate(weights, self.dataset.X_test, self.dataset.y_test)

    def run_round(self) -> dict:
        """Train, sign and gossip every participant's update for the open round,
        then mine until the round closes; the round's entry of results.json.
        Under secure aggregation: :func:`learningchain.sim.sa_round.run_sa_round`."""
        if self.cfg.secure_aggregation:
            return sa_round.run_sa_round(self)
        cfg, chain = self.cfg, self.ledgers[0].chain
        timing: dict[str, float] = defaultdict(float)
        state = chain.tip_state
        r, base, digest = state.round, state.model, state.model_digest
        active = [p for p in self.participants if state.selected is None or p.key.public_hex in state.selected]
        self.activity = act = {name: energy.Activity() for name in self.energy_profiles}
        model_bytes = len(canonical_json(encode_weights(base)))
        t0 = time.perf_counter()
        trained = [p.train(r, base) for p in active]  # not selected: no training, no upload
        t1 = time.perf_counter()
        benign = [w for p, w in zip(active, trained) if not p.attacking]
        n_byzantine = len(active) - len(benign)
        txs = [p.make_update(r, base, digest, self.now_ms, benign=benign, n_total=len(active),
                             n_byzantine=n_byzantine, trained=w)
               for p, w in zip(active, trained)]
        t2 = time.perf_counter()
        refused = {}
        for p, tx in zip(active, txs):
            name = self.names[p.key.public_hex]
            act[name].add(sample_epochs=len(p.X) * self.spec.epochs, received=model_bytes,
                          sent=tx.size * len(self.ledgers))
            for j in range(len(self.ledgers)):
                act[f"full{j}"].add(received=tx.size)
            code = self.gossip_tx(tx)
            if code:
                refused[tx.id] = code
        for j in range(len(self.ledgers)):  # the full nodes serve G(r-1) to the trainers
            act[f"full{j}"].add(sent=model_bytes * len(active) // len(self.ledgers))
        t3 = time.perf_counter()
        timing.update(train=t1 - t0, sign=t2 - t1, submit=t3 - t2)
        closing = None
        for _ in range(cfg.round_timeout + 2):
            block = self.mine_one(timing)
            if block.commitment is not None and block.commitment["round"] == r:
                closing = block
                break
        if closing is None:
            raise SimulationError(f"round {r} did not close within {cfg.round_timeout + 2} blocks")
        t4 = time.perf_counter()
        metrics = self.evaluate(chain.tip_state.model)
        timing["evaluate"] = time.perf_counter() - t4
        from learningchain.sim.results import round_entry  # results imports matplotlib: only when a round closes
        attacker_ids = [tx.id for tx in txs if tx.sender in self.attacker_keys]
        spent = [p.privacy_spent() for p in self.participants]
        eps = max(s[0] for s in spent) if spent and spent[0] is not None else None
        commitment = dict(closing.commitment)
        for txid, code in refused.items():  # never reached the chain: recorded as refused at submit
            commitment["rejected"] = {**commitment["rejected"], txid: f"refused at submit: {code}"}
        entry = round_entry(r, closing.height, metrics, commitment, attacker_ids, timing,
                            nbytes=sum(tx.size for tx in txs), epsilon=eps,
                            delta=cfg.dp_delta if eps is not None else None)
        entry["blocks"] = self.blocks_mined
        if eps is not None:
            entry["dp_mode"] = self.participants[0].accountant.mode
        news = len(canonical_json(closing.commitment)) + 189  # every participant learns the outcome
        for p in self.participants:
            act[self.names[p.key.public_hex]].add(received=news)
        self.activity = None
        updates = [tx for tx in txs if not tx.is_skip]
        entry.update(selected=len(active), attackers_selected=sum(p.attacking for p in active),
                     skipped=len(txs) - len(updates),
                     bytes_per_update=sum(t.size for t in updates) / len(updates) if updates else 0.0,
                     payload_per_update=sum(payload_bytes(t.weights) for t in updates) / len(updates)
                     if updates else 0.0,
                     energy=energy.round_energy(self.energy_profiles, act))
        return entry

    def check_agreement(self) -> tuple[str, str]:
        """Every full node holds the same tip and model digest, or SimulationError."""
        tips = {(l.chain.tip.hash, l.chain.tip_state.model_digest) for l in self.ledgers}
        if len(tips) != 1:
            raise SimulationError(f"full nodes disagree: {sorted(tips)}")
        return tips.pop()

    def run(self, with_baselines: bool = True,
            progress: Callable[[dict], None] | None = None) -> dict:
        """All rounds; the results document (:mod:`learningchain.sim.results`)."""
        start = time.perf_counter()
        initial = self.evaluate(self.ledgers[0].chain.tip_state.model)
        rounds = []
        for _ in range(self.cfg.rounds):
            entry = self.run_round()
            rounds.append(entry)
            if progress:
                progress(entry)
        tip, digest = self.check_agreement()
        sim_s = time.perf_counter() - start
        results = {"config": self.describe(tip, digest), "initial": initial, "rounds": rounds,
                   "final": dict(rounds[-1]["metrics"]) if rounds else dict(initial),
                   "baselines": self.baselines() if with_baselines else {},
                   "simulation_s": round(sim_s, 3),
                   "privacy": {self.names[p.key.public_hex]: p.accountant.report()
                               for p in self.participants if p.accountant is not None}}
        results["elapsed_s"] = round(time.perf_counter() - start, 3)
        return results

    def run_documented(self, with_baselines: bool = True, progress: Callable[[dict], None] | None = None,
                       argv: list[str] | None = None) -> dict:
        """:meth:`run`, plus what ``node.py simulate`` writes to results.json beside
        it: ``baselines`` as nulls with a note when skipped, and the ``provenance``
        block (:mod:`learningchain.sim.provenance`; ``argv``: the command line, by
        default this process's). The CLI and ``learningchain.simulate`` both call it."""
        from learningchain.sim.provenance import provenance
        results = self.run(with_baselines, progress)
        if not with_baselines:  # null, never a copy of final that a reader could take for a baseline
            results["baselines"] = {"centralized": None, "local_only": None, "note": "skipped (--no-baselines)"}
        results["provenance"] = provenance(results["config"], {"seed": self.cfg.seed, "model": self.spec.seed,
                                                               "dp_noise": self.cfg.dp_noise}, argv)
        return results

    def baselines(self) -> dict:
        epochs = self.cfg.rounds * self.spec.epochs
        test = (self.dataset.X_test, self.dataset.y_test)
        return {"centralized": baselines.centralized(self.spec, self.dataset, epochs, self.cfg.seed),
                "local_only": baselines.local_only(self.spec, self.parts, test, epochs, self.cfg.seed),
                "centralized_sklearn": baselines.centralized_sklearn(self.dataset)}

    def describe(self, tip: str, digest: str) -> dict:
        sizes = [len(y) for _, y in self.parts]
        return {**self.cfg.to_dict(), "quorum": self.cfg.n_quorum, "full_nodes": self.cfg.n_full,
                # every parameter the rule ran with (defaults and the sizing for --byzantine included),
                # and what the user gave
                "aggregator_params": dict(self.network.params), "aggregator_params_given": self.cfg.aggregator_params,
                "aggregator_params_warning": self.undersized,
                "data": {"samples": len(self.dataset.y_train) + len(self.dataset.y_test) if self.cfg.data_dir
                         else self.cfg.n_samples,
                         "sized_by": "data_dir" if self.cfg.data_dir else "samples" if self.cfg.samples is not None
                         else "default" if self.cfg.dataset in data.SYNTHETIC else "fixed",
                         "train": len(self.dataset.y_train), "test": len(self.dataset.y_test),
                         "per_node_min": min(sizes), "per_node_max": max(sizes)},
                "attackers": self.attackers, "spec": self.spec.to_dict(),
                "energy_profiles": {k: p.to_dict() for k, p in self.energy_profiles.items()},
                "secure_aggregation_params": None if self.network.secure_aggregation is None
                else self.network.secure_aggregation.to_dict(),
                "genesis": self.genesis.hash, "tip": tip, "model_digest": digest,
                "blocks": self.blocks_mined, "hashes": self.hashes}


def simulate(cfg: SimConfig, with_baselines: bool = True,
             progress: Callable[[dict], None] | None = None) -> dict:
    return Simulation(cfg).run(with_baselines, progress)
