"""Id prefixes (learningchain/node/web/lookup.py) at the size of a long chain:
one lookup of a block-hash prefix by the store's key range, against a LIKE scan
of the same table, and one tx-id prefix in the sorted tx index, against a scan
of the chain's tx index (a dict), plus the index's one-time build. Synthetic
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.node.store import Store  # noqa: E402
from learningchain.node.web.lookup import TxPrefixIndex  # noqa: E402


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


if __name__ == "__main__":
    main()
