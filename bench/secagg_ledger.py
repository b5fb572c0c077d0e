"""Validating one secure-aggregation round on a fresh node: N members play a
whole round (setup, input, unmask) on one chain, then a second chain that has
never seen the txs validates the three blocks (cold: every signature, proof and
Feldman check paid), and a third validates them after its mempool took the txs
(warm: the checks cached per tx, as on a live node).

    .venv/bin/python bench/secagg_ledger.py [--n 10 30]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.ledger.chain import Chain  # noqa: E402
from learningchain.ledger.mempool import Mempool  # noqa: E402
from learningchain.learning.models import default_spec  # noqa: E402
from learningchain.ledger.tx import UpdateTx  # noqa: E402
from tests.helpers import now  # noqa: E402
from tests.secagg_net import SaNet  # noqa: E402


def one(n: int, spec=None) -> dict:
    net = SaNet(n, max_tx_bytes=200_000) if spec is None else SaNet(n, max_tx_bytes=200_000, spec=spec)
    t0 = time.perf_counter()
    closing, _ = net.full_round()
    played = time.perf_counter() - t0
    blocks = [net.chain.block_at(h) for h in range(1, closing.height + 1)]
    cold = Chain(net.genesis)
    t0 = time.perf_counter()
    for b in blocks:
        cold.add_block(b, now(b))
    cold_s = time.perf_counter() - t0
    warm, pool, blocks_s, pool_s = Chain(net.genesis), Mempool(), 0.0, 0.0
    for b in blocks:
        t0 = time.perf_counter()
        for tx in b.txs:
            pool.add(tx, warm)
        pool_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        pool.on_new_tip(warm, warm.add_block(b, now(b)))
        blocks_s += time.perf_counter() - t0
    assert cold.tip.hash == warm.tip.hash == closing.hash
    model, digest = net.chain.model()
    plain = UpdateTx.create(net.keys[0], 2, digest, model, 10).size
    per = sum(t.size for b in blocks for t in b.txs) / n
    return {"bytes_per_member": per, "plain_update_bytes": plain, "spec": net.config.model_spec.kind,
            "d": sum(a.size for a in model.values()),"n": n, "t": net.params.threshold, "blocks": len(blocks), "txs": sum(len(b.txs) for b in blocks),
            "play_s": played, "validate_cold_s": cold_s, "mempool_s": pool_s, "validate_warm_s": blocks_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10, 30])
    for spec in (None, default_spec("digits", "mlp")):
        for n in ap.parse_args().n:
            r = one(n, spec)
            print(f"{r['spec']} d={r['d']} N={r['n']:3d} t={r['t']:3d}: {r['txs']} txs in {r['blocks']} blocks; "
                  f"members built them in {r['play_s']:.2f} s; a fresh node validates the round in "
                  f"{r['validate_cold_s']:.3f} s cold, or {r['mempool_s']:.3f} s in its mempool + "
                  f"{r['validate_warm_s']:.3f} s for the blocks; {r['bytes_per_member']:.0f} bytes on chain per "
                  f"member ({r['bytes_per_member'] / r['plain_update_bytes']:.2f}x a plain update of "
                  f"{r['plain_update_bytes']} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
