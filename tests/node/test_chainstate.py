"""Ledger (chainstate): chain + mempool + store, replay on reopen (ties, side
blocks, blocks set aside), a refused store write, deep blocks and old models
read back from the store, the mempool across restarts, verification of a
stored chain."""
import json
import sqlite3

import pytest

from learningchain.core import errors
from learningchain.core.errors import ValidationError
from learningchain.ledger.block_index import RETAIN_MODELS
from learningchain.ledger.tx import UpdateTx
from learningchain.node.chainstate import Ledger, verify_store
from learningchain.node.store import Store
from tests.helpers import KEYS, MINER, mine, now, tiny_genesis, update_tx


def grow(ledger, n_blocks, updates_per_block=1):
    """Mine n blocks through the ledger's template, each carrying fresh updates."""
    out, k = [], 0
    for _ in range(n_blocks):
        for _ in range(updates_per_block):
            key = KEYS[k % len(KEYS)]
            k += 1
            try:
                ledger.submit_tx(update_tx(ledger.chain, key))
            except Exception:
                pass  # sender already has an update in this round
        block = mine(ledger.template(MINER.public_hex, ledger.chain.tip.header.timestamp + 1000))
        assert ledger.submit_block(block, now(block)).status == "connected"
        out.append(block)
    return out


def test_reopen_resumes_same_tip_and_model(tmp_path):
    g = tiny_genesis()
    store = Store(tmp_path)
    ledger = Ledger(g, store)
    blocks = grow(ledger, 8)
    assert ledger.chain.tip_state.round >= 3  # rounds closed along the way
    tip, digest, rnd = ledger.chain.tip.hash, ledger.chain.model()[1], ledger.chain.tip_state.round
    store.close()
    again = Ledger(g, Store(tmp_path))
    assert again.chain.tip.hash == tip == blocks[-1].hash
    assert again.chain.model()[1] == digest and again.chain.tip_state.round == rnd
    assert again.chain.find_tx(blocks[0].txs[0].id)[1] == blocks[0].hash
    again.store.close()


def test_side_blocks_are_stored_and_replayed(tmp_path):
    g = tiny_genesis()
    ledger = Ledger(g, Store(tmp_path))
    grow(ledger, 2, 0)
    from learningchain.ledger.chain import Chain
    from tests.helpers import extend, MINER2
    fork = extend(Chain(g), 1, MINER2, dt=1500)[0]
    assert ledger.submit_block(fork, now(fork)).status == "side"
    ledger.store.close()
    again = Ledger(g, Store(tmp_path))
    assert fork.hash in again.chain and again.chain.height == 2
    again.store.close()


def _one_block_forks(g, main):
    """A one-block fork (other miner) on every main-chain block, genesis first:
    the deeper the fork, the less cumulative work."""
    from learningchain.ledger.chain import Chain
    from tests.helpers import MINER2, next_block
    out = []
    for h in range(len(main)):
        side = Chain(g)
        for b in main[:h]:
            side.add_block(b, now(b))
        out.append(next_block(side, miner=MINER2, dt=1500))
    return out


def test_evicted_side_blocks_leave_memory_and_store(tmp_path):
    g = tiny_genesis()
    ledger = Ledger(g, Store(tmp_path), max_side_blocks=3)
    main = grow(ledger, 8, 0)
    forks = _one_block_forks(g, main)
    for b in forks:
        assert ledger.submit_block(b, now(b), solicited=True).status == "side"  # caps, not admission
        assert ledger.chain.side_blocks <= 3 and ledger.store.count() == len(ledger.chain)
    kept, gone = forks[-3:], forks[:-3]
    assert all(ledger.store.has(b.hash) for b in kept) and not any(ledger.store.has(b.hash) for b in gone)
    assert ledger.chain.evicted_total == len(gone) and ledger.chain.tip == main[-1]
    ledger.store.close()
    again = Ledger(g, Store(tmp_path), max_side_blocks=3)
    assert again.evicted_on_open == 0 and again.store.count() == 1 + len(main) + 3
    assert again.chain.tip == main[-1] and not any(b.hash in again.chain for b in gone)
    again.store.close()
    # a smaller cap on reopen trims the store once every block has been replayed
    smaller = Ledger(g, Store(tmp_path), max_side_blocks=1)
    assert smaller.evicted_on_open == 2 and smaller.store.count() == 1 + len(main) + 1
    assert forks[-1].hash in smaller.chain and smaller.chain.tip == main[-1]
    smaller.store.close()
    assert verify_store(tmp_path, g).ok


