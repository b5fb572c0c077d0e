"""Sample-level DP-SGD on digits: final accuracy against the record-level
epsilon (delta 1e-5, add/remove-one, the whole training), for each setup
against non-private training of the same model (same run, same seed) and the
centralized baseline (learning/baselines.py). Every run is the in-process
simulator (learningchain/sim/simulator.py) with the default DP recipe of
``--dp-mode sample`` (learning/models/dpsgd.py ``Recipe``), 30 rounds.

Prints one table (the ratio and difference to non-private) and writes the
curves to docs/figures/dp_accuracy_vs_epsilon.png. Asserts nothing.
``--quick``: epsilon 8 only, 10 rounds, no figure.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.sim.config import SimConfig  # noqa: E402
from learningchain.sim.results import plot_dp_curves  # noqa: E402
from learningchain.sim.simulator import Simulation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIGURE = ROOT / "docs" / "figures" / "dp_accuracy_vs_epsilon.png"
EPSILONS = (1, 2, 4, 8)
#: (model, nodes, split); the first three are issue 12's targets, the rest reported honestly
SETUPS = (("softmax", 4, "iid"), ("softmax", 10, "iid"), ("mlp", 4, "iid"),
          ("mlp", 10, "iid"), ("softmax", 10, "dirichlet"), ("mlp", 10, "dirichlet"))
TARGETS = {("softmax", 4, "iid"), ("softmax", 10, "iid"), ("mlp", 4, "iid")}


def name_of(model: str, nodes: int, split: str) -> str:
    return f"{model} {nodes} {'IID' if split == 'iid' else 'Dirichlet 0.5'}"


def accuracy(cfg: SimConfig, baselines: bool = False):
    res = Simulation(cfg).run(with_baselines=baselines)
    return res["final"]["accuracy"], res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="epsilon 8 only, 10 rounds, no figure")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)
    rounds = args.rounds or (10 if args.quick else 30)
    epsilons = (8,) if args.quick else EPSILONS
    start = time.perf_counter()
    curves = {}
    print(f"digits, FedAvg, {rounds} rounds, seed 0, DP-SGD recipe of --dp-mode sample, delta 1e-5")
    head = f"{'setup':<24} {'central':>8} {'no DP':>7} " + " ".join(f"{'eps ' + str(e):>8}" for e in epsilons)
    print(head + f" {'eps8-noDP':>10} {'eps8/noDP':>10} {'target':>7}")
    for model, nodes, split in SETUPS:
        base = SimConfig(name="bench-dp", nodes=nodes, rounds=rounds, model=model, split=split, alpha=0.5)
        no_dp, res = accuracy(base, baselines=True)
        central = res["baselines"]["centralized"]["accuracy"]
        pts = []
        for eps in epsilons:
            acc, res = accuracy(SimConfig(**{**base.to_dict(), "dp_mode": "sample", "dp_epsilon": float(eps)}))
            spent = res["rounds"][-1]["epsilon"]
            assert spent <= eps * (1 + 1e-9), (spent, eps)  # a broken accountant must not print a table
            pts.append((eps, acc))
        curves[name_of(model, nodes, split)] = {"points": pts, "no_dp": no_dp, "centralized": central}
        a8 = dict(pts)[8]
        met = ("yes" if no_dp - a8 <= 0.05 else "NO") if (model, nodes, split) in TARGETS else "-"
        print(f"{name_of(model, nodes, split):<24} {central:>8.4f} {no_dp:>7.4f} "
              + " ".join(f"{a:>8.4f}" for _, a in pts)
              + f" {100 * (a8 - no_dp):>+9.1f}p {a8 / no_dp:>10.3f} {met:>7}", flush=True)
    if not args.quick:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        plot_dp_curves(FIGURE, curves)
        print(f"wrote {FIGURE.relative_to(ROOT)}")
    print(f"{time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
