"""Ledger throughput: how fast a validator checks a block of updates, and how
fast a node replays its store on start.

A block of 100 digits-MLP updates (W0 64x32, b0 32, W1 32x10, b1 10 float32;
~13 kB per tx) is validated by :class:`Chain` (a) *warm*, with every signature
already verified when the txs entered the mempool (the shared cache), and (b)
*cold*, verifying all 100 signatures, and (c) cold from the block's wire
bytes, JSON parsing and :meth:`Block.parse` included. The block closes the round (quorum 100),
so both include one FedAvg aggregation. Then a chain of such blocks is stored
and reopened: blocks/s of the replay (signatures are not re-checked on replay).

Run: ``.venv/bin/python bench/ledger.py [--txs 100] [--blocks 10]``.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.core import crypto  # noqa: E402
from learningchain.core.encoding import parse_json  # noqa: E402
from learningchain.ledger.chain import Chain  # noqa: E402
from learningchain.ledger.genesis import default_config, make_genesis  # noqa: E402
from learningchain.node.chainstate import Ledger  # noqa: E402
from learningchain.node.store import Store  # noqa: E402
from learningchain.ledger.tx import UpdateTx  # noqa: E402
from miner.pow import search  # noqa: E402

EASY = 1 << 250


def mined(block):
    nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 40)
    return type(block)(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)


def make_txs(chain: Chain, keys, rng) -> list[UpdateTx]:
    model, digest = chain.model()
    return [UpdateTx.create(k, chain.tip_state.round, digest,
                            {n: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32) for n, v in model.items()},
                            int(rng.integers(50, 500))) for k in keys]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--txs", type=int, default=100)
    ap.add_argument("--blocks", type=int, default=10)
    args = ap.parse_args()
    cfg = default_config(args.txs, round_timeout=1000)
    cfg = replace(cfg, initial_target=EASY, pow_limit=EASY, retarget_window=10_000)
    genesis = make_genesis(cfg)
    keys = [crypto.PrivateKey.from_secret(5000 + i) for i in range(args.txs)]
    rng = np.random.default_rng(0)

    builder = Chain(genesis)
    txs = make_txs(builder, keys, rng)
    block = mined(builder.build_block(keys[0].public_hex, txs, cfg.timestamp + 1000))
    now = block.header.timestamp

    rows = []
    wire = block.serialize()
    cases = (("block, signatures cached (mempool)", "warm"), ("block, cold (verify signatures)", "cold"),
             ("block, cold, from its wire bytes (JSON + parse)", "wire"))
    for label, case in cases:
        times = []
        for _ in range(5):
            chain = Chain(genesis)
            fresh = type(block).parse(block.to_dict())  # no cached ids/decodes from the builder
            if case == "warm":
                for tx in fresh.txs:
                    chain.validate_tx(tx)
            t0 = time.perf_counter()
            if case == "wire":  # what a node pays for a block it receives: parse it too
                fresh = type(block).parse(parse_json(wire))
            assert chain.add_block(fresh, now).status == "connected"
            times.append(time.perf_counter() - t0)
        best = min(times)
        rows.append((label, f"{args.txs / best:,.0f} txs/s", f"{best * 1000:.1f} ms/block"))

    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(genesis, Store(tmp))
        for i in range(args.blocks):
            for tx in make_txs(ledger.chain, keys, rng):
                ledger.submit_tx(tx)
            b = mined(ledger.template(keys[i % len(keys)].public_hex, ledger.chain.tip.header.timestamp + 1000))
            ledger.submit_block(b, b.header.timestamp)
        ledger.store.close()
        size_mb = (Path(tmp) / "chain.sqlite3").stat().st_size / 1e6
        t0 = time.perf_counter()
        again = Ledger(genesis, Store(tmp))
        dt = time.perf_counter() - t0
        assert again.chain.height == args.blocks
        again.store.close()
    rows.append((f"replay on reopen ({args.blocks} blocks x {args.txs} txs, {size_mb:.1f} MB)",
                 f"{args.blocks / dt:,.1f} blocks/s", f"{args.blocks * args.txs / dt:,.0f} txs/s"))

    print(f"ledger bench: {args.txs} digits-MLP updates per block ({txs[0].size:,} B/tx, "
          f"block {block.size / 1e6:.2f} MB), ECDSA backend {crypto.backend()}")
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'rate':>18}  {'':>16}")
    for label, a, b in rows:
        print(f"{label:<{width}}  {a:>18}  {b:>16}")


if __name__ == "__main__":
    main()
