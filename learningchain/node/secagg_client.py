"""One roster member's side of secure aggregation (docs/protocol.md section 14):
its per-round secrets and the three txs it sends.

Pure over the round state and its secrets: no threads, no files, no clock.
The node (or the simulator) calls, for round r on its tip:

* :meth:`SecAggClient.setup` when round r opens (phase ``setup``): fresh
  secrets (mask key m, encryption key e, self-mask secret b), the Feldman
  commitments and the shares sealed to every other roster member;
* :meth:`SecAggClient.input` when the input phase opens: the masked,
  quantised delta y and the complaints against dealers whose shares for us
  are bad;
* :meth:`SecAggClient.unmask` when the unmask phase opens: the shares and
  seeds the sum needs, following the reveal rule (section 14.7): never both
  a self share and a mask share or seed of one member in one round. What was
  revealed is in :attr:`SecAggClient.journal`; the caller persists it (fsync
  before sending the tx) and gives it back on restart, so a reorg that would
  ask for the other kind is answered with nulls.

Secrets stay in memory (:attr:`rounds`); a member that loses them (restart
between setup and unmask) simply drops out of the round, which the protocol
tolerates up to n - t members.
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from learningchain.core import crypto, ec, shamir
from learningchain.core.secagg_crypto import open_shares, pair_seed, prg, seal_shares, self_seed, share_key
from learningchain.learning import ddp, secagg
from learningchain.learning.ddp import NoiseShare
from learningchain.ledger.genesis import NetworkConfig
from learningchain.ledger.secagg_round import SaView, roster_digest, view_of
from learningchain.ledger.secagg_tx import INPUT, SETUP, UNMASK, SecAggTx

SELF, MASK = "self", "mask"


@dataclass
class RoundSecrets:
    """What one member holds for one round: its polynomials f (self mask) and g
    (mask key), its encryption secret, and the shares others sealed to it."""
    round: int
    roster: tuple[str, ...]
    f: list[int]
    g: list[int]
    e: int
    received: dict[str, tuple[int, int]] = field(default_factory=dict)  # dealer -> (f_v(i), g_v(i))

    @property
    def b(self) -> int:
        return self.f[0]

    @property
    def m(self) -> int:
        return self.g[0]


def flatten(delta: Mapping[str, np.ndarray] | np.ndarray) -> np.ndarray:
    """A delta as one float64 vector: arrays in sorted name order, C order."""
    if isinstance(delta, Mapping):
        return np.concatenate([np.asarray(delta[k], dtype=np.float64).reshape(-1) for k in sorted(delta)])
    return np.asarray(delta, dtype=np.float64).reshape(-1)


def dp_plan(role: Any, config: NetworkConfig, model: Mapping[str, np.ndarray]) -> ddp.Plan | None:
    """Distributed DP (``role.mode == "distributed"``): the Skellam share rate of
    this network, calibrated from the role's target over its planned rounds with
    the genesis scale, threshold and the model's size; refused (one-line
    ConfigError) if the sum of every candidate's input could wrap. None otherwise.
    The member's client then takes ``dp=NoiseShare(plan)`` (OS entropy)."""
    if getattr(role, "mode", None) != "distributed":
        return None
    p = config.secure_aggregation
    if p is None:
        raise ValueError("distributed DP needs a network that runs secure aggregation")
    plan = ddp.calibrate(role.dp_epsilon, role.dp_delta, role.dp_rounds, role.dp_clip, p.scale,
                         int(flatten(model).size), p.threshold, p.clip_value)
    ddp.check_no_wrap(plan, len(config.candidates), p.clip_value)
    return plan