def test_ledger_submit_and_template(tmp_path):
    ledger = Ledger(tiny_genesis(), Store(tmp_path))
    tx = update_tx(ledger.chain, KEYS[0])
    assert ledger.submit_tx(tx) == "accepted" and ledger.submit_tx(tx) == "known"
    block = mine(ledger.template(MINER.public_hex, ledger.chain.tip.header.timestamp + 1000))
    assert block.txs == (tx,)
    ledger.submit_block(block, now(block))
    assert len(ledger.mempool) == 0
    with pytest.raises(ValidationError, match="tx-replay"):  # confirmed: a replay
        ledger.submit_tx(tx)
    assert ledger.store.count() == 2


def test_verify_store_finds_the_broken_block(tmp_path):
    g = tiny_genesis()
    ledger = Ledger(g, Store(tmp_path))
    blocks = grow(ledger, 5)
    ledger.store.close()
    report = verify_store(tmp_path, g)
    assert report.ok and report.blocks == 6 and report.tip == blocks[-1].hash, report.describe()
    # corrupt the signature of the tx in block 3 (same header hash: ids do not cover signatures)
    victim = blocks[2]
    doc = victim.to_dict()
    other = update_tx(ledger.chain, KEYS[5])
    doc["txs"][0]["signature"] = other.signature
    db = sqlite3.connect(tmp_path / "chain.sqlite3")
    db.execute("UPDATE blocks SET data = ? WHERE hash = ?", (json.dumps(doc, sort_keys=True), victim.hash))
    db.commit()
    db.close()
    report = verify_store(tmp_path, g)
    assert not report.ok and report.error["height"] == 3 and report.error["hash"] == victim.hash
    assert report.error["code"] == errors.BLOCK_BAD_TX and errors.TX_BAD_SIGNATURE in report.error["detail"]
    assert report.height == 2 and "INVALID at height 3" in report.describe()
    assert verify_store(tmp_path / "nowhere").error["code"] == "no-store"
    assert not verify_store(tmp_path, tiny_genesis(network="x")).ok


def test_reopen_keeps_the_first_seen_tip_of_an_equal_work_tie_at_another_height(tmp_path):
    """Targets 2^k - 1 make work exact powers of two: branch A (2 blocks, the
    second at half the target) and branch B (3 blocks at the initial target)
    have equal work at heights 2 and 3. B arrives first, so B stays the tip, and
    a replay in arrival order (not by height, which would meet A's tip first at
    height 2 and keep it) resumes at B's tip."""
    from learningchain.ledger.chain import Chain
    from tests.helpers import EASY, MINER2, T0
    g = tiny_genesis(retarget_window=2, target_block_ms=1000, initial_target=EASY - 1, pow_limit=EASY - 1)

    def branch(miner, stamps):
        scratch, out = Chain(g), []
        for ts in stamps:
            b = mine(scratch.build_block(miner.public_hex, [], T0 + ts))
            scratch.add_block(b, T0 + ts)
            out.append(b)
        return out
    a = branch(MINER, [1000, 2000])          # height 2 retargets: 1000 of 2000 ms -> target / 2
    b = branch(MINER2, [2000, 4000, 5000])   # 2000 of 2000 ms -> target unchanged
    assert a[1].header.target == (EASY - 1) // 2 and b[2].header.target == EASY - 1
    ledger = Ledger(g, Store(tmp_path))
    for blk in b + a:
        ledger.submit_block(blk, T0 + 10_000)
    assert ledger.chain.work_of(a[1].hash) == ledger.chain.work_of(b[2].hash)
    assert ledger.chain.tip.hash == b[2].hash
    ledger.store.close()
    again = Ledger(g, Store(tmp_path))
    assert again.chain.tip.hash == b[2].hash and again.chain.height == 3
    again.store.close()


