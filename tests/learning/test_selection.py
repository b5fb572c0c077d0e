"""Selection on chain: deterministic, enforced (tx-sender-not-selected), auditable
(commitment's selected_next, round summary), quorum adapted; policy all changes nothing."""
from dataclasses import replace

import pytest

from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.core.errors import ConfigError, ValidationError
from learningchain.ledger.genesis import NetworkConfig
from learningchain.learning.reputation import Record
from learningchain.learning.selection import parse_selection, select, selection_seed
from learningchain.learning.energy import EnergyProfile
from tests.helpers import KEYS, next_block, now, tiny_config, tiny_genesis, update_tx

PROFILE = {"train_nj": 1000, "send_nj": 10, "recv_nj": 5}


def participants(n=6, budget=None):
    out = []
    for i, k in enumerate(KEYS[:n]):
        e = {**PROFILE, "train_nj": 1000 * (i + 1)}
        if budget:
            e["budget_nj"] = budget
        out.append({"pubkey": k.public_hex, "energy": e})
    return out


def selecting_genesis(policy="random-k", params=None, **kw):
    return tiny_genesis(participants=tuple(participants()), quorum=3,
                        selection={"policy": policy, "params": params or {"k": 3}}, **kw)


def close_round(chain):
    sel = sorted(chain.tip_state.selected)
    txs = [update_tx(chain, k) for k in KEYS if k.public_hex in sel]
    b = next_block(chain, txs)
    chain.add_block(b, now(b))
    return b


def test_policy_all_is_the_default_and_changes_nothing():
    plain = tiny_config()
    explicit = tiny_config(selection={"policy": "all", "params": {}})
    assert "selection" not in plain.to_dict() and "participants" not in plain.to_dict()
    assert NetworkConfig.from_dict(plain.to_dict()) == plain
    chain = Chain(tiny_genesis())
    assert chain.tip_state.selected is None
    b = next_block(chain, [update_tx(chain, k) for k in KEYS[:3]])
    chain.add_block(b, now(b))
    assert set(b.commitment) == {"round", "rule", "params", "updates", "accepted", "rejected", "model_digest"}
    assert explicit.selection_policy == ("all", {})


def test_two_chains_fed_the_same_blocks_select_the_same_set():
    a, b = Chain(selecting_genesis()), Chain(selecting_genesis())
    assert a.tip_state.selected == b.tip_state.selected and len(a.tip_state.selected) == 3
    for _ in range(3):
        blk = close_round(a)
        b.add_block(blk, now(blk))
        assert a.tip_state.selected == b.tip_state.selected
        assert blk.commitment["selected_next"] == sorted(a.tip_state.selected)
    assert a.round_summary(2)["selected"] == sorted(a.state_of(a.block_at(1).hash).selected)


def test_unselected_sender_refused_and_quorum_adapts():
    chain = Chain(tiny_genesis(participants=tuple(participants()), quorum=5,
                               selection={"policy": "random-k", "params": {"k": 3}}))
    sel = chain.tip_state.selected
    outsider = next(k for k in KEYS[:6] if k.public_hex not in sel)
    with pytest.raises(ValidationError) as exc:
        chain.validate_tx(update_tx(chain, outsider))
    assert exc.value.code == errors.TX_NOT_SELECTED
    stranger = KEYS[8]  # not a participant at all
    with pytest.raises(ValidationError) as exc:
        chain.validate_tx(update_tx(chain, stranger))
    assert exc.value.code == errors.TX_UNKNOWN_SENDER
    blk = close_round(chain)  # quorum 5 lowered to the 3 selected: this block closes
    assert blk.commitment is not None and chain.tip_state.round == 2


def test_block_with_unselected_update_refused():
    chain = Chain(selecting_genesis())
    outsider = next(k for k in KEYS[:6] if k.public_hex not in chain.tip_state.selected)
    tx = update_tx(chain, outsider)
    from tests.helpers import mine
    from learningchain.ledger.block import make_block
    bad = mine(make_block(1, chain.tip.hash, chain.tip.header.timestamp + 1000, chain.tip.header.target,
                          KEYS[11].public_hex, (tx,)))
    with pytest.raises(ValidationError) as exc:
        chain.add_block(bad, now(bad))
    assert exc.value.code == errors.BLOCK_BAD_TX and errors.TX_NOT_SELECTED in exc.value.detail


