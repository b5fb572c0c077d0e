"""The node's secure-aggregation journal (learningchain/node/secagg_journal.py) and
what a restarted member does with it: txs and reveals survive a restart, a torn
write is ignored, a corrupt journal refused with one line; a member that lost its
round secrets sends no input but still answers unmask from the chain alone."""
import json

import numpy as np
import pytest

from learningchain.core.errors import ConfigError
from learningchain.node.secagg_client import SecAggClient
from learningchain.node.secagg_journal import JOURNAL_FILE, SecAggJournal
from tests.secagg_net import SaNet


def test_journal_keeps_sent_txs_and_reveals_across_a_restart(tmp_path):
    j = SecAggJournal(tmp_path)
    j.reveals.setdefault(3, {})["02" + "ab" * 32] = "self"
    j.record(3, "sa-setup", "aa" * 32)
    j.record(3, "sa-unmask", "bb" * 32)
    again = SecAggJournal(tmp_path)
    assert again.was_sent(3, "sa-setup") == "aa" * 32 and again.was_sent(3, "sa-input") is None
    assert again.reveals == {3: {"02" + "ab" * 32: "self"}}
    assert not (tmp_path / (JOURNAL_FILE + ".tmp")).exists()


def test_journal_ignores_a_torn_write_and_refuses_a_corrupt_file(tmp_path):
    j = SecAggJournal(tmp_path)
    j.record(1, "sa-setup", "cc" * 32)
    tmp = tmp_path / (JOURNAL_FILE + ".tmp")
    tmp.write_text('{"version": 1, "rou')  # a crash mid-write: the rename never happened
    again = SecAggJournal(tmp_path)
    assert again.was_sent(1, "sa-setup") == "cc" * 32 and not tmp.exists()
    path = tmp_path / JOURNAL_FILE
    for bad in ("{not json", json.dumps({"version": 1, "rounds": {"1": {"sent": {}, "reveals": {"k": "both"}}}}),
                json.dumps({"version": 2, "rounds": {}})):
        path.write_text(bad)
        with pytest.raises(ConfigError, match="is corrupt") as info:
            SecAggJournal(tmp_path)
        assert "\n" not in str(info.value)


def _to_unmask(net: SaNet, lost: str):
    """Round 1 up to its unmask phase, every member set up, ``lost`` restarted after
    its setup (a new client: no secrets, the same key) and sending no input."""
    net.block(net.setups())
    while net.state.phase == "setup":
        net.block()
    key = next(k for k in net.keys if k.public_hex == lost)
    net.clients[lost] = SecAggClient(key, net.config)
    assert net.clients[lost].input(net.delta(lost), net.state, 10) is None  # lost secrets: no input
    deltas: dict = {}
    others = [m for m in net.members() if m != lost]
    net.block(net.inputs(others, deltas))
    while net.state.phase == "input":
        net.block()
    return others, deltas


def test_a_restarted_member_answers_unmask_from_the_chain_and_the_round_closes_exactly():
    net = SaNet(n=4, threshold=3)
    lost = net.members()[1]
    others, deltas = _to_unmask(net, lost)
    model, _ = net.chain.model()
    tx = net.clients[lost].unmask(net.state)
    assert tx is not None and all(s is not None for s in tx.self_shares)  # opened with its roster key
    assert tx.mask_shares == (None,)  # its own mask share is gone with its secrets
    block = net.block([tx] + net.unmasks(others))  # valid on chain (the block checks every tx)
    c = block.commitment
    assert c is not None and "failed" not in c, c
    assert c["secure_aggregation"]["counted"] == sorted(others)
    assert c["secure_aggregation"]["dropped"] == [lost]
    expected = net.expected_model(model, [deltas[m] for m in sorted(others)])
    got, _ = net.chain.model()
    assert all(np.array_equal(got[k], expected[k]) for k in expected)


def test_reveal_rule_holds_across_a_restart_with_the_journal(tmp_path):
    """A member that revealed a self share of v (journal) answers null for v's mask
    share after a restart, even where the new branch asks for it."""
    net = SaNet(n=4, threshold=3)
    lost = net.members()[1]
    _to_unmask(net, lost)
    other = net.members()[0]
    client = net.clients[other]
    j = SecAggJournal(tmp_path)
    client.journal = j.reveals
    j.reveals.setdefault(1, {})[lost] = "self"  # as if a branch where `lost` was counted got our self share
    j.save()
    restored = SecAggClient(next(k for k in net.keys if k.public_hex == other), net.config)
    restored.rounds = client.rounds
    restored.journal = SecAggJournal(tmp_path).reveals
    tx = restored.unmask(net.state)
    assert tx.mask_shares == (None,)  # `lost` is dropped here, but its self share went out before
