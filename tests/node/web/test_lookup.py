"""The tx-id prefix index and ambiguous prefixes (:mod:`learningchain.node.web.lookup`)
on a stand-in block index: only the index's shape matters here (``main``,
``at(h).tx_ids``, ``tip``, ``on_main_chain``, ``tx_index``), and thousands of
ids are needed, more than a test chain can carry cheaply. The same index over a
real chain and a reorg: tests/node/web/test_pages.py."""
from __future__ import annotations

import hashlib
import threading

from learningchain.node.web import lookup


def _ids(n: int, salt: str) -> list[str]:
    return [hashlib.sha256(f"{salt}{i}".encode()).hexdigest() for i in range(n)]


class _Entry:
    def __init__(self, height: int, tx_ids: list[str], parent):
        self.height, self.tx_ids, self.parent = height, tx_ids, parent
        self.hash = f"{height:064x}"


class _Index:
    """A main chain of blocks carrying given tx ids."""

    def __init__(self):
        self.entries = [_Entry(0, [], None)]
        self.tx_index: dict[str, str] = {}

    @property
    def main(self):
        return [e.hash for e in self.entries]

    @property
    def tip(self):
        return self.entries[-1]

    def at(self, h):
        return self.entries[h]

    def on_main_chain(self, block_hash):
        return any(e.hash == block_hash for e in self.entries)

    def connect(self, tx_ids: list[str]) -> None:
        e = _Entry(len(self.entries), tx_ids, self.entries[-1])
        self.entries.append(e)
        for t in tx_ids:
            self.tx_index[t] = e.hash


class _Chain:
    def __init__(self):
        self.index = _Index()


class _Node:
    def __init__(self):
        self.chain, self.lock = _Chain(), threading.RLock()


def _held(idx: lookup.TxPrefixIndex) -> list[str]:
    return idx.ids + idx.recent


def test_catch_up_after_many_new_txs_keeps_no_duplicates_and_finds_every_id():
    node = _Node()
    index = node.chain.index
    old = _ids(3000, "old")
    for i in range(0, len(old), 100):
        index.connect(old[i:i + 100])
    idx = lookup.TxPrefixIndex()
    idx.catch_up(node.chain)
    assert idx.ids == sorted(old) and idx.recent == []
    for n, salt in ((72, "a"), (800, "b"), (3, "c")):  # beyond 64: the batch path; 3: one by one
        new = _ids(n, salt)
        index.connect(new[: n // 2] + old[:5])  # ids held already come back (as after a reorg)
        index.connect(new[n // 2:] + new[:2])
        before = list(idx.ids)
        idx.catch_up(node.chain)
        assert idx.ids == before  # under the lock the big list is never re-sorted, only the recent one
        held = _held(idx)
        assert len(held) == len(set(held)) == len(index.tx_index)
        assert idx.recent == sorted(idx.recent)
        for t in new + old[:50]:
            assert idx.starting(t[:12], 10) == [t]
    assert idx.merge(node.lock)
    assert idx.recent == [] and idx.ids == sorted(index.tx_index)
    assert all(idx.starting(t[:12], 10) == [t] for t in _ids(800, "b"))
    # a prefix shared by ids of both lists lists them in order, from both
    p = idx.ids[0][:1]
    assert idx.starting(p, 10 ** 6) == sorted(t for t in index.tx_index if t.startswith(p))


def test_prepare_merges_the_recent_ids_outside_the_lock_once_they_are_many():
    node = _Node()
    node.chain.index.connect(_ids(10, "x"))
    lookup.prepare_tx_index(node)
    idx = lookup._tx_indexes[node.chain]
    node.chain.index.connect(_ids(lookup.RECENT_MAX + 1, "y"))
    with node.lock:
        idx.catch_up(node.chain)
    assert len(idx.recent) == lookup.RECENT_MAX + 1
    lookup.prepare_tx_index(node)
    assert idx.recent == [] and idx.ids == sorted(node.chain.index.tx_index)


def test_starting_filters_while_scanning_so_dead_ids_never_hide_live_ones():
    """Ids a reorg took off the main chain stay in the index: 40 dead ids before
    the live ones of one prefix (``limit + 16`` would have found none)."""
    idx = lookup.TxPrefixIndex()
    ids = sorted(_ids(20000, "z"))
    p = max({t[:2] for t in ids}, key=lambda q: sum(t.startswith(q) for t in ids))
    same = [t for t in ids if t.startswith(p)]
    assert len(same) > 50
    idx.ids = ids
    live = set(same[40:])
    assert idx.starting(p, 10, live.__contains__) == same[40:50]
    assert idx.starting(p, 10 ** 6, live.__contains__) == same[40:]


def test_an_ambiguous_prefix_says_how_many_ids_up_to_more_than_the_bound():
    ten, eleven = _ids(10, "t"), _ids(11, "e")
    assert "names 3 ids" in str(lookup.AmbiguousId("tx id", "ab12", ten[:3]))
    exact = lookup.AmbiguousId("tx id", "ab12", ten)
    assert "names 10 ids" in str(exact) and not exact.more and exact.matches == ten
    more = lookup.AmbiguousId("tx id", "ab12", eleven)
    assert f"names more than {lookup.MAX_MATCHES} ids" in str(more) and more.more
    assert more.matches == eleven[:lookup.MAX_MATCHES]
