"""Round rules: which updates a block may carry and how a round closes.

A round ``r`` is open from the block that closed ``r-1`` until a block closes
it. Every update of round ``r`` must be trained from ``G(r-1)`` (its ``base``
is that model's digest). The block that brings the number of updates of the
round to the quorum, or that is ``round_timeout`` blocks past the round's start,
must close it by carrying the *commitment*: the result of the genesis
aggregation rule over the round's updates, which every validator recomputes
bit for bit (docs/protocol.md, "Rounds").

Pure functions over :class:`RoundState`; :mod:`learningchain.ledger.block_index` keeps one
state per block so that each branch is judged on its own history.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from learningchain.core import errors
from learningchain.learning import reputation, selection
from learningchain.learning.aggregation import AggregationError, Update, aggregate
from learningchain.core.encoding import canonical_json, encode_weights, weights_digest
from learningchain.core.errors import ValidationError
from learningchain.ledger import secagg_close, secagg_round
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.stamp import stamp_ok
from learningchain.ledger.tx import UpdateTx

Weights = "OrderedDict[str, np.ndarray]"


@dataclass(frozen=True)
class RoundState:
    """The round state *after* a block: what the next block's txs must target."""
    round: int                    # the open round
    round_start: int              # height of the block that opened it (0 for round 1)
    # G(round-1): shared by reference across entries, never mutated; equality goes by digest
    model: "OrderedDict[str, np.ndarray]" = field(compare=False, repr=False)
    model_digest: str             # weights_digest(model)
    pending: tuple[UpdateTx, ...] = ()  # updates of this round included so far on the branch
    # senders allowed in this round (None: everyone allowed), chosen at the previous close
    selected: frozenset[str] | None = None
    # sender -> reputation.Record up to the previous close (only kept when a policy selects)
    records: Mapping = field(default_factory=dict, compare=False, repr=False)
    # secure aggregation (docs/protocol.md section 14): "setup" | "input" | "unmask", and the
    # height of the block that opened the phase; None / 0 on a plain network
    phase: str | None = None
    phase_start: int = 0

    def light(self) -> "RoundState":
        """This state without G(r-1) and the round's pending txs: what the chain keeps
        for a block deep below the tip (issue 10 item 12). The model is shared by
        every block of a round, so dropping it here frees it once the round's last
        block is retired; :class:`~learningchain.ledger.block_index.BlockIndex` rebuilds the full
        state from the store when a fork or a query needs it."""
        return RoundState(self.round, self.round_start, None, self.model_digest, (),  # type: ignore[arg-type]
                          self.selected, self.records, self.phase, self.phase_start)

    @cached_property
    def pending_ids(self) -> frozenset[str]:
        return frozenset(t.id for t in self.pending)

    @cached_property
    def pending_senders(self) -> frozenset[str]:
        return frozenset(t.sender for t in self.pending)


def initial_state(config: NetworkConfig, model: "OrderedDict[str, np.ndarray]",
                  genesis_hash: str = "00" * 32) -> RoundState:
    """The state after genesis; round 1's selection is seeded by the genesis hash."""
    chosen = choose_next(config, {}, model, 1, genesis_hash)
    return RoundState(round=1, round_start=0, model=model, model_digest=weights_digest(model),
                      selected=chosen, records=selection.mark_selected({}, chosen, 1),
                      phase="setup" if config.secure_aggregation is not None else None)