def test_top_k_prefers_scores_and_energy_aware_respects_budget():
    keys = [k.public_hex for k in KEYS[:6]]
    seed = selection_seed("00" * 32, 2)
    records = {keys[0]: Record(score=-10), keys[1]: Record(score=9), keys[2]: Record(score=5)}
    top = select("top-k", {"k": 2, "explore": 0}, keys, records, {}, 2, seed)
    assert top == {keys[1], keys[2]}
    profiles = {k: EnergyProfile(train_nj=1000 * (i + 1), send_nj=1, recv_nj=1, budget_nj=10**6)
                for i, k in enumerate(keys)}
    params = parse_selection({"policy": "energy-aware", "params": {"k": 2, "explore": 0}})[1]
    cheap = select("energy-aware", params, keys, {}, profiles, 2, seed, epochs=1)
    assert cheap == {keys[0], keys[1]}  # the two cheapest
    broke = {keys[0]: Record(spent_nj=10**6), keys[1]: Record(score=-5)}
    chosen = select("energy-aware", params, keys, broke, profiles, 2, seed, epochs=1)
    assert keys[0] not in chosen and keys[1] not in chosen and len(chosen) == 2


def test_bad_selection_configs():
    with pytest.raises(ConfigError, match="needs the candidates"):
        tiny_config(selection={"policy": "top-k", "params": {"k": 2}})
    with pytest.raises(ConfigError, match="unknown selection policy"):
        tiny_config(participants=tuple(participants()), selection={"policy": "best", "params": {}})
    with pytest.raises(ConfigError, match="explore"):
        tiny_config(participants=tuple(participants()), selection={"policy": "top-k", "params": {"k": 2, "explore": 3}})
    with pytest.raises(ConfigError, match="energy profile"):
        tiny_config(participants=({"pubkey": KEYS[0].public_hex, "energy": {"train_nj": 1}},))


def test_live_participant_does_not_train_when_not_selected():
    import threading
    from types import SimpleNamespace

    from learningchain.ledger.mempool import Mempool
    from learningchain.node.threads import OwnUpdates, participate_once

    chain = Chain(selecting_genesis())
    outsider = next(k for k in KEYS[:6] if k.public_hex not in chain.tip_state.selected)
    logs = []

    class Boom:
        def make_update(self, *a, **kw):
            raise AssertionError("trained although not selected")
    node = SimpleNamespace(lock=threading.RLock(), chain=chain, ledger=SimpleNamespace(mempool=Mempool()),
                           pubkey=outsider.public_hex, own_updates=OwnUpdates(), log=logs.append,
                           participant=Boom())
    participate_once(node)
    assert logs == ["not selected for round 1"]


def test_energy_aware_rotates_overdue_nodes_and_tolerates_one_bad_draw():
    keys = [k.public_hex for k in KEYS[:6]]
    seed = selection_seed("00" * 32, 5)
    profiles = {k: EnergyProfile(train_nj=1000 * (i + 1), send_nj=1, recv_nj=1) for i, k in enumerate(keys)}
    params = parse_selection({"policy": "energy-aware", "params": {"k": 2, "explore": 0, "max_age": 3}})[1]
    recent = {k: Record(last_selected=4) for k in keys}
    assert select("energy-aware", params, keys, recent, profiles, 5, seed) == {keys[0], keys[1]}
    waiting = {**recent, keys[5]: Record(score=2, rounds=1, last_selected=1)}  # dearest, waited 4 rounds
    assert select("energy-aware", params, keys, waiting, profiles, 5, seed) == {keys[5], keys[0]}
    # overdue without positive evidence (never took part, or took part and earned nothing): no rotation
    for rec in (Record(last_selected=1), Record(score=0, rounds=1, last_selected=1)):
        assert select("energy-aware", params, keys, {**recent, keys[5]: rec}, profiles, 5, seed) == {keys[0], keys[1]}
    unlucky = {**recent, keys[0]: Record(score=-2, last_selected=4)}  # one far-quarter round: still trusted
    assert keys[0] in select("energy-aware", params, keys, unlucky, profiles, 5, seed)
    attacker = {**recent, keys[0]: Record(score=-6, last_selected=1)}  # far out and rejected: out, overdue or not
    assert keys[0] not in select("energy-aware", params, keys, attacker, profiles, 5, seed)


def test_last_selected_is_stamped_on_chain():
    chain = Chain(selecting_genesis("energy-aware", {"k": 3, "explore": 0}))
    first = chain.tip_state.selected
    assert all(chain.tip_state.records[c].last_selected == 1 for c in first)
    close_round(chain)
    assert all(chain.tip_state.records[c].last_selected == 2 for c in chain.tip_state.selected)


def _energy_aware(keys, profiles, records, round_=5, **params):
    full = parse_selection({"policy": "energy-aware", "params": {"explore": 0, **params}})[1]
    return select("energy-aware", full, keys, records, profiles, round_, selection_seed("00" * 32, round_), epochs=1)


