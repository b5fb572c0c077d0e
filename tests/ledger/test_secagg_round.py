"""Secure aggregation as consensus rules (docs/protocol.md section 14): whole
rounds played by honest SecAggClients on a real chain, dropouts, every
tampering refused with its reason, complaints, the commitment, and what the
chain reveals about one input (nothing)."""
import numpy as np
import pytest

from learningchain.core import ec, errors
from learningchain.core.errors import ValidationError
from learningchain.core.encoding import weights_digest
from learningchain.core.secagg_crypto import pair_seed, prg
from learningchain.ledger.secagg_close import DISQUALIFIED
from learningchain.ledger.secagg_tx import INPUT, UNMASK, SecAggTx
from learningchain.learning import secagg
from learningchain.node.secagg_client import SecAggClient, flatten
from learningchain.ledger.chain import Chain
from tests.helpers import KEYS, next_block, now, rebuild, refused, update_tx
from tests.secagg_net import WIDE_SPEC, SaNet


def resign(net, tx, **changes):
    """``tx`` with changed fields, signed again by its sender."""
    key = next(k for k in net.keys if k.public_hex == tx.sender)
    return SecAggTx.create(key, tx.kind, tx.round, tx.base, {**tx.fields, **changes}, tx.timestamp)


def code_of(net, tx):
    with pytest.raises(ValidationError) as exc:
        net.chain.validate_tx(tx)
    return exc.value.code


def block_refuses(net, txs, code):
    """A block on the tip carrying ``txs`` is refused as block-bad-tx naming ``code``."""
    b = rebuild(next_block(net.chain), txs=txs)
    err = refused(net.chain, b, errors.BLOCK_BAD_TX)
    assert f": {code}:" in err.detail, err.detail


def to_input_phase(net, who=None):
    net.block(net.setups(who))
    while net.state.phase == "setup":
        net.block()


def to_unmask_phase(net, who=None):
    to_input_phase(net)
    deltas = {}
    net.block(net.inputs(who, deltas))
    while net.state.phase == "input":
        net.block()
    return deltas


@pytest.fixture(scope="module")
def played():
    """One whole honest round at N=10 (t=7)."""
    net = SaNet(10)
    g0, _ = net.chain.model()
    closing, deltas = net.full_round()
    return net, g0, closing, deltas


def test_a_full_round_closes_with_the_exact_mean_of_the_quantized_deltas(played):
    net, g0, closing, deltas = played
    c = closing.commitment
    assert net.state.round == 2 and net.state.phase == "setup" and net.state.phase_start == closing.height
    want = net.expected_model(g0, [deltas[m] for m in sorted(deltas)])
    got, digest = net.chain.model()
    assert all(np.array_equal(got[k], want[k]) and got[k].dtype == np.float32 for k in want)
    assert c["model_digest"] == digest == weights_digest(want)
    sa = c["secure_aggregation"]
    assert sa["setups"] == sa["counted"] == net.members() and sa["dropped"] == sa["disqualified"] == []
    assert c["accepted"] == c["updates"] and c["rejected"] == {} and "failed" not in c
    assert len(sa["sum_digest"]) == 64 and c["rule"] == "fedavg"


def test_blocks_that_close_setup_or_input_carry_no_commitment(played):
    net, _, closing, _ = played
    opened = [net.chain.block_at(h) for h in range(1, closing.height)]
    assert all(b.commitment is None for b in opened)
    assert [net.chain.state_of(b.hash).phase for b in opened] == ["input", "unmask"]


def test_the_next_round_runs_on_the_new_model(played):
    net = played[0]
    g1, _ = net.chain.model()
    closing, deltas = net.full_round()
    assert closing.commitment["round"] == 2
    want = net.expected_model(g1, [deltas[m] for m in sorted(deltas)])
    assert net.chain.model()[1] == weights_digest(want)


def test_three_of_ten_dropped_after_setup_close_with_the_sum_of_the_other_seven():
    net = SaNet(10)
    g0, _ = net.chain.model()
    closing, deltas = net.full_round(drop_after_setup=[0, 4, 9])
    sa = closing.commitment["secure_aggregation"]
    assert sa["dropped"] == net.members([0, 4, 9]) and len(sa["counted"]) == 7
    assert net.chain.model()[1] == weights_digest(net.expected_model(g0, [deltas[m] for m in sorted(deltas)]))