def test_a_stored_block_that_no_longer_replays_is_set_aside_and_the_node_starts(tmp_path, caplog):
    """Issue 10 item 1: store replay must never brick a node over a block it once
    accepted. A block written under older rules (here: another target), its
    descendant and a corrupt row are moved to the set_aside table with one log
    line; the valid blocks replay and the ledger starts."""
    import logging
    from learningchain.ledger.chain import Chain
    from tests.helpers import next_block, rebuild
    g = tiny_genesis()
    chain = Chain(g)
    b = next_block(chain)
    old_rules = rebuild(b, target=b.header.target >> 1)  # valid PoW, not today's target
    child = rebuild(b, prev_hash=old_rules.hash, height=2, timestamp=b.header.timestamp + 1000)
    with Store(tmp_path) as store:
        store.put(g)
        store.put(b)
        store.put(old_rules)
        store.put(child)
        store._db.execute("INSERT INTO blocks VALUES ('ff', 9, '00', '{\"[[[\": 1', 0)")  # a corrupt row
    with caplog.at_level(logging.WARNING, logger="learningchain.node.chainstate"):
        ledger = Ledger(g, Store(tmp_path))
    assert ledger.chain.tip.hash == b.hash and ledger.set_aside_on_open == 3
    lines = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(lines) == 1 and "3 stored block(s)" in lines[0] and errors.BLOCK_BAD_TARGET in lines[0]
    assert ledger.store.count() == 2 and ledger.store.set_aside_count() == 3
    ledger.store.close()
    assert verify_store(tmp_path, g).ok
    again = Ledger(g, Store(tmp_path))  # nothing left to set aside
    assert again.set_aside_on_open == 0 and again.chain.tip.hash == b.hash


def _big_genesis():
    from learningchain.learning.models import ModelSpec  # updates of ~3 KB: a block needs new pages
    return tiny_genesis(model=ModelSpec("softmax", "classification", 400, 3, (), 0, 1, 8, 0.1).to_dict(),
                        max_tx_bytes=100_000)


def test_disk_full_refuses_the_block_and_leaves_memory_unchanged(tmp_path):
    """Issue 10 item 7: a real SQLITE_FULL (PRAGMA max_page_count at the current
    size) while storing a block: refused as store-write-failed, the chain in
    memory unchanged (tip, height, tx index, mempool), no transaction left open;
    once space is back the same block is accepted and the store replays."""
    g = _big_genesis()
    ledger = Ledger(g, Store(tmp_path))
    grow(ledger, 2)
    tx = update_tx(ledger.chain, KEYS[7])
    ledger.submit_tx(tx)
    block = mine(ledger.template(MINER.public_hex, ledger.chain.tip.header.timestamp + 1000))
    db = ledger.store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    tip, height = ledger.chain.tip.hash, ledger.chain.height
    with pytest.raises(ValidationError) as exc:
        ledger.submit_block(block, now(block))
    assert exc.value.code == errors.STORE_WRITE_FAILED and "full" in exc.value.detail
    assert ledger.chain.tip.hash == tip and ledger.chain.height == height and block.hash not in ledger.chain
    assert ledger.chain.find_tx(tx.id) is None and tx.id in ledger.mempool
    assert not ledger.store.has(block.hash) and not db.in_transaction
    with pytest.raises(ValidationError):  # not remembered as invalid: refused again for the same reason
        ledger.submit_block(block, now(block))
    db.execute("PRAGMA max_page_count = 1073741823")  # space freed
    assert ledger.submit_block(block, now(block)).status == "connected"
    ledger.store.close()
    reopened = Ledger(g, Store(tmp_path))
    assert reopened.chain.tip.hash == block.hash and reopened.set_aside_on_open == 0
    reopened.store.close()
    assert verify_store(tmp_path, g).ok


# --- memory: deep blocks and old models live in the store (issue 10 item 12) ------------

def _retained(tmp_path, n_blocks=14, retain=2, **genesis):
    g = tiny_genesis(**genesis)
    ledger = Ledger(g, Store(tmp_path), retain_blocks=retain)
    full = Ledger(g)  # the same blocks, everything in memory
    blocks = grow(ledger, n_blocks)
    for b in blocks:
        full.submit_block(b, now(b))
    return g, ledger, full, blocks


