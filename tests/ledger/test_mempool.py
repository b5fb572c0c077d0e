"""Mempool: validated txs only, dedup, bounds, deterministic selection, reorgs."""
from dataclasses import replace

import pytest

from learningchain.core import errors
from learningchain.ledger.chain import Chain
from learningchain.core.errors import ValidationError
from learningchain.ledger.mempool import Mempool
from tests.helpers import KEYS, MINER2, extend, next_block, now, tiny_genesis, update_tx


def test_accepts_once_and_refuses_invalid():
    chain, pool = Chain(tiny_genesis()), Mempool()
    tx = update_tx(chain, KEYS[0])
    assert pool.add(tx, chain) == "accepted" and pool.add(tx, chain) == "known"
    assert len(pool) == 1 and tx.id in pool and pool.total_bytes == tx.size
    forged = replace(update_tx(chain, KEYS[1]), signature=tx.signature)
    with pytest.raises(ValidationError) as exc:
        pool.add(forged, chain)
    assert exc.value.code == errors.TX_BAD_SIGNATURE
    with pytest.raises(ValidationError) as exc:
        pool.add(update_tx(chain, KEYS[0], num_samples=3), chain)
    assert exc.value.code == errors.TX_DUPLICATE_SENDER
    with pytest.raises(ValidationError) as exc:
        pool.add(update_tx(chain, KEYS[2], round=2), chain)
    assert exc.value.code == errors.TX_ROUND_NOT_OPEN



def test_a_removed_tx_frees_its_senders_slot():
    """The slot index follows removals (a dropped tx's sender may send again)."""
    chain, pool = Chain(tiny_genesis()), Mempool()
    first, second = update_tx(chain, KEYS[0]), update_tx(chain, KEYS[0], num_samples=3)
    pool.add(first, chain)
    pool.remove(first.id)
    assert pool.add(second, chain) == "accepted" and len(pool) == 1
    with pytest.raises(ValidationError) as exc:
        pool.add(first, chain)
    assert exc.value.code == errors.TX_DUPLICATE_SENDER

def test_signature_verified_once_shared_with_chain():
    chain, pool = Chain(tiny_genesis()), Mempool()
    tx = update_tx(chain, KEYS[0])
    pool.add(tx, chain)
    assert tx in chain.verified
    calls = []
    original = type(tx).verify_signature
    type(tx).verify_signature = lambda self: calls.append(self.id) or original(self)
    try:
        b = next_block(chain, pool.select(chain))
        chain.add_block(b, now(b))
    finally:
        type(tx).verify_signature = original
    assert calls == []


def test_bounds_refuse_with_named_reason():
    chain = Chain(tiny_genesis())
    txs = [update_tx(chain, k) for k in KEYS[:3]]
    pool = Mempool(max_count=2)
    pool.add(txs[0], chain), pool.add(txs[1], chain)
    with pytest.raises(ValidationError) as exc:
        pool.add(txs[2], chain)
    assert exc.value.code == errors.MEMPOOL_FULL
    pool = Mempool(max_bytes=txs[0].size + txs[1].size - 1)
    pool.add(txs[0], chain)
    with pytest.raises(ValidationError) as exc:
        pool.add(txs[1], chain)
    assert exc.value.code == errors.MEMPOOL_FULL


def test_full_mempool_evicts_lower_priority_for_an_allow_listed_or_own_update():
    """Issue 10 item 6: strangers fill an open network's pool; the node's own update
    evicts one of them. In a permissioned network an allow-listed sender outranks
    nobody there (all are listed): first come, first served, mempool-full."""
    chain = Chain(tiny_genesis())  # open: no allow-list
    strangers = [update_tx(chain, k) for k in KEYS[:3]]
    own = update_tx(chain, KEYS[3])
    pool = Mempool(max_count=3)
    for t in strangers:
        pool.add(t, chain)
    with pytest.raises(ValidationError) as exc:
        pool.add(update_tx(chain, KEYS[4]), chain)  # an equal: refused
    assert exc.value.code == errors.MEMPOOL_FULL
    pool.priority_senders.add(KEYS[3].public_hex)
    assert pool.add(own, chain) == "accepted" and own.id in pool and len(pool) == 3 and pool.evicted == 1
    victim = max(strangers, key=lambda t: t.id)  # among equals the largest id goes
    assert victim.id not in pool
    listed = Chain(tiny_genesis(allow_list=[k.public_hex for k in KEYS[:4]]))
    pool = Mempool(max_count=2)
    pool.add(update_tx(listed, KEYS[0]), listed), pool.add(update_tx(listed, KEYS[1]), listed)
    with pytest.raises(ValidationError) as exc:
        pool.add(update_tx(listed, KEYS[2]), listed)
    assert exc.value.code == errors.MEMPOOL_FULL and pool.evicted == 0


