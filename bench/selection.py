"""Selection, security and compression targets of issue 5, through the simulator.

1. energy: digits, 20 IID nodes of heterogeneous energy (profiles drawn from the
   seed), 10 rounds, each policy against ``all``, for seeds 0, 1 and 2: final
   accuracy, estimated energy, saving; target: within 1 point of ``all`` with
   >= 40 % less energy. top-k explores 4 of its 8; energy-aware uses its
   defaults (explore 1, max_age ceil(2n/k) = 5, tolerance 4).
   Figure: out/bench/selection/energy/energy.png (seed 0, accuracy against
   cumulative energy).
2. security: same network with 4 sign-flip attackers (20 %), median rule:
   attacker updates selected per round for each policy, seeds 0, 1 and 2.
3. compression: 10 nodes, q8 / topk / skip against uncompressed: bytes per
   update and accuracy after the same rounds; target q8 payload <= 0.3x raw
   float32 and accuracy within 1 point; then where the bytes of one q8 tx go
   on the wire (base64 inside canonical JSON, array objects, signed envelope)
   and what crosses the socket: the tx body gzip-encoded by the node's own
   ``learningchain.node.p2p.wire.gzip_encode`` (peers gzip every body over 1 KiB).

Prints figures only, no assertions. ``--quick``: 6 rounds, seed 0 only.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.learning import compression  # noqa: E402
from learningchain.core.crypto import PrivateKey  # noqa: E402
from learningchain.core.encoding import canonical_json, weights_digest  # noqa: E402
from learningchain.sim.experiments import compression_sweep, selection_sweep, write_sweep  # noqa: E402
from learningchain.learning.models import build_model  # noqa: E402
from learningchain.sim.simulator import SimConfig  # noqa: E402
from learningchain.ledger.tx import UpdateTx  # noqa: E402
from learningchain.node.p2p.wire import gzip_encode  # noqa: E402

POLICIES = ("all", "random-k", "top-k", "energy-aware")
PARAMS = {"top-k": {"explore": 4}, "energy-aware": {}}


def wire_breakdown(cfg: SimConfig) -> dict:
    """Bytes of one signed uncompressed tx and one q8 tx of ``cfg``'s model, split
    into binary payload, base64 text, JSON around the arrays and the envelope,
    and the body as a peer sends it (canonical JSON, gzip-encoded)."""
    base = build_model(cfg.model_spec()).initial_weights()
    rng = np.random.default_rng(0)
    w = OrderedDict((k, (v + rng.normal(0, 0.05, v.shape)).astype(np.float32)) for k, v in base.items())
    key, digest = PrivateKey.from_secret(7), weights_digest(base)
    metrics = {"accuracy": 0.953125, "loss": 0.123456}
    enc, _ = compression.compress(w, base, "q8", rng)
    txs = {"float32": UpdateTx.create(key, 3, digest, w, 68, metrics=metrics, timestamp=1_700_000_000_000),
           "q8": UpdateTx.create_compressed(key, 3, digest, enc, "q8", 68, metrics=metrics,
                                            timestamp=1_700_000_000_000)}
    out = {"raw": sum(a.nbytes for a in w.values())}
    for name, tx in txs.items():
        arrays = [a for obj in tx.weights.values() for a in ([obj] if "data" in obj else obj.values())]
        weights_json = len(canonical_json(tx.weights))
        b64 = sum(len(a["data"]) for a in arrays)
        out[name] = {"payload": compression.payload_bytes(tx.weights), "base64": b64,
                     "array_json": weights_json - b64, "envelope": tx.size - weights_json, "tx": tx.size,
                     "gzip": len(gzip_encode(canonical_json(tx.to_dict())))}
    return out


def energy_table(sweep: dict) -> None:
    ref = sweep["policies"]["all"]
    print(f"{'policy':<13} {'final':>7} {'gap':>7} {'energy J':>9} {'saving':>7} {'J to all-1pt':>12}  target")
    for policy, row in sweep["policies"].items():
        gap = ref["final"] - row["final"]
        met = "yes" if gap <= 0.01 and row["saving"] >= 0.40 else ("-" if policy == "all" else "NO")
        hit = row["energy_to_target_j"]
        print(f"{policy:<13} {row['final']:>7.4f} {gap:>+7.4f} {row['energy_j']:>9.2f} {row['saving']:>7.1%} "
              f"{'-' if hit is None else f'{hit:.2f}':>12}  {met}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="out/bench/selection")
    args = ap.parse_args()
    rounds = 6 if args.quick else 10
    out = Path(args.out)
    t0 = time.perf_counter()

    seeds = (0,) if args.quick else (0, 1, 2)
    met = {}
    for seed in seeds:
        print(f"1. energy, seed {seed}: digits, 20 IID nodes, {rounds} rounds, k = 8")
        sweep = selection_sweep(SimConfig(name="sel", nodes=20, rounds=rounds, seed=seed), POLICIES, 8,
                                per_policy=PARAMS)
        energy_table(sweep)
        ref = sweep["policies"]["all"]["final"]
        for policy, row in sweep["policies"].items():
            met.setdefault(policy, []).append(ref - row["final"] <= 0.01 and row["saving"] >= 0.40)
        if seed == seeds[0]:
            paths = write_sweep(out / "energy", "selection", sweep)
            print(f"   wrote {', '.join(map(str, paths))}")
    print("energy target met in " + ", ".join(f"{p} {sum(m)}/{len(m)}" for p, m in met.items() if p != "all")
          + " seeds")

    print("\n2. security: 20 nodes, 4 sign-flip attackers, median, k = 8: attacker updates selected per round")
    for seed in seeds:
        byz = SimConfig(name="sel-byz", nodes=20, rounds=rounds, byzantine=4, attack="sign-flip",
                        aggregator="median", seed=seed)
        sweep = selection_sweep(byz, POLICIES, 8, per_policy=PARAMS)
        for policy, row in sweep["policies"].items():
            last = row["attackers_selected"][-3:]
            print(f"seed {seed} {policy:<13} final {row['final']:.4f}  attackers selected {row['attackers_selected']}  "
                  f"(last 3 rounds: {sum(last)} of {3 * 4} possible)")
        if seed == seeds[0]:
            write_sweep(out / "security", "selection", sweep)

    print(f"\n3. compression: digits, 10 IID nodes, {rounds} rounds")
    comp = compression_sweep(SimConfig(name="cmp", nodes=10, rounds=rounds), ("q8", "topk", "skip"),
                             topk_fraction=0.1, skip_threshold=0.85)
    plain = comp["schemes"]["none"]["final"]
    print(f"{'scheme':<7} {'final':>7} {'gap':>7} {'tx bytes':>9} {'x plain tx':>10} {'payload/raw f32':>15} "
          f"{'energy J':>9} {'skips':>5}")
    for scheme, row in comp["schemes"].items():
        print(f"{scheme:<7} {row['final']:>7.4f} {plain - row['final']:>+7.4f} {row['mean_tx_bytes']:>9.0f} "
              f"{row['vs_uncompressed_tx']:>10.3f} {row['payload_vs_raw']:>15.3f} {row['energy_j']:>9.2f} "
              f"{sum(row['skipped']):>5}")
    q8 = comp["schemes"]["q8"]
    print(f"q8 target (payload <= 0.3x raw float32 = {comp['raw_float32_bytes']} B, accuracy within 1 point): "
          f"{'met' if q8['payload_vs_raw'] <= 0.3 and plain - q8['final'] <= 0.01 else 'NOT met'}")
    write_sweep(out / "compression", "compression", comp)
    wire = wire_breakdown(SimConfig(nodes=10))
    raw = wire["raw"]
    print(f"\n   one tx on the wire (raw float32 weights = {raw} B):")
    print(f"   {'':<8} {'payload':>8} {'base64':>7} {'array JSON':>10} {'envelope':>8} {'tx':>6} "
          f"{'payload/raw':>11} {'tx/raw':>6} {'gzip':>6} {'gzip/raw':>8}")
    for name in ("float32", "q8"):
        b = wire[name]
        print(f"   {name:<8} {b['payload']:>8} {b['base64']:>7} {b['array_json']:>10} {b['envelope']:>8} "
              f"{b['tx']:>6} {b['payload'] / raw:>11.3f} {b['tx'] / raw:>6.3f} {b['gzip']:>6} "
              f"{b['gzip'] / raw:>8.3f}")
    print(f"   q8 on the wire: base64 alone costs 4/3 x 8 bits = 0.333x raw float32; the q8 tx is "
          f"{wire['q8']['tx'] / raw:.2f}x raw float32 ({wire['q8']['tx'] / wire['float32']['tx']:.2f}x the float32 tx)")
    print(f"   on the socket (gzip, what peers send): float32 tx {wire['float32']['gzip'] / raw:.2f}x raw, "
          f"q8 tx {wire['q8']['gzip'] / raw:.2f}x raw (issue 5 target: <= 0.3x): "
          f"{'met' if wire['q8']['gzip'] / raw <= 0.3 else 'NOT met'}")
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