def test_dropped_after_input_within_n_minus_t_still_closes():
    net = SaNet(10)
    g0, _ = net.chain.model()
    closing, deltas = net.full_round(drop_after_input=[1, 2, 3])  # 7 = t unmasks
    assert closing.commitment["secure_aggregation"]["counted"] == net.members()
    assert net.chain.model()[1] == weights_digest(net.expected_model(g0, list(deltas.values())))


def test_mixed_dropouts_after_setup_and_after_input():
    net = SaNet(10)
    g0, _ = net.chain.model()
    closing, deltas = net.full_round(drop_after_setup=[5, 6], drop_after_input=[7])
    sa = closing.commitment["secure_aggregation"]
    assert sa["dropped"] == net.members([5, 6]) and len(sa["counted"]) == 8
    assert net.chain.model()[1] == weights_digest(net.expected_model(g0, [deltas[m] for m in sorted(deltas)]))


def test_too_few_unmasks_fail_the_round_at_the_timeout():
    net = SaNet(10, phase_timeout=2)
    g0 = net.chain.model()[1]
    to_unmask_phase(net)
    net.block(net.unmasks(range(6)))  # 6 < t = 7
    closing = net.block()
    assert "not computable" in closing.commitment["failed"] and closing.commitment["accepted"] == []
    assert set(closing.commitment["rejected"].values()) == {closing.commitment["failed"]}
    assert net.chain.model()[1] == g0 and net.state.round == 2 and net.state.phase == "setup"


def test_fewer_setups_than_t_fail_the_round_at_the_setup_timeout():
    net = SaNet(10, phase_timeout=2)
    net.block(net.setups(range(6)))
    closing = net.block()
    assert closing.commitment["failed"] == "6 setups, fewer than the threshold t=7"
    assert net.state.round == 2


# --- tampering ---------------------------------------------------------------------------
def test_a_wrong_share_a_replayed_setup_and_duplicates_are_refused():
    net = SaNet(10)
    old = net.setups()
    net.block(old)
    assert code_of(net, old[0]) == errors.TX_DUPLICATE  # the same setup again
    again = SecAggClient(net.keys[0], net.config).setup(1, net.members(), net.state.model_digest)
    assert code_of(net, again) == errors.SA_PHASE_CLOSED
    deltas = {}
    ins = net.inputs(None, deltas)
    other = resign(net, ins[0], num_samples=99)
    block_refuses(net, [ins[0], other], errors.TX_DUPLICATE_SENDER)  # one per type in one block
    net.block(ins[:5])
    assert code_of(net, other) == errors.TX_DUPLICATE_SENDER  # and one per type in the round
    net.block(ins[5:])
    un = net.unmasks()
    bad = list(un[0].fields["self_shares"])
    bad[3] = ec.scalar_hex(int(bad[3], 16) + 1)
    forged = resign(net, un[0], self_shares=bad)
    assert code_of(net, forged) == errors.SA_BAD_SHARE
    block_refuses(net, [forged], errors.SA_BAD_SHARE)
    bad_mask = resign(net, un[0], mask_shares=["00" * 32])
    assert code_of(net, bad_mask) == errors.SA_MALFORMED  # |X \ D| = 0 entries
    net.block(un)
    assert code_of(net, old[1]) == errors.TX_DUPLICATE  # already on chain
    block_refuses(net, [old[1]], errors.TX_LATE)  # an old round's setup in a round-2 block