def test_min_k_fills_with_distrusted_best_score_first_then_least_spent_over_budget():
    keys = [k.public_hex for k in KEYS[:6]]
    budget = 10**6
    profiles = {k: EnergyProfile(train_nj=1000 * (i + 1), send_nj=1, recv_nj=1, budget_nj=budget)
                for i, k in enumerate(keys)}
    records = {keys[0]: Record(score=-5), keys[1]: Record(score=-9), keys[2]: Record(score=-20),
               keys[3]: Record(score=-30), keys[4]: Record(spent_nj=budget)}
    # one trusted eligible (keys[5]); min_k 3 takes the two best distrusted, never the broke one
    assert _energy_aware(keys, profiles, records, k=3, min_k=3) == {keys[5], keys[0], keys[1]}
    assert _energy_aware(keys, profiles, records, k=3, min_k=1) == {keys[5]}
    broke = {keys[0]: Record(score=-5), **{keys[i]: Record(spent_nj=budget * (i + 2)) for i in (1, 2, 4)},
             keys[3]: Record(spent_nj=budget + 1)}  # the least spent of the over-budget ones
    assert _energy_aware(keys, profiles, broke, k=3, min_k=3) == {keys[5], keys[0], keys[3]}


def test_green_rounds_discount_the_cost():
    keys = [k.public_hex for k in KEYS[:2]]
    profiles = {keys[0]: EnergyProfile(train_nj=1000, send_nj=0, recv_nj=0),
                keys[1]: EnergyProfile(train_nj=1500, send_nj=0, recv_nj=0, renewable_period=24,
                                       renewable_on=(4,))}  # green in round 5 only
    assert _energy_aware(keys, profiles, {}, 5, k=1) == {keys[1]}  # 1500 * 50 % < 1000
    assert _energy_aware(keys, profiles, {}, 6, k=1) == {keys[0]}  # not green
    assert _energy_aware(keys, profiles, {}, 5, k=1, green_discount=0) == {keys[0]}


def test_outlier_in_over_a_quarter_of_its_rounds_is_distrusted_whatever_its_score():
    keys = [k.public_hex for k in KEYS[:3]]
    profiles = {k: EnergyProfile(train_nj=1000 * (i + 1), send_nj=0, recv_nj=0) for i, k in enumerate(keys)}
    judged = {keys[0]: Record(score=0, outliers=1, rounds=3)}  # cheapest, score fine, 1 outlier in 3
    assert keys[0] not in _energy_aware(keys, profiles, judged, k=2)
    unlucky = {keys[0]: Record(score=0, outliers=1, rounds=4)}  # 1 in 4: not more than a quarter
    assert keys[0] in _energy_aware(keys, profiles, unlucky, k=2)


def test_top_k_exploration_falls_back_to_the_best_negative_scores():
    keys = [k.public_hex for k in KEYS[:5]]
    records = {keys[0]: Record(score=9), keys[1]: Record(score=-2), keys[2]: Record(score=-6),
               keys[3]: Record(score=-7), keys[4]: Record(score=-3)}
    top = select("top-k", {"k": 3, "explore": 2}, keys, records, {}, 2, selection_seed("00" * 32, 2))
    assert top == {keys[0], keys[1], keys[4]}  # honest-looking -2 and -3 before attackers at -6, -7


def test_selection_and_compression_sweeps_and_energy_plot_on_a_tiny_network(tmp_path):
    """The experiment drivers end to end, tiny: 4 nodes, 1 round, softmax."""
    from learningchain.sim.experiments import compression_sweep, selection_sweep, write_sweep
    from learningchain.sim.simulator import SimConfig

    base = SimConfig(name="tiny", nodes=4, rounds=1, model="softmax")
    sweep = selection_sweep(base, ("all", "random-k", "energy-aware"), 2)
    pol = sweep["policies"]
    assert list(pol) == ["all", "random-k", "energy-aware"] and pol["all"]["saving"] == 0.0
    assert pol["all"]["selected"] == [4] and pol["random-k"]["selected"] == [2]
    assert pol["energy-aware"]["energy_j"] < pol["all"]["energy_j"] and 0 < pol["energy-aware"]["saving"] < 1
    paths = write_sweep(tmp_path / "sel", "selection", sweep)
    assert paths[0].name == "selection.json" and paths[1].read_bytes()[:4] == b"\x89PNG"
    comp = compression_sweep(replace(base, nodes=3), ("q8", "skip"), skip_threshold=1e9)
    rows = comp["schemes"]
    assert list(rows) == ["none", "q8", "skip"] and rows["none"]["vs_uncompressed_tx"] == 1.0
    assert rows["q8"]["payload_vs_raw"] < 0.3 and rows["skip"]["skipped"] == [3]
