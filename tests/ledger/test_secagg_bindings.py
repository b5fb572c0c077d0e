"""The review's attacks on secure aggregation, refused (docs/protocol.md 14.2-14.4):
a setup must prove knowledge of the secrets behind its mask_key and enc_key
(sa-bad-proof), and every SA tx names the context it was made for (the roster,
the setup set, the input set): made for another, it is sa-wrong-context."""
import base64
import dataclasses

import pytest

from learningchain.core import ec, errors, shamir
from learningchain.core.errors import ValidationError
from learningchain.core.secagg_crypto import seal_shares, share_key
from learningchain.ledger.secagg_round import SaView, ids_digest, roster_digest, view_of
from learningchain.ledger.secagg_tx import SETUP, SecAggTx
from tests.helpers import next_block, rebuild, refused
from tests.secagg_net import WIDE_SPEC, SaNet


def code_of(net, tx):
    with pytest.raises(ValidationError) as exc:
        net.chain.validate_tx(tx)
    return exc.value.code


def block_refuses(net, txs, code):
    b = rebuild(next_block(net.chain), txs=txs)
    err = refused(net.chain, b, errors.BLOCK_BAD_TX)
    assert f": {code}:" in err.detail, err.detail


def _forged_setup(net, att_key, mask_key, enc_secret=None, enc_key=None, proofs=None, roster=None):
    """An sa-setup by ``att_key`` with the given mask_key (as D_0 too) and enc_key, AEAD-valid
    shares of garbage mask values (they fail Feldman), like /tmp/rev/attack_*.py."""
    s, t, members = net.state, net.params.threshold, net.members()
    att = att_key.public_hex
    e = enc_secret if enc_secret is not None else shamir.random_scalar()
    fcoef = [shamir.random_scalar() for _ in range(t)]
    sealed = []
    for i, w in enumerate(members, start=1):
        if w == att:
            continue
        k = share_key(ec.point_bytes(ec.mul(ec.parse_point(w), e))[1:], s.round, bytes.fromhex(att),
                      bytes.fromhex(w))
        sealed.append(base64.b64encode(seal_shares(k, shamir.evaluate(fcoef, i), 12345)).decode())
    me = bytes.fromhex(att)
    fields = {"mask_key": mask_key, "enc_key": enc_key or ec.point_hex(ec.base_mul(e)),
              "proofs": proofs or {"mask": ec.pok_prove(shamir.random_scalar(), s.round, me),
                                   "enc": ec.pok_prove(e, s.round, me)},
              "roster": roster or roster_digest(members),
              "commitments": {"self": [ec.point_hex(ec.base_mul(a)) for a in fcoef],
                              "mask": [mask_key] + [ec.point_hex(ec.base_mul(shamir.random_scalar()))
                                                    for _ in range(t - 1)]},
              "shares": sealed}
    return SecAggTx.create(att_key, SETUP, s.round, s.model_digest, fields)


def test_attack_a_a_copied_mask_key_is_refused_without_its_secret():
    net = SaNet(6, spec=WIDE_SPEC)
    att_key = net.keys[0]
    honest = [m for m in net.members() if m != att_key.public_hex]
    setups = net.setups(honest)
    x = next(tx for tx in setups if tx.sender == honest[0])
    # the attacker's own (valid) proof of some other m; then x's proofs copied verbatim
    for proofs in (None, x.fields["proofs"], {"mask": x.fields["proofs"]["mask"],
                                              "enc": _forged_setup(net, att_key, x.fields["mask_key"])
                                              .fields["proofs"]["enc"]}):
        bad = _forged_setup(net, att_key, x.fields["mask_key"], proofs=proofs)
        assert code_of(net, bad) == errors.SA_BAD_PROOF
        block_refuses(net, setups + [bad], errors.SA_BAD_PROOF)
    net.block(setups)  # the honest setups alone are fine


