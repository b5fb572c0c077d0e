"""Id prefixes (learningchain/node/web/lookup.py) at the size of a long chain:
one lookup of a block-hash prefix by the store's key range, against a LIKE scan
of the same table, and one tx-id prefix in the sorted tx index, against a scan
of the chain's tx index (a dict), plus the index's one-time build, and its
catch-up after 72 and 800 new txs (the time under the node's lock, against the
whole-list re-sort it replaced) and the merge of recent ids outside the lock. Synthetic
ids (random hex) stand in for hashes; the block rows carry a short dummy body
(only the key matters here). A benchmark: it prints figures and asserts nothing.

    .venv/bin/python bench/explorer_lookup.py [--blocks 100000] [--txs 400000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.node.store import Store  # noqa: E402
from learningchain.node.web.lookup import RECENT_MAX, TxPrefixIndex  # noqa: E402


class _Blocks:
    """What TxPrefixIndex.catch_up reads of a chain (``chain.index``): the main
    chain's hashes, its entries by height (height, hash, parent, tx ids), the
    tip, the tx index and which hashes are on the main chain."""

    def __init__(self, tx_ids):
        self.index, self.main, self.entries, self.tx_index = self, [], [], {}
        self.connect([])
        self.connect(tx_ids)
        self.at = self.entries.__getitem__

    def on_main_chain(self, block_hash):
        return block_hash in self._on_main

    def connect(self, tx_ids):
        h = len(self.entries)
        e = SimpleNamespace(height=h, hash=f"{h:064x}", tx_ids=list(tx_ids), parent=self.entries[-1] if h else None)
        self.entries.append(e)
        self.main.append(e.hash)
        self._on_main = set(self.main)
        self.tx_index.update(dict.fromkeys(tx_ids, e.hash))
        self.tip = e


def timed(fn, repeat: int = 7) -> float:
    """Median seconds of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=100_000)
    ap.add_argument("--txs", type=int, default=400_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Store(tmp) as store:
        hashes = [os.urandom(32).hex() for _ in range(args.blocks)]
        db = store._db  # bench only: raw rows, no block to build
        db.execute("BEGIN")
        db.executemany("INSERT INTO blocks (hash, height, prev_hash, data, received_at) VALUES (?, ?, ?, ?, 0)",
                       [(h, i, "00" * 32, "{}") for i, h in enumerate(hashes)])
        db.execute("COMMIT")
        p = hashes[len(hashes) // 2][:8]
        ranged = timed(lambda: store.block_hashes_from(p, 10))
        scan = timed(lambda: db.execute("SELECT hash FROM blocks WHERE hash LIKE ? LIMIT 10", (p + "%",)).fetchall())
        print(f"block prefix, {args.blocks} stored blocks: key range {ranged * 1e6:.0f} us, "
              f"LIKE scan {scan * 1e3:.2f} ms ({scan / ranged:.0f}x)")

    tx_index = {os.urandom(32).hex(): "h" for _ in range(args.txs)}

    idx = TxPrefixIndex()
    held = timed(lambda: list(tx_index), repeat=3)  # what prepare_tx_index does under the node's lock
    build = timed(lambda: setattr(idx, "ids", sorted(list(tx_index))), repeat=3)
    q = next(iter(tx_index))[:8]
    found = timed(lambda: idx.starting(q, 10))
    linear = timed(lambda: [t for t in tx_index if t.startswith(q)], repeat=3)
    print(f"tx prefix, {args.txs} main-chain txs: sorted index {found * 1e6:.1f} us, dict scan "
          f"{linear * 1e3:.1f} ms ({linear / found:.0f}x); index built once in {build * 1e3:.0f} ms, "
          f"of which {held * 1e3:.1f} ms under the node's lock")

    base = sorted(tx_index)
    for n in (72, 800):
        caught, resorted = [], []
        for _ in range(5):
            chain = _Blocks(base)
            idx = TxPrefixIndex()
            idx.ids, idx.entry = base, chain.tip
            new = [os.urandom(32).hex() for _ in range(n)]
            chain.connect(new[: n // 2])
            chain.connect(new[n // 2:])
            t0 = time.perf_counter()
            idx.catch_up(chain)  # what a lookup runs under the node's lock
            caught.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sorted(set(base).union(new))  # what the catch-up did before (more than 64 new txs)
            resorted.append(time.perf_counter() - t0)
        c, r = statistics.median(caught), statistics.median(resorted)
        print(f"tx index catch-up, {n} new txs at {args.txs} ids: {c * 1e3:.2f} ms under the node's lock "
              f"(was a whole-list re-sort: {r * 1e3:.0f} ms, {r / c:.0f}x)")
    chain = _Blocks(base)
    idx = TxPrefixIndex()
    idx.ids, idx.entry = base, chain.tip
    chain.connect([os.urandom(32).hex() for _ in range(RECENT_MAX + 1)])
    idx.catch_up(chain)

    class _TimedLock:
        held = 0.0

        def __enter__(self):
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            self.held += time.perf_counter() - self.t0

    lock = _TimedLock()
    t0 = time.perf_counter()
    idx.merge(lock)
    total = time.perf_counter() - t0
    print(f"tx index merge of {RECENT_MAX + 1} recent ids into {args.txs}: {total * 1e3:.0f} ms, of which "
          f"{lock.held * 1e3:.2f} ms under the node's lock (once every {RECENT_MAX}+ new txs)")


if __name__ == "__main__":
    main()