class SecAggClient:
    """One member (``key``) on one network (``config``). ``randbelow`` draws the
    secrets (``secrets.randbelow``; tests pass a seeded one). ``dp`` (distributed
    DP, learning/ddp.py): each input's delta is L2-clipped and carries this
    member's Skellam noise share, added before masking."""

    def __init__(self, key: crypto.PrivateKey, config: NetworkConfig,
                 randbelow: Callable[[int], int] = secrets.randbelow, dp: "NoiseShare | None" = None):
        if config.secure_aggregation is None:
            raise ValueError("this network does not run secure aggregation")
        self.key, self.config, self.params = key, config, config.secure_aggregation
        self.me = key.public_hex
        self.randbelow = randbelow
        self.dp = dp
        self.rounds: dict[int, RoundSecrets] = {}
        #: round -> member -> "self" | "mask": what this member revealed (the reveal rule)
        self.journal: dict[int, dict[str, str]] = {}

    # --- setup --------------------------------------------------------------------
    def setup(self, round: int, roster: tuple[str, ...] | list[str], base: str, timestamp: int = 0) -> SecAggTx:
        """The ``sa-setup`` of ``round`` (roster R_r, sorted; ``base`` = G(r-1)'s digest)."""
        roster = tuple(sorted(roster))
        t = self.params.threshold
        f = [shamir.random_scalar(self.randbelow) for _ in range(t)]
        g = [shamir.random_scalar(self.randbelow) for _ in range(t)]
        e = shamir.random_scalar(self.randbelow)
        sec = RoundSecrets(round, roster, f, g, e)
        self.rounds[round] = sec
        me_b = bytes.fromhex(self.me)
        sealed = []
        for i, w in enumerate(roster, start=1):
            if w == self.me:
                continue
            x = ec.point_bytes(ec.mul(ec.parse_point(w), e))[1:]
            key = share_key(x, round, me_b, bytes.fromhex(w))
            sealed.append(_b64(seal_shares(key, shamir.evaluate(f, i), shamir.evaluate(g, i))))
        fields = {"mask_key": ec.point_hex(ec.base_mul(g[0])), "enc_key": ec.point_hex(ec.base_mul(e)),
                  "proofs": {"mask": ec.pok_prove(g[0], round, me_b), "enc": ec.pok_prove(e, round, me_b)},
                  "roster": roster_digest(roster),
                  "commitments": {"self": [ec.point_hex(ec.base_mul(a)) for a in f],
                                  "mask": [ec.point_hex(ec.base_mul(a)) for a in g]},
                  "shares": sealed}
        return SecAggTx.create(self.key, SETUP, round, base, fields, timestamp)

    # --- input --------------------------------------------------------------------
    def input(self, delta: Mapping[str, np.ndarray] | np.ndarray, state: Any, num_samples: int,
              timestamp: int = 0, noise: np.ndarray | None = None) -> SecAggTx | None:
        """The ``sa-input`` for ``state`` (the tip's state, input phase open): y = the
        clipped, quantised ``delta`` (w - G(r-1)) masked, and the complaints against
        dealers whose shares for us fail. None if we hold no secrets of this round
        or have no setup on chain."""
        view = view_of(state, self.config)
        sec = self.rounds.get(state.round)
        if sec is None or self.me not in view.setups or sec.roster != view.roster:
            return None
        w = self.key.secret_scalar()
        complaints = []
        for v in view.sset:
            if v == self.me:
                continue
            opened, k_point = self._open_from(view, v)
            if opened is not None:
                sec.received[v] = opened
            else:
                _, proof = ec.dleq_prove(w, view.setups[v].enc_key)
                complaints.append({"against": v, "point": ec.point_hex(k_point), "proof": proof})
        flat = flatten(delta)
        if self.dp is not None and noise is None:
            flat, noise = self.dp.prepare(flat, state.round)
        q = secagg.quantize(flat, self.params.clip_value, self.params.scale, noise)
        d = q.size
        pairs = {v: prg(self._pair_seed(view, sec, v), d) for v in view.sset if v != self.me}
        y = secagg.mask(q, prg(self_seed(sec.b), d), pairs, self.me)
        fields = {"input": SecAggTx.encode_input(y), "num_samples": int(num_samples), "complaints": complaints,
                  "setups": view.setups_digest}
        return SecAggTx.create(self.key, INPUT, state.round, state.model_digest, fields, timestamp)

    def _open_from(self, view: SaView, v: str) -> tuple[tuple[int, int] | None, ec.Point]:
        """(f_v(i), g_v(i)) that dealer ``v`` sealed to us, if they decrypt and pass
        Feldman's check (else None), and the ECDH point K = w·E_v. Needs only our
        roster key: a member that lost its round secrets can still open them."""
        dealer, i = view.setups[v], view.index[self.me]
        k_point = ec.mul(dealer.enc_key, self.key.secret_scalar())
        key = share_key(ec.point_bytes(k_point)[1:], view.round, bytes.fromhex(v), bytes.fromhex(self.me))
        others = [k for k in view.roster if k != v]
        opened = open_shares(key, dealer.sealed[others.index(self.me)])
        if (opened is not None and shamir.verify_share(opened[0], i, dealer.self_commitments)
                and shamir.verify_share(opened[1], i, dealer.mask_commitments)):
            return opened, k_point
        return None, k_point

    def _pair_seed(self, view: SaView, sec: RoundSecrets, v: str) -> bytes:
        return pair_seed(view.round, ec.point_bytes(ec.mul(view.setups[v].mask_key, sec.m)))

    # --- unmask -------------------------------------------------------------------
    def unmask(self, state: Any, timestamp: int = 0) -> SecAggTx | None:
        """The ``sa-unmask`` for ``state`` (unmask phase open): a self share of every
        counted member, a mask share of every dropped one, and (if we are counted)
        the pairwise seed point with every disqualified one; null wherever we hold
        nothing valid or the reveal rule forbids it. None without a setup of ours on
        chain. A member that lost its round secrets (a restart) still answers: the
        shares sealed to it are opened with its roster key; it cannot be counted
        (it sent no input), and its own shares and seeds are null."""
        view = view_of(state, self.config)
        if self.me not in view.setups:
            return None
        sec = self.rounds.get(state.round)
        i = view.index[self.me]
        said = self.journal.setdefault(state.round, {})
        if sec is not None and sec.roster == view.roster:
            own: tuple[int, int] | None = (shamir.evaluate(sec.f, i), shamir.evaluate(sec.g, i))
            received = sec.received
        else:  # no secrets of this round: only what the chain's setups sealed to us
            own, sec = None, None
            received = {v: got for v in view.sset if v != self.me
                        and (got := self._open_from(view, v)[0]) is not None}

        def share(member: str, kind: str) -> str | None:
            if said.get(member, kind) != kind:
                return None  # the reveal rule: the other kind of this member went out already
            got = own if member == self.me else received.get(member)
            if got is None:
                return None
            said[member] = kind
            return ec.scalar_hex(got[0] if kind == SELF else got[1])

        self_shares = [share(v, SELF) for v in view.counted]
        mask_shares = [share(u, MASK) for u in view.dropped]
        seeds: list[dict | None] = []
        for u in view.disqualified:
            if sec is None or self.me not in view.counted or said.get(u, MASK) != MASK:
                seeds.append(None)
                continue
            point, proof = ec.dleq_prove(sec.m, view.setups[u].mask_key)
            said[u] = MASK
            seeds.append({"point": ec.point_hex(point), "proof": proof})
        fields = {"self_shares": self_shares, "mask_shares": mask_shares, "seeds": seeds,
                  "inputs": view.inputs_digest}
        return SecAggTx.create(self.key, UNMASK, state.round, state.model_digest, fields, timestamp)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()
