"""Selection, security and compression targets of issue 5, through the simulator.

1. energy: digits, 20 IID nodes of heterogeneous energy (profiles drawn from the
   seed), 10 rounds, each policy against ``all``: final accuracy, estimated
   energy, saving; target: within 1 point of ``all`` with >= 40 % less energy.
   Figure: out/bench/selection/energy.png (accuracy against cumulative energy).
2. security: same network with 4 sign-flip attackers (20 %), median rule:
   attacker updates selected per round for each policy.
3. compression: 10 nodes, q8 / topk / skip against uncompressed: bytes per
   update and accuracy after the same rounds; target q8 payload <= 0.3x raw
   float32 and accuracy within 1 point.

Prints figures only, no assertions. ``--quick``: 6 rounds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.experiments import compression_sweep, selection_sweep, write_sweep  # noqa: E402
from learningchain.simulator import SimConfig  # noqa: E402

POLICIES = ("all", "random-k", "top-k", "energy-aware")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="out/bench/selection")
    args = ap.parse_args()
    rounds = 6 if args.quick else 10
    out = Path(args.out)
    t0 = time.perf_counter()

    print(f"1. energy: digits, 20 IID nodes, {rounds} rounds, k = 8 (explore 4)")
    base = SimConfig(name="sel", nodes=20, rounds=rounds)
    sweep = selection_sweep(base, POLICIES, 8, {"explore": 4})
    ref = sweep["policies"]["all"]
    print(f"{'policy':<13} {'final':>7} {'gap':>7} {'energy J':>9} {'saving':>7} {'J to all-1pt':>12}  target")
    for policy, row in sweep["policies"].items():
        gap = ref["final"] - row["final"]
        met = "yes" if gap <= 0.01 and row["saving"] >= 0.40 else ("-" if policy == "all" else "NO")
        hit = row["energy_to_target_j"]
        print(f"{policy:<13} {row['final']:>7.4f} {gap:>+7.4f} {row['energy_j']:>9.2f} {row['saving']:>7.1%} "
              f"{'-' if hit is None else f'{hit:.2f}':>12}  {met}")
    paths = write_sweep(out / "energy", "selection", sweep)
    print(f"   wrote {', '.join(map(str, paths))}")

    print(f"\n2. security: 20 nodes, 4 sign-flip attackers, median, k = 8: attacker updates selected per round")
    byz = SimConfig(name="sel-byz", nodes=20, rounds=rounds, byzantine=4, attack="sign-flip", aggregator="median")
    sweep = selection_sweep(byz, POLICIES, 8, {"explore": 4})
    for policy, row in sweep["policies"].items():
        last = row["attackers_selected"][-3:]
        print(f"{policy:<13} final {row['final']:.4f}  attackers selected {row['attackers_selected']}  "
              f"(last 3 rounds: {sum(last)} of {3 * 4} possible)")
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
    print(f"\n{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