def test_roster_phase_setup_and_plain_tx_rules():
    net = SaNet(10, quorum=9, phase_timeout=2)
    outsider = update_tx(net.chain, KEYS[0])
    assert code_of(net, outsider) == errors.TX_UNKNOWN_SENDER
    early_input = SecAggClient(net.keys[0], net.config).input(np.zeros(15), net.state, 1)
    assert early_input is None  # no setup of ours on chain: the client sends nothing
    setups = net.setups()
    forged_input = SecAggTx.create(net.keys[0], INPUT, 1, net.state.model_digest,
                                   {"input": SecAggTx.encode_input(np.zeros(15, np.uint32)),
                                    "num_samples": 1, "complaints": []})
    assert code_of(net, forged_input) == errors.SA_PHASE_NOT_OPEN
    net.block(setups[:9])  # quorum 9: the setup phase closes; member 9 has none
    plain = update_tx(net.chain, net.keys[0])
    assert code_of(net, plain) == errors.SA_PLAIN_TX
    block_refuses(net, [plain], errors.SA_PLAIN_TX)
    assert code_of(net, setups[9]) == errors.SA_PHASE_CLOSED
    lone = [k for k in net.keys if k.public_hex == setups[9].sender][0]
    no_setup = SecAggTx.create(lone, INPUT, 1, net.state.model_digest, forged_input.fields)
    assert code_of(net, no_setup) == errors.SA_NO_SETUP
    ins = net.inputs(range(9))
    net.block(ins)  # all of Sset sent an input: the input phase closes
    assert code_of(net, resign(net, ins[0], num_samples=5)) == errors.SA_PHASE_CLOSED


def test_an_input_from_outside_the_roster_is_refused_under_selection():
    net = SaNet(10, threshold=6, quorum=8, policy="random-k", k=8)
    roster = net.members()
    assert len(roster) == 8
    left_out = next(k for k in net.keys if k.public_hex not in roster)
    tx = SecAggClient(left_out, net.config).setup(1, roster, net.state.model_digest)
    assert code_of(net, tx) == errors.SA_NOT_IN_ROSTER
    to_input_phase(net)
    stray = SecAggTx.create(left_out, INPUT, 1, net.state.model_digest,
                            {"input": SecAggTx.encode_input(np.zeros(15, np.uint32)), "num_samples": 1,
                             "complaints": []})
    assert code_of(net, stray) == errors.SA_NOT_IN_ROSTER  # an input from outside the roster
    block_refuses(net, [stray], errors.SA_NOT_IN_ROSTER)
    net.block(net.inputs())
    closing = net.block(net.unmasks())
    assert len(closing.commitment["selected_next"]) == 8
    rec = net.state.records[roster[0]]
    assert (rec.rounds, rec.accepted, rec.score) == (1, 1, 1) and rec.spent_nj > 0


def test_a_valid_complaint_disqualifies_the_dealer_and_the_round_still_closes():
    net = SaNet(10)
    g0, _ = net.chain.model()
    setups = net.setups()
    dealer, victim = setups[2], net.members()[5]
    shares = list(dealer.fields["shares"])
    shares[4] = "A" * 107 + "="  # the ciphertext for member 5 (roster without the dealer)
    net.block([resign(net, dealer, shares=shares)] + setups[:2] + setups[3:])
    deltas = {}
    ins = net.inputs(None, deltas)
    complaint = next(t for t in ins if t.sender == victim).fields["complaints"]
    assert [c["against"] for c in complaint] == [dealer.sender]
    net.block(ins)
    un = net.unmasks()
    seeds = list(un[0].fields["seeds"])
    seeds[0] = {**seeds[0], "point": ec.point_hex(ec.base_mul(7))}
    assert code_of(net, resign(net, un[0], seeds=seeds)) == errors.SA_BAD_SEED
    closing = net.block(un)
    c = closing.commitment
    assert c["secure_aggregation"]["disqualified"] == [dealer.sender]
    assert c["rejected"] == {next(t.id for t in ins if t.sender == dealer.sender): DISQUALIFIED}
    counted = [deltas[m] for m in sorted(deltas) if m != dealer.sender]
    assert net.chain.model()[1] == weights_digest(net.expected_model(g0, counted))


def test_false_complaints_and_bad_proofs_are_refused():
    net = SaNet(10)
    to_input_phase(net)
    tx = net.inputs([0])[0]
    me = net.keys[[k.public_hex for k in net.keys].index(tx.sender)]
    target = net.members()[1]
    enc = [t for t in net.state.pending if t.sender == target][0].enc_key
    point, proof = ec.dleq_prove(me.secret_scalar(), enc)
    false = resign(net, tx, complaints=[{"against": target, "point": ec.point_hex(point), "proof": proof}])
    assert code_of(net, false) == errors.SA_FALSE_COMPLAINT
    forged = {**proof, "z": ec.scalar_hex(int(proof["z"], 16) + 1)}
    bad = resign(net, tx, complaints=[{"against": target, "point": ec.point_hex(point), "proof": forged}])
    assert code_of(net, bad) == errors.SA_BAD_PROOF