def test_deep_blocks_are_dropped_from_memory_and_read_back_from_the_store(tmp_path):
    g, ledger, full, blocks = _retained(tmp_path)
    chain = ledger.chain
    deep = [chain.index.entries[b.hash] for b in blocks[:-3]]
    assert all(e.body is None and e.state.model is None and e.state.pending == () for e in deep)
    assert all(chain.index.entries[b.hash].body is not None for b in blocks[-2:])
    kept = [chain.index.entries[b.hash] for b in blocks[-2:]]
    if kept[1].state.round_start != kept[1].height:  # same round: one model object, not copies
        assert kept[0].state.model is kept[1].state.model
    same_round = [e for e in chain.index.entries.values() if e.state.model is not None
                  and e.state.round == chain.tip_state.round and e.height >= chain.tip_state.round_start]
    assert same_round and all(e.state.model is chain.tip_state.model for e in same_round)
    # the API's reads still answer, byte for byte, from the store
    assert [b.serialize() for b in chain.main_chain(0, 100)] == [b.serialize() for b in [g, *blocks]]
    assert chain.block_at(3).serialize() == blocks[2].serialize()
    tx = blocks[0].txs[0]
    assert chain.find_tx(tx.id)[0].serialize() == tx.serialize()
    # models of old rounds and full states of old blocks come back identical
    for b in blocks:
        assert chain.model(b.hash)[1] == full.chain.model(b.hash)[1]
        assert chain.state_of(b.hash) == full.chain.state_of(b.hash)
    for r in range(1, chain.tip_state.round):
        assert chain.round_summary(r) == full.chain.round_summary(r)
    assert chain.round_closes() == [(b.commitment["round"], b.height, b.hash)
                                     for b in blocks if b.commitment]
    rows = chain.round_rows(2)
    assert min(rows) == 2 and rows == full.chain.round_rows(2)
    for b in blocks:
        if b.commitment and b.commitment["round"] >= 2:
            row = rows[b.commitment["round"]]
            assert (row["block"], row["closed_at"], row["commitment"]) == (b.hash, b.height, b.commitment)
    assert sum(r["updates"] for r in chain.round_rows(1).values()) == sum(len(b.txs) for b in blocks)


def test_peek_model_reads_old_models_without_touching_the_model_lru(tmp_path):
    """The explorer's reads (Chain.peek_model) leave the chain's model LRU, which
    consensus works from, exactly as it was: same digests in the same order,
    however many old rounds are read; and give the models Chain.model gives."""
    from learningchain.core.encoding import weights_digest
    g, ledger, full, blocks = _retained(tmp_path, n_blocks=24)
    chain = ledger.chain
    closing = [b for b in blocks if b.commitment]
    assert len(closing) > RETAIN_MODELS
    before = list(chain.index.models)
    assert before  # the retired rounds remembered theirs
    for b in closing + blocks:
        got = chain.peek_model(b.hash)
        assert got is not None and weights_digest(got) == full.chain.model(b.hash)[1]
    assert list(chain.index.models) == before
    assert chain.peek_model("00" * 32) is None
    txs = {}  # the summary hands out the txs of the (deep) blocks it read: the explorer reads none twice
    summary = chain.round_summary(1, txs)
    assert summary == full.chain.round_summary(1) and summary["updates"]
    assert {i: t.serialize() for i, t in txs.items()} == {u["id"]: full.chain.find_tx(u["id"])[0].serialize()
                                                          for u in summary["updates"]}
    chain.model(closing[0].hash)  # consensus' own read of an old round does remember it
    assert list(chain.index.models)[-1] == chain.state_of(closing[0].hash).model_digest
    ledger.store._db.execute("DELETE FROM models")  # not at hand: None, never a recomputation
    chain.index.models.clear()
    steps = chain.index_steps
    assert chain.peek_model(closing[0].hash) is None and chain.index_steps == steps
    assert list(chain.index.models) == []


def test_an_old_model_missing_from_the_store_is_recomputed_from_the_blocks(tmp_path):
    g, ledger, full, blocks = _retained(tmp_path)
    ledger.store._db.execute("DELETE FROM models")
    ledger.chain.index.models.clear()
    closing = [b for b in blocks if b.commitment][0]
    got, digest = ledger.chain.model(closing.hash)
    assert digest == closing.commitment["model_digest"] == full.chain.model(closing.hash)[1]
    from learningchain.core.encoding import weights_digest
    assert weights_digest(got) == digest