def _sizes(model: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """(bytes of one uncompressed update tx's weights, bytes to download the model):
    the planning sizes of energy-aware selection (base64 of float32 = both)."""
    n = sum(len(str(a["data"])) + 64 for a in encode_weights(model).values())
    return n, n


def choose_next(config: NetworkConfig, records: Mapping, model: Mapping[str, np.ndarray], next_round: int,
                parent_hash: str) -> frozenset[str] | None:
    """The senders selected for ``next_round`` (selection.py), None under policy "all"."""
    policy, params = config.selection_policy
    if policy == "all":
        return None
    upd, mdl = _sizes(model)
    return selection.select(policy, params, config.candidates, records, config.profiles, next_round,
                            selection.selection_seed(parent_hash, next_round),
                            epochs=config.model_spec.epochs, update_bytes=upd, model_bytes=mdl)


def quorum_of(state: RoundState, config: NetworkConfig) -> int:
    """Updates (and skips) that close the round: the genesis quorum, lowered to
    the number of selected senders when a policy selects fewer."""
    if state.selected is None:
        return config.quorum
    return max(1, min(config.quorum, len(state.selected)))


class VerifiedCache:
    """Bounded LRU of (tx id, signature) pairs whose signature verified, shared by
    the chain and the mempool so a signature is checked once. Keyed on the
    signature too: a tx id does not cover the signature, so the same body with a
    forged signature must not ride on an earlier successful check."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __contains__(self, tx: UpdateTx) -> bool:
        key = (tx.id, tx.signature)
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def add(self, tx: UpdateTx) -> None:
        self._items[(tx.id, tx.signature)] = None
        self._items.move_to_end((tx.id, tx.signature))
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def seen(self, key: tuple) -> bool:
        """Whether an expensive check keyed by ``key`` passed before (secure
        aggregation's proofs and Feldman checks: tx id, signature and the round
        context they were checked in)."""
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def note(self, key: tuple) -> None:
        self._items[key] = None  # type: ignore[index]
        self._items.move_to_end(key)  # type: ignore[arg-type]
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def check_tx(tx: UpdateTx, state: RoundState, config: NetworkConfig,
             expected_shapes: Mapping[str, tuple[str, tuple[int, ...]]],
             verified: VerifiedCache | None, taken_senders: Iterable[str] = (),
             verify_signatures: bool = True, decoded: dict | None = None) -> None:
    """Contextual validity of ``tx`` for the open round of ``state``; raises the
    tx-level ValidationError (TX_*). ``taken_senders`` are senders already
    included earlier in the same block (and, for secure aggregation, their
    (sender, type) pairs: :func:`taken_key`). ``decoded``: tx id -> the float32
    weights decoded on the way (for :func:`close_round`)."""
    if tx.round < state.round:
        raise ValidationError(errors.TX_LATE, f"round {tx.round} is closed; round {state.round} is open")
    if tx.round > state.round:
        raise ValidationError(errors.TX_ROUND_NOT_OPEN,
                              f"round {tx.round} is not open yet; round {state.round} is open")
    if tx.base != state.model_digest:
        raise ValidationError(errors.TX_WRONG_BASE,
                              f"base {tx.base[:16]}... is not G({state.round - 1}) = {state.model_digest[:16]}...")
    allowed = config.allowed
    if allowed is not None and tx.sender not in allowed:
        raise ValidationError(errors.TX_UNKNOWN_SENDER, f"sender {tx.sender[:16]}... is not on the allow list")
    if config.secure_aggregation is not None:  # section 14.5: sa-plain-tx, the roster, the phases
        d = sum(math.prod(shape) for _, shape in expected_shapes.values())
        secagg_round.check_sa_tx(tx, state, config, d, verified, taken_senders, verify_signatures)
        return
    if state.selected is not None and tx.sender not in state.selected:
        raise ValidationError(errors.TX_NOT_SELECTED,
                              f"sender {tx.sender[:16]}... was not selected for round {state.round}")
    if tx.sender in state.pending_senders or tx.sender in taken_senders:
        raise ValidationError(errors.TX_DUPLICATE_SENDER,
                              f"sender {tx.sender[:16]}... already has an update in round {state.round}")
    if not stamp_ok(tx.id_bytes, config.stamp_bits):  # one hash, before any key or signature work
        raise ValidationError(errors.TX_INSUFFICIENT_STAMP,
                              f"tx id {tx.id[:16]}... does not start with the {config.stamp_bits} zero bits "
                              f"this network's genesis asks of every tx (stamp_bits)")
    need_sig = verify_signatures and (verified is None or tx not in verified)
    tx.check(expected_shapes, config.max_tx_bytes, verify_signature=need_sig, decoded=decoded)
    if tx.compression is not None:  # decoded against G(r-1): base + delta may overflow
        full = tx.full_weights(state.model)
        if not all(np.isfinite(a).all() for a in full.values()):
            raise ValidationError(errors.TX_NON_FINITE, "base + decoded delta holds infinite values")
        if decoded is not None:
            decoded[tx.id] = full
    if need_sig and verified is not None:
        verified.add(tx)


def taken_key(tx) -> tuple[str, str]:
    """What a tx takes in its block besides its sender: one tx per (sender, type)."""
    return (tx.sender, tx.kind)


def must_close(state: RoundState, config: NetworkConfig, height: int, txs: Sequence[UpdateTx]) -> bool:
    """Whether the block at ``height`` adding ``txs`` must close the round: at the
    quorum, or at the timeout. Skips alone never close a round: they count toward
    the quorum only once the round holds an update, and only in a permissioned
    network (in an open one a skip is the cheapest tx to stamp, so a crowd of
    stamped skips would close rounds before the honest updates arrive);
    docs/protocol.md section 7. Under secure aggregation: whether the block ends
    the round (section 14.5)."""
    if config.secure_aggregation is not None:
        return secagg_round.advance(state, config, height, txs, quorum_of(state, config)).ends_round
    updates = sum(not t.is_skip for t in state.pending) + sum(not t.is_skip for t in txs)
    skips = len(state.pending) + len(txs) - updates
    counted = updates + (skips if config.allowed is not None else 0)
    return ((updates >= 1 and counted >= quorum_of(state, config))
            or height - state.round_start >= config.round_timeout)


def counted_samples(tx: UpdateTx, config: NetworkConfig) -> int:
    """The sample count the rule sees: the claim, capped at genesis ``max_samples``."""
    return tx.num_samples if config.max_samples is None else min(tx.num_samples, config.max_samples)


@dataclass(frozen=True)
class RoundClose:
    commitment: dict
    model: "OrderedDict[str, np.ndarray]"  # G(r)
    model_digest: str
    selected: frozenset[str] | None = None   # senders selected for round r+1
    records: Mapping = field(default_factory=dict)


def close_round(state: RoundState, config: NetworkConfig, txs: Sequence[UpdateTx],
                miner: str, parent_hash: str = "00" * 32, decoded: Mapping | None = None) -> RoundClose:
    """Aggregate the round's updates into G(r) and the commitment that names it.
    If the rule cannot run (too few updates, or none after a timeout) the model
    is carried over unchanged and every update is rejected with the error text.
    Skips are listed (``skipped``, never in ``updates``) but not aggregated.
    ``miner`` (the unsigned ``header.miner``) no longer enters G(r): l-nearest
    takes the median of the updates as its reference. Under a selection policy
    the commitment also names ``selected_next``, chosen from the reputation
    records updated with this round (seeded by ``parent_hash``). ``decoded``: tx
    id -> full weights already decoded by :func:`check_tx` (the rest are decoded here)."""
    updates = [t for t in txs if not t.is_skip]
    skips = sorted(t.id for t in txs if t.is_skip)
    ids = sorted(t.id for t in updates)
    decoded = decoded or {}
    full = [(t, decoded[t.id] if t.id in decoded else t.full_weights(state.model)) for t in updates]
    try:
        result = aggregate(config.rule, [Update(t.id, t.sender, w, counted_samples(t, config)) for t, w in full],
                           config.params)
        model, accepted, rejected = result.weights, sorted(result.accepted), dict(result.rejected)
        digest = weights_digest(model)
    except AggregationError as exc:
        model, digest, accepted = state.model, state.model_digest, []
        rejected = {i: str(exc) for i in ids}
    commitment = {"round": state.round, "rule": config.rule, "params": dict(config.params),
                  "updates": ids, "accepted": accepted,
                  "rejected": {i: rejected[i] for i in sorted(rejected)}, "model_digest": digest}
    if skips:
        commitment["skipped"] = skips
    if config.selection_policy[0] == "all":
        return RoundClose(commitment=commitment, model=model, model_digest=digest)
    contribs = [reputation.Contribution(t.id, t.sender, w, t.num_samples) for t, w in full]
    records = reputation.update_records(state.records, contribs, [t.sender for t in txs if t.is_skip],
                                        model, accepted, rejected)
    upd, mdl = _sizes(state.model)
    records = selection.charge(records, [t.sender for t in txs], config.profiles,
                               epochs=config.model_spec.epochs, update_bytes=upd, model_bytes=mdl)
    chosen = choose_next(config, records, model, state.round + 1, parent_hash)
    commitment["selected_next"] = sorted(chosen)
    return RoundClose(commitment, model, digest, chosen, selection.mark_selected(records, chosen, state.round + 1))


def check_commitment(got: dict | None, expected: dict) -> None:
    """Dict equality of canonical forms; the error names the first differing field."""
    if got is None:
        raise ValidationError(errors.BLOCK_MISSING_COMMITMENT,
                              f"this block must close round {expected['round']} but carries no commitment")
    if canonical_json(got) == canonical_json(expected):
        return
    fields = sorted(set(got) | set(expected))
    diff = [f for f in fields if f not in got or f not in expected
            or canonical_json(got[f]) != canonical_json(expected[f])]
    raise ValidationError(errors.BLOCK_BAD_COMMITMENT,
                          f"commitment differs from the recomputed one in field(s): {', '.join(diff)}")


def close_sa_round(state: RoundState, config: NetworkConfig, step: secagg_round.Step,
                   parent_hash: str) -> RoundClose:
    """The end of a secure-aggregation round (docs/protocol.md 14.6): the commitment
    and G(r), and under a selection policy section 14.1's records and the next selection."""
    commitment, model, digest = secagg_close.close_commitment(step, state.round, config, state.model,
                                                              state.model_digest)
    if config.selection_policy[0] == "all":
        return RoundClose(commitment=commitment, model=model, model_digest=digest)
    assert step.view is not None
    records = secagg_close.update_records(state.records, step.view, step.failed is not None)
    upd, mdl = _sizes(state.model)
    records = selection.charge(records, list(step.view.sset), config.profiles,
                               epochs=config.model_spec.epochs, update_bytes=upd, model_bytes=mdl)
    chosen = choose_next(config, records, model, state.round + 1, parent_hash)
    commitment["selected_next"] = sorted(chosen)
    return RoundClose(commitment, model, digest, chosen, selection.mark_selected(records, chosen, state.round + 1))


def block_commitment(state: RoundState, config: NetworkConfig, height: int, txs: Sequence[UpdateTx],
                     miner: str, parent_hash: str) -> dict | None:
    """The commitment a block at ``height`` adding ``txs`` must carry (None if it does not close the round)."""
    if config.secure_aggregation is not None:
        step = secagg_round.advance(state, config, height, txs, quorum_of(state, config))
        return close_sa_round(state, config, step, parent_hash).commitment if step.ends_round else None
    if not must_close(state, config, height, txs):
        return None
    return close_round(state, config, state.pending + tuple(txs), miner, parent_hash).commitment


def _next_sa_state(state: RoundState, config: NetworkConfig, height: int, txs: Sequence[UpdateTx],
                   commitment: dict | None, parent_hash: str) -> RoundState:
    step = secagg_round.advance(state, config, height, txs, quorum_of(state, config))
    if not step.ends_round:  # blocks that close setup or input carry no commitment
        if commitment is not None:
            raise ValidationError(errors.BLOCK_UNEXPECTED_COMMITMENT,
                                  f"round {state.round} is not closing at height {height} "
                                  f"(its {step.phase} phase is open)")
        start = state.phase_start if step.phase == state.phase else height
        return replace(state, pending=state.pending + tuple(txs), phase=step.phase, phase_start=start)
    if commitment is None:
        raise ValidationError(errors.BLOCK_MISSING_COMMITMENT,
                              f"this block must close round {state.round} but carries no commitment")
    closed = close_sa_round(state, config, step, parent_hash)
    check_commitment(commitment, closed.commitment)
    return RoundState(state.round + 1, height, closed.model, closed.model_digest, (), closed.selected,
                      closed.records, "setup", height)


def next_state(state: RoundState, config: NetworkConfig, height: int, txs: Sequence[UpdateTx],
               commitment: dict | None, miner: str, parent_hash: str = "00" * 32,
               decoded: Mapping | None = None) -> RoundState:
    """The state after a block whose txs were already checked: enforces the
    closing rule and returns the new state. ``decoded``: as for :func:`close_round`."""
    if config.secure_aggregation is not None:
        return _next_sa_state(state, config, height, txs, commitment, parent_hash)
    if not must_close(state, config, height, txs):
        if commitment is not None:
            raise ValidationError(errors.BLOCK_UNEXPECTED_COMMITMENT,
                                  f"round {state.round} is not closing at height {height}")
        return RoundState(state.round, state.round_start, state.model, state.model_digest,
                          state.pending + tuple(txs), state.selected, state.records)
    if commitment is None:  # refuse before paying for the aggregation
        raise ValidationError(errors.BLOCK_MISSING_COMMITMENT,
                              f"this block must close round {state.round} but carries no commitment")
    closed = close_round(state, config, state.pending + tuple(txs), miner, parent_hash, decoded)
    check_commitment(commitment, closed.commitment)
    return RoundState(state.round + 1, height, closed.model, closed.model_digest, (),
                      closed.selected, closed.records)
