"""A secure-aggregation network in one process for the tests and the bench: a
tiny model, N roster members played by honest :class:`SecAggClient`s with real
keys, and real (easy) blocks mined on a :class:`Chain`."""
from __future__ import annotations

import hashlib
import random
from collections import OrderedDict

import numpy as np

from learningchain.core import crypto
from learningchain.ledger.chain import Chain
from learningchain.ledger.genesis import make_genesis, with_participants
from learningchain.ledger.genesis_privacy import SecAggParams, default_params
from learningchain.learning import secagg
from learningchain.learning.models import ModelSpec
from learningchain.node.secagg_client import SecAggClient, flatten
from tests.helpers import TINY_SPEC, next_block, now, tiny_config

#: 650 parameters: enough coordinates to measure a correlation
WIDE_SPEC = ModelSpec("softmax", "classification", 64, 10, (), 0, 1, 8, 0.1)


def sa_keys(n: int) -> list[crypto.PrivateKey]:
    return [crypto.PrivateKey.from_secret(5000 + i) for i in range(n)]


class SaNet:
    def __init__(self, n: int = 10, threshold: int | None = None, quorum: int | None = None,
                 phase_timeout: int = 3, spec: ModelSpec = TINY_SPEC, policy: str | None = None,
                 k: int | None = None, seed: int = 1, max_tx_bytes: int = 60_000):
        self.keys = sa_keys(n)
        pubs = [key.public_hex for key in self.keys]
        base = tiny_config(model=spec.to_dict(), allow_list=tuple(pubs), quorum=quorum or n,
                           max_tx_bytes=max_tx_bytes, max_block_bytes=4_000_000)
        if policy is not None:
            base = with_participants(base, pubs, policy, k)
        p = default_params(n, 5, threshold=threshold, phase_timeout=phase_timeout)
        self.config = base.with_secure_aggregation(SecAggParams(p.threshold, p.clip, p.scale, p.phase_timeout))
        self.params = self.config.secure_aggregation
        self.genesis = make_genesis(self.config)
        self.chain = Chain(self.genesis)
        rng = random.Random(seed)
        self.clients = {key.public_hex: SecAggClient(key, self.config, lambda m: rng.randrange(m))
                        for key in self.keys}
        self.rng = np.random.default_rng(seed)

    # --- the chain ----------------------------------------------------------------------
    @property
    def state(self):
        return self.chain.tip_state

    def block(self, txs=()):
        """Build, mine and add a block on the tip; returns it."""
        b = next_block(self.chain, list(txs))
        self.chain.add_block(b, now(b))
        return b

    def members(self, which=None) -> list[str]:
        """Roster members (``which``: indices into the sorted roster, or keys)."""
        roster = list(self.config.candidates if self.state.selected is None else sorted(self.state.selected))
        if which is None:
            return roster
        return [roster[w] if isinstance(w, int) else w for w in which]

    # --- the participants' txs ------------------------------------------------------------
    def setups(self, who=None):
        s = self.state
        roster = self.members()
        return [self.clients[m].setup(s.round, roster, s.model_digest) for m in self.members(who)]

    def delta(self, member: str) -> "OrderedDict[str, np.ndarray]":
        model, _ = self.chain.model()
        r = np.random.default_rng(int(hashlib.sha256(f"{member}{self.state.round}".encode()).hexdigest()[:8], 16))
        return OrderedDict((k, r.normal(0, 0.2, a.shape)) for k, a in model.items())

    def inputs(self, who=None, deltas=None):
        deltas = deltas if deltas is not None else {}
        out = []
        for m in self.members(who):
            deltas.setdefault(m, self.delta(m))
            out.append(self.clients[m].input(deltas[m], self.state, 10 + len(out)))
        return out

    def unmasks(self, who=None):
        return [tx for m in self.members(who) if (tx := self.clients[m].unmask(self.state)) is not None]

    def expected_model(self, model, counted_deltas):
        """float32(G(r-1) + mean of the clipped quantised deltas), by plain int64 arithmetic."""
        qs = [secagg.quantize(flatten(d), self.params.clip_value, self.params.scale).astype(np.int64)
              for d in counted_deltas]
        total = np.sum([np.where(q >= 1 << 31, q - (1 << 32), q) for q in qs], axis=0)
        avg = total.astype(np.float64) / float(self.params.scale * len(qs))
        out, off = OrderedDict(), 0
        for name in sorted(model):
            a = model[name]
            out[name] = (a.astype(np.float64) + avg[off:off + a.size].reshape(a.shape)).astype(np.float32)
            off += a.size
        return out

    def full_round(self, drop_after_setup=(), drop_after_input=()):
        """setup (all), input (all but ``drop_after_setup``), unmask (all who input but
        ``drop_after_input``); returns (closing block, deltas of the inputs)."""
        self.block(self.setups())
        while self.state.phase == "setup":
            self.block()
        who_in = [m for m in self.members() if m not in set(self.members(drop_after_setup))]
        deltas: dict = {}
        self.block(self.inputs(who_in, deltas))
        while self.state.phase == "input":
            self.block()
        gone = set(self.members(drop_after_input))
        return self.block(self.unmasks([m for m in who_in if m not in gone])), deltas
