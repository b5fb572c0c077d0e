"""Rounds under secure aggregation: the phase state machine (setup, input,
unmask) and the contextual checks of its txs (docs/protocol.md sections 14.4
and 14.5).

Pure functions over a round state (:class:`~learningchain.ledger.rounds.RoundState`,
duck-typed here: ``round``, ``phase``, ``phase_start``, ``pending``,
``selected``, ``model_digest``); :mod:`learningchain.ledger.rounds` dispatches
to them when genesis asks for secure aggregation. The sets that decide the sum
(``Sset``, ``D``, ``C``, ``X``) are functions of the round's txs on the branch:
:class:`SaView`. The aggregate and the commitment are in
:mod:`learningchain.ledger.secagg_close`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

from learningchain.core import ec, errors, shamir
from learningchain.core.encoding import canonical_json
from learningchain.core.errors import ValidationError
from learningchain.core.secagg_crypto import open_shares, share_key
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.secagg_tx import BINDING, INPUT, PHASES, SETUP, UNMASK, SecAggTx
from learningchain.ledger.stamp import stamp_ok


def roster(state: Any, config: NetworkConfig) -> tuple[str, ...]:
    """R_r: the sorted selected senders when a policy selects, else the sorted candidates."""
    return tuple(sorted(state.selected)) if state.selected is not None else config.candidates


def roster_digest(members: Sequence[str]) -> str:
    """A setup's ``roster``: SHA-256 of the canonical JSON of the sorted roster list."""
    return hashlib.sha256(canonical_json(sorted(members))).hexdigest()


def ids_digest(ids: Iterable[str]) -> str:
    """An input's ``setups`` / an unmask's ``inputs``: SHA-256 of the sorted tx ids joined by ","."""
    return hashlib.sha256(",".join(sorted(ids)).encode()).hexdigest()


@dataclass(frozen=True)
class SaView:
    """One round's secure-aggregation txs on a branch and the sets they fix."""
    round: int
    roster: tuple[str, ...]
    txs: tuple[SecAggTx, ...]
    input_closed: bool     # whether D, C, X are fixed (the input phase is over)

    @cached_property
    def index(self) -> dict[str, int]:
        """i(u) = 1 + u's position in R_r (the Shamir x-coordinate)."""
        return {k: i + 1 for i, k in enumerate(self.roster)}

    def _of(self, kind: str) -> dict[str, SecAggTx]:
        return {t.sender: t for t in self.txs if t.kind == kind}

    @cached_property
    def setups(self) -> dict[str, SecAggTx]:
        return self._of(SETUP)

    @cached_property
    def inputs(self) -> dict[str, SecAggTx]:
        return self._of(INPUT)

    @cached_property
    def unmasks(self) -> dict[str, SecAggTx]:
        return self._of(UNMASK)

    @cached_property
    def sset(self) -> tuple[str, ...]:
        return tuple(sorted(self.setups))

    @cached_property
    def disqualified(self) -> tuple[str, ...]:
        """D: setup senders with a valid complaint against them (every complaint on chain is valid)."""
        return tuple(sorted({c[0] for t in self.inputs.values() for c in t.complaints}))

    @cached_property
    def counted(self) -> tuple[str, ...]:
        """C: setup senders not in D with an input."""
        d = set(self.disqualified)
        return tuple(s for s in sorted(self.inputs) if s not in d)

    @cached_property
    def uncounted(self) -> tuple[str, ...]:
        """X = Sset \\ C (dropped or disqualified)."""
        c = set(self.counted)
        return tuple(s for s in self.sset if s not in c)

    @cached_property
    def dropped(self) -> tuple[str, ...]:
        """X \\ D."""
        d = set(self.disqualified)
        return tuple(s for s in self.uncounted if s not in d)

    @cached_property
    def roster_digest(self) -> str:
        return roster_digest(self.roster)

    @cached_property
    def setups_digest(self) -> str:
        """What an sa-input's ``setups`` must be: the digest of the round's setup tx ids."""
        return ids_digest(t.id for t in self.setups.values())

    @cached_property
    def inputs_digest(self) -> str:
        """What an sa-unmask's ``inputs`` must be: the digest of the round's input tx ids."""
        return ids_digest(t.id for t in self.inputs.values())

    def binding(self, kind: str) -> str:
        """The context a ``kind`` tx must name (section 14.3): roster, setups or inputs."""
        return {SETUP: self.roster_digest, INPUT: self.setups_digest, UNMASK: self.inputs_digest}[kind]

    def fingerprint(self, kind: str) -> str:
        """What the checks of a ``kind`` tx depend on: the roster and the round's setups
        (an input's complaints), or its roster, setups and inputs (an unmask's shares
        and seeds). A check made under one selected set is never reused under another."""
        kinds = (SETUP,) if kind == INPUT else (SETUP, INPUT)
        ids = sorted(t.id for t in self.txs if t.kind in kinds)
        return hashlib.sha256((self.roster_digest + ";" + ",".join(ids)).encode()).hexdigest()

    def computable(self, t: int) -> bool:
        """Whether the unmask txs hold what the sum needs (section 14.5)."""
        masks = self.unmasks.values()
        pos = {k: j for j, k in enumerate(self.counted)}
        for v in self.counted:
            if sum(u.self_shares[pos[v]] is not None for u in masks) < t:
                return False
        for j, _ in enumerate(self.dropped):
            if sum(u.mask_shares[j] is not None for u in masks) < t:
                return False
        for j, _ in enumerate(self.disqualified):
            for v in self.counted:
                u = self.unmasks.get(v)
                if u is None or u.seeds[j] is None:
                    return False
        return True


