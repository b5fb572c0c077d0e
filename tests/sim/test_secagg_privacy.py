"""Secure aggregation in the simulator: what the chain reveals, and what G(r) is.

The observer below holds every tx of every block of a simulated SA run (read
back from the blocks' canonical bytes) and no secret. For each input on chain it
removes everything public: the self mask (its seed is rebuilt from the revealed
self shares) and the pairwise masks with the dropped members (their mask keys are
rebuilt from the revealed mask shares). What stays is still masked by the
pairwise masks between counted members, so it does not correlate with the true
quantised delta. The ablation builds the inputs without the pairwise masks: the
same observer then recovers every update exactly, so the test can fail. (The
self mask's ablation needs a disqualified dealer, whose pairwise seeds the chain
reveals: tests/ledger/test_secagg_round.py, which the simulator does not play.)
"""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from learningchain.core import ec, shamir
from learningchain.core.encoding import parse_json
from learningchain.core.errors import ConfigError
from learningchain.core.secagg_crypto import pair_seed, prg, self_seed
from learningchain.learning import secagg
from learningchain.ledger.block import Block
from learningchain.ledger.secagg_round import SaView
from learningchain.ledger.secagg_tx import SecAggTx
from learningchain.sim.config import SimConfig
from learningchain.sim.simulator import Simulation


def _run(monkeypatch=None, no_pairwise=False, **kw) -> Simulation:
    cfg = SimConfig(**{"nodes": 10, "rounds": 1, "model": "softmax", "secure_aggregation": True,
                       "full_nodes": 2, **kw})
    sim = Simulation(cfg)
    if no_pairwise:  # the ablation: each input carries its self mask only
        real = secagg.mask
        monkeypatch.setattr(secagg, "mask", lambda q, self_mask, pairs, me: real(q, self_mask, {}, me))
    sim.run(with_baselines=False)
    return sim


def _signed(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)
    return np.where(a >= 1 << 31, a - (1 << 32), a).astype(np.float64)


def _true_q(sim: Simulation) -> dict[str, np.ndarray]:
    p = sim.network.secure_aggregation
    return {k: _signed(secagg.quantize(d, p.clip_value, p.scale)) for k, d in sim.sa_deltas.items()}


def _rebuild(view: SaView, t: int, pick) -> int:
    shares = {}
    for w in sorted(view.unmasks):
        s = pick(view.unmasks[w])
        if s is not None and len(shares) < t:
            shares[view.index[w]] = s
    return shamir.reconstruct(shares)


def observe(sim: Simulation, r: int = 1) -> dict[str, list[np.ndarray]]:
    """For each input of round ``r`` on chain, what an observer with all chain data
    and no secret can compute: y, y − self mask, y − self mask − the masks with the
    dropped members (the best it can do from public data)."""
    chain = sim.ledgers[0].chain
    blocks = [Block.parse(parse_json(b.serialize())) for b in chain.main_chain(0, 10_000)]
    txs = tuple(t for b in blocks for t in b.txs if isinstance(t, SecAggTx) and t.round == r)
    view = SaView(r, sim.network.candidates, txs, True)
    t = sim.network.secure_aggregation.threshold
    m = {u: _rebuild(view, t, lambda tx, j=j: tx.mask_shares[j]) for j, u in enumerate(view.dropped)}
    out = {}
    for pos, v in enumerate(view.counted):
        y = view.inputs[v].input_array
        d = y.size
        b = _rebuild(view, t, lambda tx, pos=pos: tx.self_shares[pos])
        no_self = secagg.unmask(y, prg(self_seed(b), d), {}, v)
        pairs = {u: prg(pair_seed(r, ec.point_bytes(ec.mul(view.setups[v].mask_key, m[u]))), d) for u in m}
        out[v] = [_signed(y), _signed(no_self), _signed(secagg.unmask(no_self, np.zeros(d, np.uint32), pairs, v))]
    return out


def _best_corr(candidates, q) -> float:
    return max(abs(float(np.corrcoef(c, q)[0, 1])) for c in candidates)


def test_no_input_on_chain_decodes_to_its_update():
    sim = _run(sa_drop_after_setup=2, sa_drop_after_input=1)
    qs, seen = _true_q(sim), observe(sim)
    assert len(seen) == 8  # 10 - 2 dropped after setup (the one gone after input still counts)
    for v, candidates in seen.items():
        assert _best_corr(candidates, qs[v]) < 0.2  # d = 650: ~0 (|corr| ~ 1/sqrt(d) = 0.04)
        assert min(np.abs(c).mean() for c in candidates) > 100 * np.abs(qs[v]).mean()  # uniform over 2^32, not q


