"""Memory per round of a node's ledger (issue 10 item 12).

A :class:`Ledger` with a SQLite store runs ``--rounds`` rounds in-process with
real blocks (proof of work at an easy target) and real signed txs: ``--nodes``
updates per round (weights of the model's shape, slightly moved), half in one
block, the rest in the block that closes the round (two blocks per round, as in
the demo), FedAvg, the digits MLP (2,410 parameters) or a wider one
(``--hidden 1500``: 112,510 parameters). Each mode runs in its own process and
prints, after ``--warmup`` rounds and at the end, the Python heap
(``tracemalloc``) and the resident set (``VmRSS``), and the growth per round
between the two:

* ``retained``: this code, main-chain blocks more than ``RETAIN_BLOCKS`` below
  the tip kept as header + tx ids, models of old rounds in the store;
* ``keep-all``: this code with retention disabled (``retain_blocks=None``);
* ``old``: the code at ``--old DIR`` (e.g. ``git archive <commit> | tar -x -C DIR``),
  the same script against the ledger before the fix.

Run: ``.venv/bin/python bench/memory.py [--rounds 300] [--hidden 1500] [--old DIR]``.
Prints figures, asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tracemalloc
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(mode: str, rounds: int, warmup: int, nodes: int, hidden: int | None) -> dict:
    import numpy as np

    from learningchain.core import crypto
    from learningchain.ledger.block import Block
    from learningchain.ledger.genesis import default_config, make_genesis
    from learningchain.node.chainstate import Ledger
    from learningchain.learning.models import default_spec
    from learningchain.node.store import Store
    from learningchain.ledger.tx import UpdateTx
    from miner.pow import search

    easy = 1 << 250
    spec = default_spec("digits", "mlp")
    if hidden:
        spec = replace(spec, hidden=(hidden,))
    cfg = replace(default_config(nodes, spec=spec, round_timeout=1000), initial_target=easy, pow_limit=easy,
                  retarget_window=10_000)
    genesis = make_genesis(cfg)
    keys = [crypto.PrivateKey.from_secret(7000 + i) for i in range(nodes)]
    rng = np.random.default_rng(0)
    tmp = tempfile.TemporaryDirectory()
    kw = {"retain_blocks": None} if mode == "keep-all" else {}
    ledger = Ledger(genesis, Store(tmp.name), **kw)
    chain = ledger.chain
    t = cfg.timestamp

    def block(txs):
        nonlocal t
        t += 500
        b = ledger.template(keys[0].public_hex, t)
        assert len(b.txs) == len(txs)
        nonce, _ = search(b.header.prefix(), b.header.target, 0, 1 << 40)
        b = Block(b.header.with_nonce(nonce), b.txs, b.commitment, b.config)
        assert ledger.submit_block(b, t).status == "connected"

    def one_round():
        model, digest = chain.model()
        r = chain.tip_state.round
        txs = [UpdateTx.create(k, r, digest, {n: (v + rng.normal(0, 0.01, v.shape)).astype(np.float32)
                                              for n, v in model.items()}, 100, timestamp=t) for k in keys]
        half = len(txs) // 2
        for tx in txs[:half]:
            ledger.submit_tx(tx)
        block(txs[:half])
        for tx in txs[half:]:
            ledger.submit_tx(tx)
        block(txs[half:])
        assert chain.tip_state.round == r + 1

    tracemalloc.start()
    marks = {}
    for i in range(1, rounds + 1):
        one_round()
        if i in (warmup, rounds):
            marks[i] = (tracemalloc.get_traced_memory()[0], rss_mib())
    (h0, r0), (h1, r1) = marks[warmup], marks[rounds]
    n = rounds - warmup
    params = sum(int(np.prod(s)) for _, s in chain.expected_shapes.values())
    return {"mode": mode, "params": params, "rounds": rounds, "height": chain.height,
            "heap_mib": round(h1 / 2**20, 1), "rss_mib": round(r1, 1),
            "heap_per_round_kb": round((h1 - h0) / n / 1024, 1), "rss_per_round_kb": round((r1 - r0) * 1024 / n, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=None, help="hidden width of the MLP (default: digits' 32)")
    ap.add_argument("--old", type=Path, default=None, help="a checkout of the code before the fix")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run(args.child, args.rounds, args.warmup, args.nodes, args.hidden)))
        return
    rows = []
    modes = [("retained", ROOT), ("keep-all", ROOT)] + ([("old", args.old.resolve())] if args.old else [])
    for mode, code in modes:
        cmd = [sys.executable, "-c", "import runpy, sys; sys.path.insert(0, sys.argv[1]); sys.argv = sys.argv[2:]; "
               "runpy.run_path(sys.argv[0], run_name='__main__')", str(code), str(Path(__file__).resolve()),
               "--child", mode, "--rounds", str(args.rounds), "--warmup", str(args.warmup),
               "--nodes", str(args.nodes)] + (["--hidden", str(args.hidden)] if args.hidden else [])
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=code)
        if out.returncode != 0:
            print(f"{mode}: failed\n{out.stderr[-2000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'mode':>9} {'params':>7} {'rounds':>6} {'height':>6} {'heap MiB':>9} {'RSS MiB':>8} "
          f"{'heap/round':>11} {'RSS/round':>10}")
    for r in rows:
        print(f"{r['mode']:>9} {r['params']:>7} {r['rounds']:>6} {r['height']:>6} {r['heap_mib']:>9} "
              f"{r['rss_mib']:>8} {r['heap_per_round_kb']:>8} KB {r['rss_per_round_kb']:>7} KB")
    print(f"growth per round measured between round {args.warmup} and round {args.rounds}")


if __name__ == "__main__":
    main()