def view_of(state: Any, config: NetworkConfig, extra: Sequence[Any] = ()) -> SaView:
    """The view of ``state``'s round (plus ``extra`` txs of a block), cached on the state."""
    if not extra:
        cached = state.__dict__.get("_sa_view")
        if cached is not None:
            return cached
    txs = tuple(t for t in (*state.pending, *extra) if isinstance(t, SecAggTx))
    view = SaView(state.round, roster(state, config), txs, state.phase == "unmask")
    if not extra:
        state.__dict__["_sa_view"] = view
    return view


# --- phases ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """What a block does to the round: the phase after it and whether it ends the round."""
    phase: str
    ends_round: bool = False
    failed: str | None = None     # why the round failed (G(r) = G(r-1)), if it did
    view: SaView | None = None


def advance(state: Any, config: NetworkConfig, height: int, txs: Sequence[Any], quorum: int) -> Step:
    """The phase close rules (section 14.5) for the block at ``height`` adding ``txs``."""
    p = config.secure_aggregation
    assert p is not None
    t, timed_out = p.threshold, height - state.phase_start >= p.phase_timeout
    view = view_of(state, config, txs)
    if state.phase == "setup":
        if len(view.setups) < quorum and not timed_out:
            return Step("setup")
        if len(view.setups) < t:
            return Step("setup", True, f"{len(view.setups)} setups, fewer than the threshold t={t}", view)
        return Step("input")
    if state.phase == "input":
        if not set(view.sset) <= set(view.inputs) and not timed_out:
            return Step("input")
        closed = SaView(view.round, view.roster, view.txs, True)
        if not closed.counted:
            return Step("input", True, "no input counted", closed)
        if len(closed.sset) - len(closed.disqualified) < t:
            return Step("input", True, f"{len(closed.sset) - len(closed.disqualified)} setups not disqualified, "
                                       f"fewer than the threshold t={t}", closed)
        return Step("unmask")
    if view.computable(t):
        return Step("unmask", True, None, view)
    if timed_out:
        return Step("unmask", True, f"the sum was not computable at the unmask timeout (height {height})", view)
    return Step("unmask")