def test_the_ablation_without_pairwise_masks_leaks_and_the_test_catches_it(monkeypatch):
    sim = _run(monkeypatch, no_pairwise=True)
    qs, seen = _true_q(sim), observe(sim)
    assert len(seen) == 10
    for v, candidates in seen.items():
        assert np.array_equal(candidates[1], qs[v])  # y minus the public self mask: the exact update
        assert _best_corr(candidates, qs[v]) > 0.99  # what the test above would have seen


def expected_model(sim: Simulation, base, counted: list[str]):
    """float32(G(r-1) + mean of the counted members' clipped quantised deltas), in int64."""
    p = sim.network.secure_aggregation
    qs = [_signed(secagg.quantize(sim.sa_deltas[k], p.clip_value, p.scale)).astype(np.int64) for k in counted]
    total = np.sum(qs, axis=0)
    avg = total.astype(np.float64) / float(p.scale * len(counted))
    out, off = {}, 0
    for name in sorted(base):
        a = base[name]
        out[name] = (a.astype(np.float64) + avg[off:off + a.size].reshape(a.shape)).astype(np.float32)
        off += a.size
    return out, hashlib.sha256((total & 0xFFFFFFFF).astype("<u4").tobytes()).hexdigest()


@pytest.mark.parametrize("kw", [{"sa_drop_after_setup": 3},
                                {"sa_drop_after_setup": 1, "sa_drop_after_input": 2, "byzantine": 2,
                                 "attack": "sign-flip"}])
def test_G_r_is_G_r_minus_1_plus_the_mean_of_the_counted_quantised_deltas(kw):
    cfg = SimConfig(nodes=10, rounds=1, model="softmax", secure_aggregation=True, full_nodes=2, **kw)
    sim = Simulation(cfg)
    base = sim.ledgers[0].chain.tip_state.model
    entry = sim.run_round()
    commitment = sim.ledgers[0].chain.tip.commitment
    counted = commitment["secure_aggregation"]["counted"]
    assert len(counted) == 10 - kw["sa_drop_after_setup"]
    assert entry["secure_aggregation"]["counted"] == len(counted) and entry["secure_aggregation"]["failed"] is None
    assert set(counted) == set(sim.sa_deltas)  # exactly the members who sent an input
    want, sum_digest = expected_model(sim, base, counted)
    got = sim.ledgers[0].chain.tip_state.model
    assert all(np.array_equal(got[k], want[k]) for k in want)
    assert commitment["secure_aggregation"]["sum_digest"] == sum_digest
    sim.check_agreement()  # every full node holds that model


def test_results_record_the_phases_and_the_bytes_by_type():
    sim = _run(sa_drop_after_input=1)
    sa = sim.ledgers[0].chain.tip.commitment["secure_aggregation"]
    assert len(sa["counted"]) == 10 and sa["dropped"] == []
    entry = sim.run_round()["secure_aggregation"]
    assert list(entry["phase_blocks"]) == ["setup", "input", "unmask"]
    assert entry["counted"] == 10 and len(entry["dropped_after_input"]) == 1
    assert all(entry["bytes_per_participant"][k] > 0 for k in ("sa-setup", "sa-input", "sa-unmask"))


@pytest.mark.parametrize("kw, message", [
    ({"aggregator": "median"}, "cannot run under secure aggregation"),
    ({"sa_drop_after_setup": 4}, "fewer than the threshold t=7"),
    ({"sa_threshold": 3}, "must be in"),
    ({"secure_aggregation": False, "sa_drop_after_setup": 1}, "need secure_aggregation"),
])
def test_bad_combinations_are_one_line_errors(kw, message):
    with pytest.raises(ConfigError, match=message):
        SimConfig(**{"nodes": 10, "secure_aggregation": True, **kw})


@pytest.mark.parametrize("mode, extra", [("sample", {}), ("node", {"dp_clip": 1.0})])
def test_local_dp_modes_run_under_secure_aggregation(mode, extra):
    """Both parts together: DP-SGD (sample) or node-level noise on the delta, then
    clipped, quantised and masked; each member's epsilon is accounted per input."""
    from learningchain.sim.simulator import Simulation
    cfg = SimConfig(nodes=4, rounds=2, model="softmax", secure_aggregation=True, dp_mode=mode,
                    dp_epsilon=8.0, dp_noise="seeded", **extra)
    sim = Simulation(cfg)
    entry = sim.run_round()
    assert entry["dp_mode"] == mode and entry["secure_aggregation"]["counted"] == 4
    spent = [p.privacy_spent() for p in sim.participants]
    assert all(0 < eps <= 8.0 + 1e-6 for eps, _ in spent)