def test_a_fork_from_deep_below_the_tip_reorganises_like_a_chain_that_kept_everything(tmp_path):
    """A heavier branch forking 10 blocks below the tip (5 x the retained depth):
    its first block needs the retired fork point's full state, rebuilt from the store."""
    from learningchain.ledger.chain import Chain
    from tests.helpers import MINER2
    g, ledger, full, blocks = _retained(tmp_path)
    fork_at = blocks[3]
    side = Chain(g)
    for b in blocks[:4]:
        side.add_block(b, now(b))
    branch = []
    for i in range(len(blocks) - 4 + 2):
        txs = [update_tx(side, KEYS[(i + j) % len(KEYS)], shift=0.25) for j in range(1)]
        try:
            b = mine(side.build_block(MINER2.public_hex, txs, side.tip.header.timestamp + 900))
        except ValidationError:
            b = mine(side.build_block(MINER2.public_hex, [], side.tip.header.timestamp + 900))
        side.add_block(b, now(b))
        branch.append(b)
    assert branch[0].header.prev_hash == fork_at.hash
    # solicited: as headers-first sync fetches a heavier branch (unrequested, a
    # branch this far below the tip is refused as block-side-work-too-low)
    statuses = [ledger.submit_block(b, now(b), solicited=True).status for b in branch]
    for b in branch:
        full.submit_block(b, now(b), solicited=True)
    assert "reorg" in statuses and ledger.chain.tip.hash == side.tip.hash == full.chain.tip.hash
    assert ledger.chain.tip_state == side.tip_state == full.chain.tip_state
    assert ledger.chain.model()[1] == side.model()[1]


def test_the_mempool_survives_a_restart_and_is_revalidated(tmp_path):
    g = tiny_genesis(quorum=12, round_timeout=100)
    ledger = Ledger(g, Store(tmp_path))
    grow(ledger, 2)
    waiting = update_tx(ledger.chain, KEYS[5])
    assert ledger.submit_tx(waiting) == "accepted"
    late = update_tx(ledger.chain, KEYS[6])
    assert ledger.submit_tx(late) == "accepted"
    ledger.store.close()
    again = Ledger(g, Store(tmp_path))
    assert {t.id for t in again.mempool} == {waiting.id, late.id} and again.mempool_restored == 2
    # a block includes them: the stored mempool follows
    block = mine(again.template(MINER.public_hex, again.chain.tip.header.timestamp + 1000))
    assert again.submit_block(block, now(block)).status == "connected"
    again.store.close()
    third = Ledger(g, Store(tmp_path))
    assert len(third.mempool) == 0 and third.mempool_dropped == 0
    assert [r[0] for r in third.store.mempool_rows()] == []
    # a stored tx that no longer validates (here: forged) is dropped on load
    forged = waiting.to_dict() | {"timestamp": waiting.timestamp + 1}
    from learningchain.core.encoding import canonical_json
    third.store._db.execute("INSERT INTO mempool (txid, data, added_at) VALUES (?, ?, 0)",
                            (UpdateTx.parse(forged).id, canonical_json(forged).decode()))
    third.store.close()
    fourth = Ledger(g, Store(tmp_path))
    assert len(fourth.mempool) == 0 and fourth.mempool_dropped == 1 and fourth.store.mempool_rows() == []


def test_a_tx_evicted_from_a_full_mempool_leaves_the_stored_mempool_too(tmp_path):
    """The mirror follows evictions by a higher-priority newcomer, so the table stays
    as bounded as the mempool and an evicted tx is not offered again at restart."""
    g = tiny_genesis()  # open: no allow-list, strangers can fill the pool
    ledger = Ledger(g, Store(tmp_path), max_mempool_txs=3)
    strangers = [update_tx(ledger.chain, k) for k in KEYS[:3]]
    for t in strangers:
        assert ledger.submit_tx(t) == "accepted"
    ledger.mempool.priority_senders.add(KEYS[3].public_hex)
    own = update_tx(ledger.chain, KEYS[3])
    assert ledger.submit_tx(own) == "accepted"
    victim = max(strangers, key=lambda t: t.id)
    stored = {r[0] for r in ledger.store.mempool_rows()}
    assert stored == {t.id for t in ledger.mempool} and victim.id not in stored and own.id in stored
    ledger.store.close()