def test_attack_b_an_offset_enc_key_is_refused():
    net = SaNet(6, spec=WIDE_SPEC)
    att_key = net.keys[0]
    honest = [m for m in net.members() if m != att_key.public_hex]
    setups = net.setups(honest)
    x = next(tx for tx in setups if tx.sender == honest[0])
    k = 0xC0FFEE
    offset = ec.point_hex(ec.add(x.enc_key, ec.base_mul(k)))  # E_x + k·G: the attacker knows k, not e_x + k
    me = bytes.fromhex(att_key.public_hex)
    for enc_proof in (ec.pok_prove(k, 1, me), x.fields["proofs"]["enc"]):
        bad = _forged_setup(net, att_key, ec.point_hex(ec.base_mul(99)), enc_key=offset,
                            proofs={"mask": ec.pok_prove(99, 1, me), "enc": enc_proof})
        assert code_of(net, bad) == errors.SA_BAD_PROOF
        block_refuses(net, setups + [bad], errors.SA_BAD_PROOF)
    # the same forger with keys it knows is accepted: the proofs, not the forging, are what is checked
    fine = _forged_setup(net, att_key, ec.point_hex(ec.base_mul(99)),
                         proofs={"mask": ec.pok_prove(99, 1, me), "enc": ec.pok_prove(5, 1, me)}, enc_secret=5)
    net.chain.validate_tx(fine)


def test_a_setup_sealed_for_another_roster_is_wrong_context():
    net = SaNet(6)
    good = net.setups([0])[0]
    key = next(k for k in net.keys if k.public_hex == good.sender)
    other = SecAggTx.create(key, SETUP, 1, good.base, {**good.fields, "roster": roster_digest(net.members()[:5])})
    assert code_of(net, other) == errors.SA_WRONG_CONTEXT
    net.chain.validate_tx(good)


def test_a_stale_input_after_a_setup_set_change_is_refused():
    """/tmp/rev/stale_input.py: member 0 masks for branch A's Sset (5 setups); on branch B
    (4 setups) its input names another setup set."""
    net = SaNet(5, spec=WIDE_SPEC, phase_timeout=2)
    ms = net.members()
    setups = net.setups()
    net.block(setups[:4])
    while net.state.phase == "setup":
        net.block()
    s = net.state
    branch_a = dataclasses.replace(s, pending=s.pending + (setups[4],))
    deltas = {m: net.delta(m) for m in ms[:4]}
    stale = net.clients[ms[0]].input(deltas[ms[0]], branch_a, 10)
    assert stale.fields["setups"] == ids_digest(t.id for t in setups)
    fresh = [net.clients[m].input(deltas[m], s, 10) for m in ms[1:4]]
    assert code_of(net, stale) == errors.SA_WRONG_CONTEXT
    block_refuses(net, [stale] + fresh, errors.SA_WRONG_CONTEXT)
    net.block(fresh)
    for tx in fresh:
        assert tx.fields["setups"] == ids_digest(t.id for t in setups[:4])


def test_an_unmask_for_another_input_set_is_refused():
    net = SaNet(6, phase_timeout=2)
    net.block(net.setups())
    while net.state.phase == "setup":
        net.block()
    ins = net.inputs()
    s = net.state
    # what member 0 would see on a branch where only five inputs landed
    branch = dataclasses.replace(s, phase="unmask", pending=s.pending + tuple(ins[:5]))
    other = net.clients[net.members()[0]].unmask(branch)
    net.block(ins)
    while net.state.phase == "input":
        net.block()
    assert net.state.phase == "unmask"
    assert other.fields["inputs"] == ids_digest(t.id for t in ins[:5])
    assert code_of(net, other) == errors.SA_WRONG_CONTEXT
    good = net.unmasks([1])[0]
    assert good.fields["inputs"] == ids_digest(t.id for t in ins)
    net.chain.validate_tx(good)


def test_the_proof_cache_fingerprint_depends_on_the_roster():
    net = SaNet(6)
    net.block(net.setups())
    view = view_of(net.state, net.config)
    moved = SaView(view.round, view.roster[:-1], view.txs, view.input_closed)
    for kind in ("sa-input", "sa-unmask"):
        assert view.fingerprint(kind) != moved.fingerprint(kind)
        assert view.fingerprint(kind) == SaView(view.round, view.roster, view.txs, view.input_closed).fingerprint(kind)
    assert view.binding(SETUP) == roster_digest(net.members()) and moved.binding(SETUP) != view.binding(SETUP)
