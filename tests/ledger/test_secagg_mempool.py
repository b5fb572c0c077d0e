"""The mempool and the early-tx holding under secure aggregation: the same
contextual rules, one tx per (sender, round, type), templates of the open
phase only, and txs whose phase is not open held until it opens."""
import numpy as np
import pytest

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.ledger.mempool import EarlyTxs, Mempool
from learningchain.ledger.secagg_round import ids_digest
from learningchain.ledger.secagg_tx import SecAggTx
from learningchain.node.secagg_client import SecAggClient
from tests.helpers import next_block, now
from tests.secagg_net import SaNet


def test_mempool_admits_by_the_chain_rules_one_per_type_and_templates_follow_the_phase():
    net = SaNet(10)
    pool = Mempool()
    setups = net.setups()
    for tx in setups:
        assert pool.add(tx, net.chain) == "accepted"
    twin = SecAggClient(net.keys[0], net.config).setup(1, net.members(), net.state.model_digest)
    with pytest.raises(ValidationError) as exc:
        pool.add(twin, net.chain)
    assert exc.value.code == errors.TX_DUPLICATE_SENDER
    chosen = pool.select(net.chain)
    assert {t.id for t in chosen} == {t.id for t in setups}
    b = next_block(net.chain, chosen)
    pool.on_new_tip(net.chain, net.chain.add_block(b, now(b)))
    assert len(pool) == 0 and net.state.phase == "input"
    ins = net.inputs()
    for tx in ins[:6]:
        pool.add(tx, net.chain)
    assert {t.kind for t in pool.select(net.chain)} == {"sa-input"}
    b = next_block(net.chain, pool.select(net.chain))
    pool.on_new_tip(net.chain, net.chain.add_block(b, now(b)))
    for tx in ins[6:]:
        pool.add(tx, net.chain)
    b = next_block(net.chain, pool.select(net.chain))
    pool.on_new_tip(net.chain, net.chain.add_block(b, now(b)))
    assert net.state.phase == "unmask" and len(pool) == 0
    un = net.unmasks()
    for tx in un:
        pool.add(tx, net.chain)
    b = next_block(net.chain, pool.select(net.chain))
    assert b.commitment is not None and b.commitment["round"] == 1
    pool.on_new_tip(net.chain, net.chain.add_block(b, now(b)))
    assert net.state.round == 2 and len(pool) == 0


def test_a_tx_whose_phase_is_not_open_is_refused_then_held_until_it_opens():
    net = SaNet(10)
    setups = net.setups()
    net.block(setups[:9])  # quorum 10: setup still open
    lone = net.members()[9]
    key = next(k for k in net.keys if k.public_hex == setups[0].sender)
    fields = {"input": SecAggTx.encode_input(np.zeros(15, np.uint32)), "num_samples": 1, "complaints": [],
              "setups": ids_digest(t.id for t in setups)}  # the setup set it will be checked under
    early = SecAggTx.create(key, "sa-input", 1, net.state.model_digest, fields)
    with pytest.raises(ValidationError) as exc:
        Mempool().add(early, net.chain)
    assert exc.value.code == errors.SA_PHASE_NOT_OPEN
    held = EarlyTxs()
    assert held.hold(early, net.state.round, "peer", net.config, net.chain.expected_shapes)
    assert held.hold(setups[9], net.state.round, "peer", net.config, net.chain.expected_shapes)
    assert len(held) == 2  # one per (sender, type)
    assert {t.id for t, _ in held.take(net.state.round)} == {early.id, setups[9].id}
    assert lone == setups[9].sender
    net.block([setups[9]])
    assert net.state.phase == "input"
    net.chain.validate_tx(early)  # now admissible