def test_selection_is_sorted_and_bounded():
    chain, pool = Chain(tiny_genesis(quorum=10)), Mempool()
    txs = [update_tx(chain, k) for k in KEYS[:6]]
    for tx in reversed(txs):
        pool.add(tx, chain)
    sel = pool.select(chain)
    assert [t.id for t in sel] == sorted(t.id for t in txs)
    small = pool.select(chain, 4096 + 2 * (txs[0].size + 1 + 512))
    assert len(small) == 2 and [t.id for t in small] == sorted(t.id for t in txs)[:2]


def test_new_tip_removes_included_and_late():
    chain, pool = Chain(tiny_genesis()), Mempool()
    txs = [update_tx(chain, k) for k in KEYS[:4]]
    for tx in txs:
        pool.add(tx, chain)
    b = next_block(chain, pool.select(chain)[:1])
    pool.on_new_tip(chain, chain.add_block(b, now(b)))
    assert len(pool) == 3 and b.txs[0].id not in pool
    b = next_block(chain, pool.select(chain)[:2])  # reaches quorum 3: round 1 closes
    pool.on_new_tip(chain, chain.add_block(b, now(b)))
    assert len(pool) == 0 and pool.total_bytes == 0  # the 4th update is now late


def test_reorg_puts_transactions_back():
    g = tiny_genesis()
    chain, pool = Chain(g), Mempool()
    tx = update_tx(chain, KEYS[0])
    pool.add(tx, chain)
    b1 = next_block(chain, pool.select(chain))
    pool.on_new_tip(chain, chain.add_block(b1, now(b1)))
    assert len(pool) == 0
    other = Chain(g)
    fork = extend(other, 2, MINER2, dt=700)
    results = [chain.add_block(b, now(b)) for b in fork]
    assert results[-1].status == "reorg"
    for r in results:
        pool.on_new_tip(chain, r)
    assert tx.id in pool and chain.find_tx(tx.id) is None
    assert [t.id for t in pool.select(chain)] == [tx.id]


def test_early_txs_hold_the_next_round_only_until_it_opens():
    from learningchain.ledger.mempool import EarlyTxs
    chain = Chain(tiny_genesis())
    early = EarlyTxs(capacity=2)
    nxt = update_tx(chain, KEYS[0], round=2)
    assert early.hold(nxt, open_round=1, peer="http://p") is True
    assert early.hold(update_tx(chain, KEYS[1], round=3), open_round=1, peer=None) is False  # too far
    assert early.take(1) == [] and len(early) == 1
    assert early.take(2) == [(nxt, "http://p")] and len(early) == 0
    for k in KEYS[:3]:
        early.hold(update_tx(chain, k, round=2), open_round=1, peer=None)
    assert len(early) == 2  # bounded: the oldest is dropped


def test_a_round_closed_without_a_valid_tx_we_held_is_reported():
    """Issue 10 item 11: no rule makes a miner include anyone, so a node reports
    what it saw left out: a valid tx it held for a block or more that the round
    closed without (GET /status not_included, GET /rounds/<r> not_included)."""
    chain, pool = Chain(tiny_genesis()), Mempool()
    censored = update_tx(chain, KEYS[0])
    pool.add(censored, chain)
    for _ in range(2):  # blocks that could have carried it, and did not
        b = next_block(chain)
        pool.on_new_tip(chain, chain.add_block(b, now(b)))
    late = update_tx(chain, KEYS[4])
    pool.add(late, chain)  # arrived just before the close: the miner may not have had it
    b = next_block(chain, [update_tx(chain, k) for k in KEYS[1:4]])
    assert b.commitment is not None
    pool.on_new_tip(chain, chain.add_block(b, now(b)))
    assert pool.not_included == {1: [{"id": censored.id, "sender": KEYS[0].public_hex}]}
    assert pool.left_out_report() == {"rounds": {"1": [KEYS[0].public_hex]}, "total": 1}
    assert len(pool) == 0  # both are late now
