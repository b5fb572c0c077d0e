"""Round rules: which updates a block may carry and how a round closes.

A round ``r`` is open from the block that closed ``r-1`` until a block closes
it. Every update of round ``r`` must be trained from ``G(r-1)`` (its ``base``
is that model's digest). The block that brings the number of updates of the
round to the quorum, or that is ``round_timeout`` blocks past the round's start,
must close it by carrying the *commitment*: the result of the genesis
aggregation rule over the round's updates, which every validator recomputes
bit for bit (docs/protocol.md, "Rounds").

Pure functions over :class:`RoundState`; :mod:`learningchain.chain` keeps one
state per block so that each branch is judged on its own history.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from learningchain import errors
from learningchain.aggregation import AggregationError, Update, aggregate
from learningchain.encoding import canonical_json, weights_digest
from learningchain.errors import ValidationError
from learningchain.genesis import NetworkConfig
from learningchain.tx import UpdateTx

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

    @cached_property
    def pending_ids(self) -> frozenset[str]:
        return frozenset(t.id for t in self.pending)

    @cached_property
    def pending_senders(self) -> frozenset[str]:
        return frozenset(t.sender for t in self.pending)


def initial_state(config: NetworkConfig, model: "OrderedDict[str, np.ndarray]") -> RoundState:
    return RoundState(round=1, round_start=0, model=model, model_digest=weights_digest(model))


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

    def __len__(self) -> int:
        return len(self._items)


def check_tx(tx: UpdateTx, state: RoundState, config: NetworkConfig,
             expected_shapes: Mapping[str, tuple[str, tuple[int, ...]]],
             verified: VerifiedCache | None, taken_senders: Iterable[str] = (),
             verify_signatures: bool = True) -> None:
    """Contextual validity of ``tx`` for the open round of ``state``; raises the
    tx-level ValidationError (TX_*). ``taken_senders`` are senders already
    included earlier in the same block."""
    if tx.round < state.round:
        raise ValidationError(errors.TX_LATE, f"round {tx.round} is closed; round {state.round} is open")
    if tx.round > state.round:
        raise ValidationError(errors.TX_ROUND_NOT_OPEN,
                              f"round {tx.round} is not open yet; round {state.round} is open")
    if tx.base != state.model_digest:
        raise ValidationError(errors.TX_WRONG_BASE,
                              f"base {tx.base[:16]}... is not G({state.round - 1}) = {state.model_digest[:16]}...")
    if config.allow_list is not None and tx.sender not in config.allow_list:
        raise ValidationError(errors.TX_UNKNOWN_SENDER, f"sender {tx.sender[:16]}... is not on the allow list")
    if tx.sender in state.pending_senders or tx.sender in taken_senders:
        raise ValidationError(errors.TX_DUPLICATE_SENDER,
                              f"sender {tx.sender[:16]}... already has an update in round {state.round}")
    need_sig = verify_signatures and (verified is None or tx not in verified)
    tx.check(expected_shapes, config.max_tx_bytes, verify_signature=need_sig)
    if need_sig and verified is not None:
        verified.add(tx)


def must_close(state: RoundState, config: NetworkConfig, height: int, n_new: int) -> bool:
    """Whether the block at ``height`` adding ``n_new`` updates must close the round."""
    return (len(state.pending) + n_new >= config.quorum
            or height - state.round_start >= config.round_timeout)


@dataclass(frozen=True)
class RoundClose:
    commitment: dict
    model: "OrderedDict[str, np.ndarray]"  # G(r)
    model_digest: str


def close_round(state: RoundState, config: NetworkConfig, updates: Sequence[UpdateTx],
                miner: str) -> RoundClose:
    """Aggregate the round's updates into G(r) and the commitment that names it.
    If the rule cannot run (too few updates, or none after a timeout) the model
    is carried over unchanged and every update is rejected with the error text."""
    ids = sorted(t.id for t in updates)
    try:
        result = aggregate(config.rule,
                           [Update(t.id, t.sender, t.decoded_weights, t.num_samples) for t in updates],
                           config.params, reference_sender=miner)
        model, accepted, rejected = result.weights, sorted(result.accepted), dict(result.rejected)
        digest = weights_digest(model)
    except AggregationError as exc:
        model, digest, accepted = state.model, state.model_digest, []
        rejected = {i: str(exc) for i in ids}
    commitment = {"round": state.round, "rule": config.rule, "params": dict(config.params),
                  "updates": ids, "accepted": accepted,
                  "rejected": {i: rejected[i] for i in sorted(rejected)}, "model_digest": digest}
    return RoundClose(commitment=commitment, model=model, model_digest=digest)


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


def next_state(state: RoundState, config: NetworkConfig, height: int, txs: Sequence[UpdateTx],
               commitment: dict | None, miner: str) -> RoundState:
    """The state after a block whose txs were already checked: enforces the
    closing rule and returns the new state."""
    if not must_close(state, config, height, len(txs)):
        if commitment is not None:
            raise ValidationError(errors.BLOCK_UNEXPECTED_COMMITMENT,
                                  f"round {state.round} is not closing at height {height}")
        return RoundState(state.round, state.round_start, state.model, state.model_digest,
                          state.pending + tuple(txs))
    if commitment is None:  # refuse before paying for the aggregation
        raise ValidationError(errors.BLOCK_MISSING_COMMITMENT,
                              f"this block must close round {state.round} but carries no commitment")
    closed = close_round(state, config, state.pending + tuple(txs), miner)
    check_commitment(commitment, closed.commitment)
    return RoundState(state.round + 1, height, closed.model, closed.model_digest, ())
