"""ct-phantoms: generation time, digest stability, and what the NumPy models reach.

Prints (asserts nothing):

* seconds to generate the default 2,000 slices (32x32, 40 angles) and the mean
  milliseconds per slice, plus the SHA-256 of two generations in this process
  (equal: same seed, same bytes in one environment);
* the correlation and mean absolute difference between clean phantoms and
  their reconstructions (the artifacts);
* final accuracy of ``Simulation`` runs on the ledger core, with the
  centralized and local-only baselines: MLP and softmax, 4 IID nodes x 10
  rounds; MLP, 10 nodes Dirichlet 0.5 x 10 rounds. Chance is 1/3.

Run: ``.venv/bin/python bench/ct_phantoms.py [--seed 0]``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from learningchain.learning import data, phantoms
    from learningchain.sim.config import SimConfig
    from learningchain.sim.simulator import Simulation

    n = data.SYNTHETIC_SAMPLES
    t = time.perf_counter()
    X, y = phantoms.generate(n, args.seed)
    took = time.perf_counter() - t
    again, _ = phantoms.generate(n, args.seed)
    d1, d2 = (hashlib.sha256(a.tobytes()).hexdigest()[:16] for a in (X, again))
    print(f"generate {n} slices {phantoms.SIZE}x{phantoms.SIZE}, {phantoms.ANGLES} angles: {took:.2f} s "
          f"({1000 * took / n:.2f} ms per slice); sha256 {d1} then {d2} ({'equal' if d1 == d2 else 'DIFFER'})")
    clean, _ = phantoms.generate(100, args.seed, clean=True)
    corr = np.mean([np.corrcoef(c.ravel(), r.ravel())[0, 1] for c, r in zip(clean, X[:100])])
    print(f"clean vs reconstructed (100 slices): correlation {corr:.3f}, mean |diff| "
          f"{np.abs(clean - X[:100]).mean():.3f}; classes {np.bincount(y).tolist()}")
    for label, kw in (("MLP, 4 nodes IID", {"nodes": 4, "model": "mlp"}),
                      ("softmax, 4 nodes IID", {"nodes": 4, "model": "softmax"}),
                      ("MLP, 10 nodes Dirichlet 0.5", {"nodes": 10, "model": "mlp", "split": "dirichlet",
                                                       "alpha": 0.5})):
        t = time.perf_counter()
        res = Simulation(SimConfig(rounds=10, dataset="ct-phantoms", seed=args.seed, **kw)).run()
        base = res["baselines"]
        print(f"{label}, 10 rounds: federated {res['final']['accuracy']:.4f}, centralized "
              f"{base['centralized']['accuracy']:.4f}, local-only mean {base['local_only']['accuracy']:.4f} "
              f"({time.perf_counter() - t:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