# --- contextual checks ------------------------------------------------------------------
def check_sa_tx(tx: Any, state: Any, config: NetworkConfig, d: int, verified: Any,
                taken: Iterable[Any] = (), verify_signatures: bool = True) -> None:
    """The checks after tx-unknown-sender (section 14.5), in order. ``taken``: the
    (sender, type) pairs earlier in the same block. ``verified``: the chain's
    VerifiedCache (signatures, and the expensive proofs once per tx and context)."""
    if not isinstance(tx, SecAggTx):
        raise ValidationError(errors.SA_PLAIN_TX, f"a plain {tx.kind} tx is refused: this network runs "
                                                  f"secure aggregation (sa-setup, sa-input, sa-unmask)")
    p = config.secure_aggregation
    assert p is not None
    view = view_of(state, config)
    if tx.sender not in view.index:
        raise ValidationError(errors.SA_NOT_IN_ROSTER,
                              f"sender {tx.sender[:16]}... is not in the roster of round {state.round}")
    mine, now = PHASES.index(tx.phase), PHASES.index(state.phase)
    if mine < now:
        raise ValidationError(errors.SA_PHASE_CLOSED, f"the {tx.phase} phase of round {state.round} is closed: "
                                                      f"its {state.phase} phase opened at height {state.phase_start}")
    if mine > now:
        raise ValidationError(errors.SA_PHASE_NOT_OPEN, f"the {tx.phase} phase of round {state.round} is not open: "
                                                        f"its {state.phase} phase is")
    if tx.sender in view._of(tx.kind) or (tx.sender, tx.kind) in set(taken):
        raise ValidationError(errors.TX_DUPLICATE_SENDER,
                              f"sender {tx.sender[:16]}... already has an {tx.kind} in round {state.round}")
    if tx.kind != SETUP and tx.sender not in view.setups:
        raise ValidationError(errors.SA_NO_SETUP, f"sender {tx.sender[:16]}... has no setup in round {state.round}")
    field = BINDING[tx.kind]
    if tx.fields.get(field) != view.binding(tx.kind):
        what = {SETUP: "sealed for another roster", INPUT: "masked for another setup set",
                UNMASK: "revealing for another input set"}[tx.kind]
        raise ValidationError(errors.SA_WRONG_CONTEXT, f"{tx.kind} {field} does not match round {state.round}: "
                                                       f"{what}")
    if not stamp_ok(tx.id_bytes, config.stamp_bits):
        raise ValidationError(errors.TX_INSUFFICIENT_STAMP,
                              f"tx id {tx.id[:16]}... does not start with the {config.stamp_bits} zero bits "
                              f"this network's genesis asks of every tx (stamp_bits)")
    need_sig = verify_signatures and (verified is None or tx not in verified)
    tx.check(p.threshold, d, config.max_tx_bytes, verify_signature=need_sig)
    if need_sig and verified is not None:
        verified.add(tx)
    if tx.kind == SETUP:
        if len(tx.sealed) != len(view.roster) - 1:
            raise ValidationError(errors.SA_MALFORMED, f"shares must hold N_r - 1 = {len(view.roster) - 1} "
                                                       f"ciphertexts, got {len(tx.sealed)}")
        return
    key = ("sa", tx.id, tx.signature, view.fingerprint(tx.kind))
    if verified is not None and verified.seen(key):
        return
    if tx.kind == INPUT:
        _check_complaints(tx, view)
    else:
        _check_unmask(tx, view)
    if verified is not None:
        verified.note(key)


def _sender_point(key: str) -> ec.Point:
    return ec.parse_point(key)


def _check_complaints(tx: SecAggTx, view: SaView) -> None:
    me = _sender_point(tx.sender)
    i = view.index[tx.sender]
    for against, k_point, proof in tx.complaints:
        dealer = view.setups.get(against)
        if dealer is None:
            raise ValidationError(errors.SA_NO_SETUP, f"complaint against {against[:16]}..., "
                                                      f"which has no setup in round {view.round}")
        if not ec.dleq_verify(me, dealer.enc_key, k_point, proof):
            raise ValidationError(errors.SA_BAD_PROOF, f"complaint against {against[:16]}...: the DLEQ proof fails")
        others = [k for k in view.roster if k != against]
        sealed = dealer.sealed[others.index(tx.sender)]
        skey = share_key(ec.point_bytes(k_point)[1:], view.round, bytes.fromhex(against), bytes.fromhex(tx.sender))
        opened = open_shares(skey, sealed)
        if opened is not None and shamir.verify_share(opened[0], i, dealer.self_commitments) \
                and shamir.verify_share(opened[1], i, dealer.mask_commitments):
            raise ValidationError(errors.SA_FALSE_COMPLAINT, f"complaint against {against[:16]}...: its shares "
                                                             f"decrypt and pass Feldman's check")


def _check_unmask(tx: SecAggTx, view: SaView) -> None:
    c, x_d, d = view.counted, view.dropped, view.disqualified
    if (len(tx.self_shares), len(tx.mask_shares), len(tx.seeds)) != (len(c), len(x_d), len(d)):
        raise ValidationError(errors.SA_MALFORMED, f"self_shares, mask_shares, seeds must list |C|={len(c)}, "
                                                   f"|X\\D|={len(x_d)}, |D|={len(d)} entries")
    if tx.sender not in c and any(s is not None for s in tx.seeds):
        raise ValidationError(errors.SA_MALFORMED, "seeds come only from a counted member (in C)")
    i = view.index[tx.sender]
    for v, share in zip(c, tx.self_shares):
        if share is not None and not shamir.verify_share(share, i, view.setups[v].self_commitments):
            raise ValidationError(errors.SA_BAD_SHARE, f"self share for {v[:16]}")
    for u, share in zip(x_d, tx.mask_shares):
        if share is not None and not shamir.verify_share(share, i, view.setups[u].mask_commitments):
            raise ValidationError(errors.SA_BAD_SHARE, f"mask share for {u[:16]}")
    mine = view.setups[tx.sender].mask_key
    for u, seed in zip(d, tx.seeds):
        if seed is not None and not ec.dleq_verify(mine, view.setups[u].mask_key, seed[0], seed[1]):
            raise ValidationError(errors.SA_BAD_SEED, f"seed with {u[:16]}: the DLEQ proof fails")