def test_a_block_whose_commitment_differs_is_refused():
    net = SaNet(10)
    to_unmask_phase(net)
    good = next_block(net.chain, net.unmasks())
    c = dict(good.commitment)
    c["secure_aggregation"] = {**c["secure_aggregation"], "sum_digest": "00" * 32}
    err = refused(net.chain, rebuild(good, commitment=c), errors.BLOCK_BAD_COMMITMENT)
    assert "secure_aggregation" in err.detail
    refused(net.chain, rebuild(good, commitment=None), errors.BLOCK_MISSING_COMMITMENT)
    net.chain.add_block(good, now(good))


def test_a_block_closing_setup_may_not_carry_a_commitment():
    net = SaNet(10)
    setups = net.setups()
    good = next_block(net.chain, setups)
    refused(net.chain, rebuild(good, commitment={"round": 1}), errors.BLOCK_UNEXPECTED_COMMITMENT)


# --- privacy -------------------------------------------------------------------------------
def _attack(net, ins, victim):
    """Everything the chain lets anyone remove from ``victim``'s input: the pairwise
    masks with the counted members, from their revealed seed points."""
    y = next(t for t in ins if t.sender == victim).input_array
    unmasks = {t.sender: t for t in net.chain.tip.txs if t.kind == UNMASK}
    for v, u in unmasks.items():
        seed = u.seeds[0]
        if seed is not None:
            m = prg(pair_seed(net.state.round - 1, ec.point_bytes(seed[0])), y.size)
            y = y - m if victim < v else y + m
    return y


def _signed(a):
    a = a.astype(np.int64)
    return np.where(a >= 1 << 31, a - (1 << 32), a).astype(np.float64)


def _disqualified_round(no_self_mask=False, monkeypatch=None):
    net = SaNet(10, spec=WIDE_SPEC)
    setups = net.setups()
    dealer = setups[2]
    shares = list(dealer.fields["shares"])
    shares[0] = "A" * 107 + "="
    net.block([resign(net, dealer, shares=shares)] + setups[:2] + setups[3:])
    deltas: dict = {}
    if no_self_mask:  # the ablation: the dealer's input carries no self mask
        monkeypatch.setattr("learningchain.node.secagg_client.self_seed", lambda b: None)
        monkeypatch.setattr("learningchain.node.secagg_client.prg",
                            lambda seed, d: np.zeros(d, np.uint32) if seed is None else prg(seed, d))
        ins = net.inputs([2], deltas)
        monkeypatch.undo()
        ins += net.inputs([0, 1] + list(range(3, 10)), deltas)
    else:
        ins = net.inputs(None, deltas)
    net.block(ins)
    net.block(net.unmasks())
    assert net.chain.tip.commitment["secure_aggregation"]["disqualified"] == [dealer.sender]
    qs = {m: _signed(secagg.quantize(flatten(d), net.params.clip_value, net.params.scale)) for m, d in deltas.items()}
    return net, ins, dealer.sender, qs


def test_no_input_on_chain_decodes_to_its_update():
    net, ins, victim, qs = _disqualified_round()
    for tx in ins:  # every masked input looks uniform: no correlation with its delta
        assert abs(np.corrcoef(_signed(tx.input_array), qs[tx.sender])[0, 1]) < 0.2
    best = _signed(_attack(net, ins, victim))  # the disqualified input, all revealed seeds removed
    assert abs(np.corrcoef(best, qs[victim])[0, 1]) < 0.2
    assert np.abs(best).mean() > 100 * np.abs(qs[victim]).mean()  # uniform over 2^32, not the small q


def test_the_ablation_without_a_self_mask_leaks_and_the_test_catches_it(monkeypatch):
    net, ins, victim, qs = _disqualified_round(no_self_mask=True, monkeypatch=monkeypatch)
    best = _signed(_attack(net, ins, victim))
    assert np.array_equal(best, qs[victim])  # the exact update: the leak
    assert np.corrcoef(best, qs[victim])[0, 1] > 0.99  # what the test above would have seen


