"""Proof-of-work hash rates over one 189-byte header, all in the same run.

Prints: (a) the bare ``hashlib.sha256(prefix + nonce)`` loop, (b) our
``miner.pow.search`` (prefix state copied per nonce) and its ratio to (a),
(c) ``Miner`` with 1, 2, ... os.cpu_count() workers: total H/s, scaling over one
worker, H/s per worker and its ratio to (a). Then the goal of the ledger issue,
at least 1.3x the bare loop per worker (hashing the prefix once and copying its
state measured ~1.5x on quiet machines, FACTS.md), and whether this run met it.
Figures only; each row is the median of a few timed runs. On a loaded machine
the per-worker figures of several workers drop with the cores they do not get.
"""
from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.core import crypto  # noqa: E402
from learningchain.ledger.block import BlockHeader  # noqa: E402
from miner.pow import Miner, format_rate, search  # noqa: E402

IMPOSSIBLE = 0  # nothing is below it: every run does exactly its share of hashes
#: the ledger issue's goal: H/s per worker at least this times the bare loop's
GOAL = 1.3


def sample_header() -> BlockHeader:
    return BlockHeader(height=1, prev_hash="11" * 32, merkle_root="22" * 32, commitment_hash="33" * 32,
                       timestamp=1_700_000_000_000, target=1 << 236,
                       miner=crypto.PrivateKey.from_secret(1).public_hex)


def bare_loop(prefix: bytes, target: int, start: int, count: int) -> int:
    sha256, pack = hashlib.sha256, struct.Struct(">Q").pack
    target_bytes = target.to_bytes(32, "big")
    for n in range(start, start + count):
        if sha256(prefix + pack(n)).digest() < target_bytes:
            return n
    return count


def rate_of(fn, prefix: bytes, n: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(prefix, IMPOSSIBLE, 0, n)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _bare_worker(prefix: bytes, n: int, out) -> None:
    t0 = time.perf_counter()
    bare_loop(prefix, IMPOSSIBLE, 0, n)
    out.put(n / (time.perf_counter() - t0))


def bare_rate_concurrent(procs: int, prefix: bytes, n: int, repeats: int) -> float:
    """Per-process rate of the bare loop run in ``procs`` processes at once: the
    fair reference for a worker of an N-process Miner, which shares the machine
    (memory bandwidth, turbo, the other core's load) the same way."""
    ctx = mp.get_context("spawn")
    rates = []
    for _ in range(repeats):
        out = ctx.Queue()
        ps = [ctx.Process(target=_bare_worker, args=(prefix, n, out)) for _ in range(procs)]
        for p in ps:
            p.start()
        per = [out.get() for _ in ps]
        for p in ps:
            p.join()
        rates.append(statistics.mean(per))
    return statistics.median(rates)


def miner_rate(workers: int, prefix: bytes, seconds: float, repeats: int) -> float:
    with Miner(workers=workers) as m:
        m.mine(prefix, 1 << 250)  # start the pool outside the timing
        rates = []
        for _ in range(repeats):
            t_end = time.perf_counter() + seconds
            result = m.mine(prefix, IMPOSSIBLE, should_stop=lambda: time.perf_counter() >= t_end)
            rates.append(result.hashrate)
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, default=1 << 21, help="hashes per single-process run")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per Miner run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    prefix = sample_header().prefix()
    cpus = os.cpu_count() or 1
    print(f"SHA-256 proof of work, 181-byte prefix + 8-byte nonce; {cpus} CPU(s); "
          f"median of {args.repeats} runs")
    bare = rate_of(bare_loop, prefix, args.hashes, args.repeats)
    ours = rate_of(search, prefix, args.hashes, args.repeats)
    print(f"{'variant':<44}{'H/s':>14}{'vs bare':>10}")
    print(f"{'(a) bare sha256(prefix + nonce) loop':<44}{format_rate(bare):>14}{1.0:>9.2f}x")
    print(f"{'(b) miner.pow.search (prefix state .copy())':<44}{format_rate(ours):>14}{ours / bare:>9.2f}x")

    counts = sorted({1, *range(2, cpus + 1)})
    one = None
    ratios = {"(b) search": ours / bare}
    print(f"{'Miner workers':<44}{'total H/s':>14}{'scaling':>10}{'H/s/worker':>14}{'vs bare':>10}"
          f"{'bare x N procs':>16}{'vs that':>9}")
    for w in counts:
        rate = miner_rate(w, prefix, args.seconds, args.repeats)
        one = one or rate
        label = f"(c) Miner(workers={w})" + (" in-process" if w == 1 else " processes")
        per = rate / w
        # Against the bare loop run in as many processes at once (same load on the machine).
        bare_n = bare if w == 1 else bare_rate_concurrent(w, prefix, args.hashes, args.repeats)
        ratios[f"{w} worker{'s' if w > 1 else ''}"] = per / bare_n
        print(f"{label:<44}{format_rate(rate):>14}{rate / one:>9.2f}x{format_rate(per):>14}{per / bare:>9.2f}x"
              f"{format_rate(bare_n):>16}{per / bare_n:>8.2f}x")
    missed = [name for name, r in ratios.items() if r < GOAL]
    verdict = "met" if not missed else f"NOT met ({', '.join(f'{n}: {ratios[n]:.2f}x' for n in missed)})"
    print(f"goal: >= {GOAL:.1f}x the bare loop per worker (each worker against the bare loop run in as many\n"
          f"      processes at once), for search and every worker count: {verdict}")

if __name__ == "__main__":  # guarded: Miner's spawned workers import this module
    main()
