"""The learner role under secure aggregation (docs/protocol.md section 14): what
the participant thread does on a network whose genesis asks for it, in place of
training one plain update per round.

On the node's tip, for the open round r and its phase:

* ``setup``: if we are in the roster R_r and never signed a setup for r, a fresh
  ``sa-setup`` (:meth:`SecAggClient.setup`); then we train from G(r-1) while the
  others set up (node-level DP or DP-SGD as configured: the delta is what gets
  clipped and quantised), so the input phase waits for no training;
* ``input``: if our setup is the one on chain and we still hold its secrets, the
  masked delta (:meth:`SecAggClient.input`);
* ``unmask``: our shares and seeds (:meth:`SecAggClient.unmask`), also after a
  restart that lost the round's secrets (then only the shares sealed to us,
  opened with our roster key).

Every tx is written to the journal (:mod:`learningchain.node.secagg_journal`,
reveals included) and fsynced before it is submitted, and none is sent twice
for one round and type, also across restarts.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from learningchain.core import errors
from learningchain.core.crypto import PrivateKey
from learningchain.core.errors import ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.secagg_round import view_of
from learningchain.ledger.secagg_tx import INPUT, SETUP, UNMASK, SecAggTx
from learningchain.ledger.txs import is_secagg
from learningchain.learning.ddp import NoiseShare
from learningchain.node.secagg_client import SecAggClient, dp_plan
from learningchain.node.secagg_journal import SecAggJournal


def now_ms() -> int:
    return int(time.time() * 1000)


class SaLearner:
    """A node's member of secure aggregation: its client (the round secrets, in
    memory only), its journal (on disk) and the delta trained for the open round."""

    def __init__(self, key: PrivateKey, config: NetworkConfig, data_dir, participant: Any = None,
                 model: Any = None):
        plan = dp_plan(participant.role, config, model) if participant is not None and model is not None else None
        if plan is not None:  # distributed DP: our Skellam share of the sum's noise, from OS entropy
            participant.accountant.noise_multiplier = plan.noise_multiplier()
        self.client = SecAggClient(key, config, dp=NoiseShare(plan) if plan is not None else None)
        self.journal = SecAggJournal(data_dir)
        self.client.journal = self.journal.reveals  # the client records its reveals in the journal's dict
        self.me = key.public_hex
        self.delta: tuple[int, str, dict[str, np.ndarray]] | None = None  # (round, base digest, delta)
        self._said: set[tuple[int, str]] = set()

    def note(self, node: Any, r: int, what: str, line: str) -> None:
        """Log ``line`` once per round and topic."""
        if (r, what) not in self._said:
            self._said.add((r, what))
            node.log(line)


def sa_participate_once(node: Any) -> None:
    """One tick of the learner under secure aggregation (``node``: a LearnerNode with ``sa``)."""
    sa: SaLearner = node.sa
    with node.lock:
        state = node.chain.tip_state
        r, phase, digest, base = state.round, state.phase, state.model_digest, state.model
        view = view_of(state, node.config)
        on_chain = {t.kind for t in view.txs if t.sender == sa.me}
        pooled = {t.kind for t in node.ledger.mempool if is_secagg(t) and t.sender == sa.me and t.round == r}
    if sa.me not in view.index:
        sa.note(node, r, "roster", f"round {r}: not in the roster ({len(view.roster)} members); sitting out")
        return
    if phase == "setup":
        if SETUP in on_chain | pooled or sa.journal.was_sent(r, SETUP):
            _train(node, sa, r, base, digest)
            return
        if node.participant.budget_spent():
            sa.note(node, r, "budget", f"round {r}: not taking part, the privacy budget is spent")
            return
        tx = sa.client.setup(r, view.roster, digest, now_ms())
        sa.journal.record(r, SETUP, tx.id)
        node.log(f"round {r}: secure-aggregation setup {tx.id[:12]} ({len(view.roster)} members, "
                 f"t={node.config.secure_aggregation.threshold})")
        _submit(node, tx, r)
        _train(node, sa, r, base, digest)
    elif phase == "input":
        if INPUT in on_chain | pooled or sa.journal.was_sent(r, INPUT):
            return
        mine = view.setups.get(sa.me)
        if mine is None:
            sa.note(node, r, "no-setup", f"round {r}: no setup of ours on chain; no input this round")
            return
        if mine.id != sa.journal.was_sent(r, SETUP) or r not in sa.client.rounds:
            sa.note(node, r, "lost", f"round {r}: the secrets of our setup {mine.id[:12]} are lost (restart); "
                                     f"no input this round, unmask answers still go out")
            return
        delta = _train(node, sa, r, base, digest)
        tx = sa.client.input(delta, state, node.participant.published_samples, now_ms())
        if tx is None:
            sa.note(node, r, "no-input", f"round {r}: no input could be built (roster changed)")
            return
        sa.journal.record(r, INPUT, tx.id)
        complaints = len(tx.complaints)
        node.log(f"round {r}: masked input {tx.id[:12]}"
                 + (f" with {complaints} complaint(s)" if complaints else ""))
        _submit(node, tx, r)
    elif phase == "unmask":
        if UNMASK in on_chain | pooled or sa.journal.was_sent(r, UNMASK) or sa.me not in view.setups:
            return
        tx = sa.client.unmask(state, now_ms())  # records its reveals in sa.journal.reveals
        if tx is None:
            return
        sa.journal.record(r, UNMASK, tx.id)  # reveals on disk before the tx leaves (section 14.7)
        given = sum(s is not None for s in tx.self_shares) + sum(s is not None for s in tx.mask_shares)
        node.log(f"round {r}: unmask {tx.id[:12]} ({given} share(s), {len(tx.seeds)} seed slot(s))")
        _submit(node, tx, r)


def _train(node: Any, sa: SaLearner, r: int, base, digest: str) -> dict[str, np.ndarray]:
    """The delta for round r on base ``digest`` (trained once, then cached)."""
    if sa.delta is not None and sa.delta[:2] == (r, digest):
        return sa.delta[2]
    p = node.participant
    t0 = time.perf_counter()
    delta = p.make_delta(r, base)
    node.add_timing("train", time.perf_counter() - t0)
    node.count_work(r, sample_epochs=len(p.X) * p.spec.epochs)
    node.log(f"trained round {r} in {time.perf_counter() - t0:.2f} s (kept for the input phase)")
    sa.delta = (r, digest, delta)
    return delta


def _submit(node: Any, tx: SecAggTx, r: int) -> None:
    try:
        node.submit_tx(tx, own=True)
    except ValidationError as exc:  # counted and logged by intake
        if exc.code in (errors.SA_PHASE_CLOSED, errors.TX_LATE, errors.TX_ROUND_NOT_OPEN):
            node.log(f"round {r}: our {tx.kind} came too late ({exc.code})")