def test_each_branch_keeps_its_own_phases_and_the_reveal_rule_holds_across_a_reorg():
    net = SaNet(10)
    b1 = net.block(net.setups())
    other = Chain(net.genesis)
    other.add_block(b1, now(b1))
    net.block(net.inputs())  # branch A: every input, so u is counted there
    w, u = net.members()[0], net.members()[4]
    on_a = net.clients[w].unmask(net.state)
    assert on_a.fields["self_shares"][4] is not None and net.clients[w].journal[1][u] == "self"
    ins = [net.clients[m].input(net.delta(m), other.tip_state, 10) for m in net.members() if m != u]
    branch_b = [next_block(other, ins)]
    other.add_block(branch_b[0], now(branch_b[0]))
    while other.tip_state.phase == "input":  # u never sends: the input phase times out
        b = next_block(other)
        other.add_block(b, now(b))
        branch_b.append(b)
    assert other.tip_state.phase == "unmask"
    on_b = net.clients[w].unmask(other.tip_state)
    assert on_b.fields["mask_shares"] == [None]  # u's self share went out on branch A: no mask share
    helper = net.clients[net.members()[1]].unmask(other.tip_state)
    assert helper.fields["mask_shares"][0] is not None
    results = [net.chain.add_block(b, now(b)) for b in branch_b]
    assert "reorg" in [r.status for r in results] and net.state.phase == "unmask" and net.chain.tip.hash == other.tip.hash
    # branch A's unmask names branch A's inputs (10 of them; C has 9 here): revealing for another input set
    assert code_of(net, on_a) == errors.SA_WRONG_CONTEXT
    assert code_of(net, resign(net, on_a, inputs=net.clients[w].unmask(net.state).fields["inputs"])) \
        == errors.SA_MALFORMED  # with this branch's binding, its 10 self shares do not fit |C| = 9


def test_a_wrong_mask_share_and_a_complaint_against_a_member_without_setup_are_refused():
    net = SaNet(10, quorum=9, phase_timeout=2)
    setups = net.setups()
    net.block(setups[:9])  # member 9 has no setup
    tx = net.inputs([0])[0]
    me = next(k for k in net.keys if k.public_hex == tx.sender)
    absent = setups[9]
    point, proof = ec.dleq_prove(me.secret_scalar(), absent.enc_key)
    against = [{"against": absent.sender, "point": ec.point_hex(point), "proof": proof}]
    assert code_of(net, resign(net, tx, complaints=against)) == errors.SA_NO_SETUP
    net.block(net.inputs(range(1, 9)))  # member 0 never sends its input: dropped after setup
    while net.state.phase == "input":
        net.block()
    un = net.unmasks(range(1, 9))
    assert [len(un[0].fields[k]) for k in ("self_shares", "mask_shares", "seeds")] == [8, 1, 0]
    bad = resign(net, un[0], mask_shares=[ec.scalar_hex(int(un[0].fields["mask_shares"][0], 16) ^ 1)])
    with pytest.raises(ValidationError, match="mask share for") as exc:
        net.chain.validate_tx(bad)
    assert exc.value.code == errors.SA_BAD_SHARE
    closing = net.block(un)
    assert closing.commitment["secure_aggregation"]["dropped"] == [tx.sender]


# --- section 14.6 from the document alone (tests/secagg_verifier.py) ------------------------
@pytest.mark.parametrize("scenario", ["all", "dropped", "complaint"])
def test_an_independent_recomputation_from_the_spec_matches_the_commitment(scenario):
    from tests import secagg_verifier
    net = SaNet(10)
    g0, _ = net.chain.model()
    if scenario == "complaint":
        setups = net.setups()
        shares = list(setups[2].fields["shares"])
        shares[4] = "A" * 107 + "="
        net.block([resign(net, setups[2], shares=shares)] + setups[:2] + setups[3:])
        net.block(net.inputs())
        closing = net.block(net.unmasks())
    else:
        closing, _ = net.full_round(drop_after_setup=[3, 8] if scenario == "dropped" else ())
    txs = [t.to_dict() for h in range(1, closing.height + 1) for t in net.chain.block_at(h).txs]
    sa = closing.commitment["secure_aggregation"]
    assert bool(sa["dropped"]) == (scenario == "dropped") and bool(sa["disqualified"]) == (scenario == "complaint")
    got = secagg_verifier.aggregate(txs, sa, net.members(), net.params.threshold, net.params.scale,
                                    {k: np.asarray(v) for k, v in g0.items()})
    assert got == (sa["sum_digest"], closing.commitment["model_digest"])
