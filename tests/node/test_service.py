"""The Node's own threads: it trains, mines, closes rounds and evaluates them;
it restarts from its store."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from learningchain.core.errors import ValidationError
from learningchain.ledger.chain import Chain
from learningchain.node.web.explorer import round_detail, rounds_overview
from learningchain.node.threads import has_update, participate_once
from learningchain.node.service import Node
from tests.helpers import KEYS, next_block, now, tiny_config, update_tx
from tests.served import wait_for

HARDER = 1 << 241  # ~32k hashes a block: a few blocks a second in one Python worker


def config():
    return tiny_config(quorum=1, round_timeout=50, initial_target=HARDER, pow_limit=HARDER,
                       aggregation={"rule": "fedavg", "params": {"cap_factor": "2"}})


def write_partition(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3, size=(3, 4))
    for name, n in (("node0.npz", 90), ("test.npz", 60)):
        y = rng.integers(0, 3, size=n)
        X = (centers[y] + rng.normal(size=(n, 4))).astype(np.float32)
        np.savez(directory / name, X=X, y=y)
    return directory / "node0.npz"


def test_node_trains_mines_closes_rounds_and_evaluates(tmp_path):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", config(), dataset_path=data, mine=True, quiet=True)
    node.start()
    try:
        wait_for(lambda: node.chain.tip_state.round >= 3 and {1, 2} <= set(node.metrics), seconds=30,
                 what="two rounds to close and be evaluated")
        r1 = round_detail(node, 1)
        assert r1["status"] == "closed" and r1["accepted"] and r1["updates"][0]["address"] == node.address
        assert r1["metrics"]["accuracy"] > 0.5  # learnable blobs: G(1) beats chance (1/3)
        assert node.status()["metrics"] and node.status()["mining"] is True
    finally:
        node.stop()
    closed = {r for r, _height, _hash in node.chain.round_closes()}
    again = Node(tmp_path / "n", config(), dataset_path=data, quiet=True)  # replays the store, same key
    try:
        assert again.chain.height == node.chain.height and again.address == node.address
        assert again.metrics == {}
        again.start()  # the evaluator rebuilds every closed round's metrics from the chain
        wait_for(lambda: closed <= set(again.metrics), seconds=30, what="metrics of every closed round")
        compared = closed & set(node.metrics)  # the first node may stop before evaluating the last
        assert compared >= {1, 2}
        for r in compared:
            assert again.metrics[r] == node.metrics[r]  # same G(r), same test set
        assert {d["round"] for d in rounds_overview(again)[0] if d["metrics"]} >= closed
    finally:
        again.stop()


def test_own_update_refused_after_a_reorg_is_trained_again(tmp_path):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(quorum=2, round_timeout=50), dataset_path=data, quiet=True)
    try:
        b1 = next_block(node.chain, [update_tx(node.chain, KEYS[0]), update_tx(node.chain, KEYS[1])])
        assert node.submit_block(b1, relay=False) == "connected"  # round 1 closed: G1
        side = Chain(node.genesis)  # a heavier branch closing round 1 with other updates: G1'
        s1 = next_block(side, [update_tx(side, KEYS[2]), update_tx(side, KEYS[3])])
        side.add_block(s1, now(s1))
        s2 = next_block(side)
        real = node.participant.make_update

        def train_during_reorg(*args):
            tx = real(*args)  # trained on G1 ...
            for b in (s1, s2):  # ... while the heavier branch arrives
                node.submit_block(b, relay=False)
            return tx
        node.participant.make_update = train_during_reorg
        participate_once(node)
        assert node.chain.tip.hash == s2.hash and node.refused["tx-wrong-base-model"] == 1
        assert not has_update(node, 2)
        node.participant.make_update = real
        participate_once(node)  # trains round 2 again, from G1'
        mine = [t for t in node.ledger.mempool if t.sender == node.pubkey]
        assert len(mine) == 1 and mine[0].round == 2
        assert mine[0].base == node.chain.tip_state.model_digest == side.tip_state.model_digest
    finally:
        node.stop()


def test_the_evaluator_reads_only_new_closes_and_follows_a_reorg(tmp_path):
    from learningchain.node.threads import evaluate_closed_rounds
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(quorum=2, round_timeout=50), dataset_path=data, quiet=True)
    try:
        b1 = next_block(node.chain, [update_tx(node.chain, KEYS[0]), update_tx(node.chain, KEYS[1])])
        assert node.submit_block(b1, relay=False) == "connected"  # round 1 closed: G1
        assert evaluate_closed_rounds(node) == 1 and node.metric_digests[1] == node.chain.state_of(b1.hash).model_digest
        for _ in range(5):  # no new close: nothing re-read, nothing re-evaluated
            steps = node.chain.index_steps
            assert evaluate_closed_rounds(node) == 0 and node.chain.index_steps == steps
        side = Chain(node.genesis)  # a heavier branch closing round 1 with other updates: G1'
        s1 = next_block(side, [update_tx(side, KEYS[2]), update_tx(side, KEYS[3])])
        side.add_block(s1, now(s1))
        s2 = next_block(side)
        for b in (s1, s2):
            node.submit_block(b, relay=False)
        assert node.chain.tip.hash == s2.hash
        assert evaluate_closed_rounds(node) == 1  # round 1's model changed: measured again
        assert node.metric_digests[1] == side.tip_state.model_digest
        assert evaluate_closed_rounds(node) == 0
    finally:
        node.stop()


def test_the_miners_template_goes_stale_when_the_quorum_arrives_not_before(tmp_path):
    """Event-driven templates (issue 13): a tx makes our miner's template stale
    at once if the template carried none, or if the mempool now closes the round;
    a tx that does not reach the quorum leaves a template with txs alone."""
    from miner.pow import Miner
    cfg = tiny_config(quorum=3, round_timeout=50, allow_list=[k.public_hex for k in KEYS[:3]])
    node = Node(tmp_path / "n", cfg, quiet=True)
    node.miner = Miner(workers=1)  # not searching: the test drives the template by hand
    try:
        node.own_template = node.new_template()[1]
        assert not node.own_template.txs
        epoch = node.template_epoch
        node.submit_tx(update_tx(node.chain, KEYS[0]))
        assert node.template_epoch == epoch + 1  # the empty template is stale: a tx is waiting
        node.own_template = node.new_template()[1]
        assert len(node.own_template.txs) == 1 and node.own_template.commitment is None
        node.submit_tx(update_tx(node.chain, KEYS[1]))
        assert node.template_epoch == epoch + 1  # 2 of 3: no close yet, the template stays
        node.own_template = node.new_template()[1]
        node.submit_tx(update_tx(node.chain, KEYS[2]))
        assert node.template_epoch == epoch + 2  # the quorum is in: rebuilt at once
        closing = node.new_template()[1]
        assert len(closing.txs) == 3 and closing.commitment is not None  # the block that carries it closes
    finally:
        node.stop()


def test_a_tip_change_wakes_the_learner_and_holds_the_evaluator(tmp_path):
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", config(), dataset_path=data, quiet=True)  # not started: no threads
    try:
        seen = node.tip_seq
        node.learner_idle.set()
        node.submit_block(next_block(node.chain))
        assert node.tip_seq == seen + 1 and not node.learner_idle.is_set()  # evaluator waits for the learner
        t0 = time.monotonic()
        node.wait_tip(30, seen)  # the tip moved after `seen`: no wake-up is lost, it returns at once
        assert time.monotonic() - t0 < 10
    finally:
        node.stop()


def test_a_peers_block_on_our_tip_holds_our_miner_until_it_connects(tmp_path):
    from miner.pow import Miner
    node = Node(tmp_path / "n", tiny_config(), quiet=True)
    node.miner = Miner(workers=1)
    try:
        epoch = node.template_epoch
        node.submit_block(next_block(node.chain), peer="http://127.0.0.1:9")
        assert node.miner_hold_until > time.monotonic() - 1 and node.template_epoch > epoch
        assert node.miner_hold_seq == node.tip_seq - 1  # held on the tip it replaced: released by its move
        bad = next_block(node.chain)
        bad = type(bad)(bad.header, bad.txs, {"round": 99}, bad.config)  # valid header, wrong commitment
        with pytest.raises(ValidationError):
            node.submit_block(bad, peer="http://127.0.0.1:9")
        assert node.miner_hold_until == 0.0  # an invalid body releases the miner at once
        t0 = time.monotonic()
        node.wait_miner_hold()
        assert time.monotonic() - t0 < 5
    finally:
        node.stop()


def test_own_update_whose_round_a_reorg_reopened_later_is_offered_again_unchanged(tmp_path):
    """Competing closing blocks (two miners, issue 13): we train round 2 on one,
    a heavier branch where round 1 is still open wins meanwhile (tx-round-not-open),
    then it closes round 1 with the same updates: the same signed update is
    offered again at once, never retrained and never lost for the round."""
    data = write_partition(tmp_path)
    node = Node(tmp_path / "n", tiny_config(quorum=2, round_timeout=50), dataset_path=data, quiet=True)
    try:
        ups = [update_tx(node.chain, KEYS[0]), update_tx(node.chain, KEYS[1])]
        b1 = next_block(node.chain, ups)
        assert node.submit_block(b1, relay=False) == "connected"  # round 1 closed: G1
        g1 = node.chain.tip_state.model_digest
        side = Chain(node.genesis)  # heavier, round 1 still open
        for _ in range(2):
            e = next_block(side)
            side.add_block(e, now(e))
        side_blocks = side.main_chain(1, 2)
        real = node.participant.make_update
        made = []

        def train_during_reorg(*args):
            made.append(real(*args))  # round 2 on G1 ...
            for b in side_blocks:  # ... while the heavier branch arrives
                node.submit_block(b, relay=False)
            return made[-1]
        node.participant.make_update = train_during_reorg
        participate_once(node)
        assert node.chain.tip_state.round == 1 and node.refused["tx-round-not-open"] == 1
        assert node.own_updates.retry is not None and node.own_updates.retry[0].id == made[0].id
        c3 = next_block(side, ups)  # the winning branch closes round 1 with the same updates
        assert node.submit_block(c3, relay=False) == "connected"
        assert node.chain.tip_state.round == 2 and node.chain.tip_state.model_digest == g1
        node.participant.make_update = real
        participate_once(node)
        assert len(made) == 1  # not trained again
        assert [t.id for t in node.ledger.mempool if t.sender == node.pubkey] == [made[0].id]
    finally:
        node.stop()


def test_await_txs_returns_when_the_pushed_tx_arrives(tmp_path):
    """A compact block missing a tx waits for its author's push before fetching
    it (relay.PUSH_WAIT_S): Node.await_txs is woken by the tx entering the mempool."""
    import threading
    node = Node(tmp_path / "n", tiny_config(), quiet=True)
    try:
        tx = update_tx(node.chain, KEYS[0])
        pusher = threading.Timer(0.05, lambda: node.submit_tx(tx))
        t0 = time.monotonic()
        pusher.start()
        node.await_txs([tx.id], 30)
        assert node.lookup_tx(tx.id) is not None and time.monotonic() - t0 < 20  # woken, not timed out
        t1 = time.monotonic()
        node.await_txs(["ab" * 32], 0.2)  # never comes: returns at its deadline
        assert time.monotonic() - t1 >= 0.2
    finally:
        node.stop()


def test_a_tx_held_for_the_next_round_is_not_wanted_again(tmp_path):
    """/inv answers: a tx held in EarlyTxs is a tx we have (its body is not asked twice)."""
    node = Node(tmp_path / "n", tiny_config(quorum=1), quiet=True)
    try:
        later = Chain(node.genesis)
        b1 = next_block(later, [update_tx(later, KEYS[0])])
        later.add_block(b1, now(b1))
        early = update_tx(later, KEYS[1])  # round 2, while round 1 is open here
        with node.lock:
            assert node.early.insert(early, node.chain.tip_state.round, "http://127.0.0.1:9")
        assert node.has_tx(early.id)
    finally:
        node.stop()


def test_a_block_claiming_an_easy_target_does_not_hold_or_stale_anything(tmp_path):
    """Review of issue 13: a header's proof of work against the target it claims
    is free (target 2^256 - 1); only a header that meets the target our chain
    requires may stop our miner, and a refused one makes no template stale."""
    from miner.pow import Miner
    from learningchain.ledger.block import make_block
    cfg = tiny_config(initial_target=1 << 240, pow_limit=1 << 255)
    node = Node(tmp_path / "n", cfg, quiet=True)
    node.miner = Miner(workers=1)
    try:
        good = next_block(node.chain)
        h = good.header
        fake = make_block(height=h.height, prev_hash=h.prev_hash, timestamp=h.timestamp, target=(1 << 256) - 1,
                          miner=h.miner, txs=(), commitment=None)  # any nonce passes its own target
        assert fake.header.check_pow()
        epoch = node.template_epoch
        for _ in range(20):
            with pytest.raises(ValidationError):
                node.submit_block(fake, peer="http://127.0.0.1:9")
        assert node.miner_hold_until == 0.0 and node.template_epoch == epoch
    finally:
        node.stop()


def test_a_test_file_anywhere_is_the_evaluation_set_and_none_is_said_once(tmp_path, capsys):
    """run --test FILE: a node's evaluation set need not sit next to its data (nor
    need the node have data); without one the node says so in one line at start."""
    data = write_partition(tmp_path)
    held = tmp_path / "elsewhere"
    held.mkdir()
    (tmp_path / "test.npz").rename(held / "mine.npz")
    node = Node(tmp_path / "a", config(), dataset_path=data, test_path=held / "mine.npz", port=5901)
    with np.load(held / "mine.npz") as z:
        assert node.test_set[0].tolist() == z["X"].tolist()
    bare = Node(tmp_path / "b", config(), dataset_path=data, port=5902)
    assert bare.test_set is None
    validator = Node(tmp_path / "c", config(), test_path=held / "mine.npz", port=5903)
    assert validator.participant is None and validator.test_set is not None
    for n in (node, bare, validator):
        n.start()
        n.stop()
    lines = [line for line in capsys.readouterr().out.splitlines() if "no test set" in line]
    assert len(lines) == 1 and "[5902] no test set (--test FILE, or test.npz next to --data): this node does " \
                               "not evaluate the global model" in lines[0]
    np.savez(held / "wide.npz", X=np.zeros((5, 7), np.float32), y=np.zeros(5, np.int64))
    with pytest.raises(Exception, match="7 features per sample, the genesis model takes 4"):
        Node(tmp_path / "d", config(), test_path=held / "wide.npz", quiet=True)
