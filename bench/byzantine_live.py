"""Byzantine learners in the live network: ``node.py demo --nodes N --byzantine K
--attack A --aggregator R`` for each attack and rule, against the clean run of
the same rule. The demo makes the last K nodes attack (node 0, the miner, stays
honest); results.json ``config.attackers`` names them. Prints, per run: final accuracy, its gap to the clean run, and
the mean precision / recall of rejection (rejected updates that are the
attackers', attackers' updates that were rejected; learningchain/sim/results.py
``detection``) with the number of rounds where every rejected update was an
attacker's. A benchmark: it prints figures and asserts nothing.

    .venv/bin/python bench/byzantine_live.py [--nodes 10] [--byzantine 3] [--rounds 5]
        [--attacks sign-flip,scale,alie,label-flip] [--rules multi-krum,fedavg]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(out: Path, nodes: int, rounds: int, rule: str, byzantine: int = 0, attack: str | None = None) -> dict:
    args = [sys.executable, str(ROOT / "node.py"), "demo", "--nodes", str(nodes), "--rounds", str(rounds),
            "--aggregator", rule, "--out", str(out)]
    if byzantine:
        args += ["--byzantine", str(byzantine), "--attack", attack]
    t0 = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=str(ROOT), timeout=60 + 30 * rounds)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:], "elapsed": elapsed}
    results = json.loads((out / "results.json").read_text())
    rows = results["rounds"]
    prec = [r["precision"] for r in rows if r.get("precision") is not None]
    rec = [r["recall"] for r in rows if r.get("recall") is not None]
    pure = sum(1 for r in rows if r["rejected"] and r.get("precision") == 1.0)
    return {"accuracy": results["final"]["accuracy"], "elapsed": elapsed, "rounds": len(rows),
            "precision": statistics.mean(prec) if prec else None,
            "recall": statistics.mean(rec) if rec else None, "pure_rounds": pure,
            "rejected": sum(len(r["rejected"]) for r in rows)}


def fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--byzantine", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--attacks", default="sign-flip,scale,alie,label-flip")
    p.add_argument("--rules", default="multi-krum,fedavg")
    p.add_argument("--out", default=str(ROOT / "out" / "byzantine_live"))
    args = p.parse_args()
    out = Path(args.out)
    print(f"live network: {args.nodes} node processes, {args.byzantine} attackers, {args.rounds} rounds, digits MLP")
    print(f"{'rule':>10}  {'attack':>10}  {'accuracy':>8}  {'vs clean':>8}  {'vs fedavg':>9}  {'precision':>9}"
          f"  {'recall':>6}  {'pure rounds':>11}  {'rejected':>8}  {'time':>6}")
    rules = args.rules.split(",")
    # Clean runs first, so every attacked run is shown against its own rule's clean
    # run and against clean FedAvg (the reference of the 5-point target).
    clean = {rule: run(out / rule / "clean", args.nodes, args.rounds, rule) for rule in rules}
    if "fedavg" not in clean:
        clean["fedavg"] = run(out / "fedavg" / "clean", args.nodes, args.rounds, "fedavg")
    fedavg_base = clean["fedavg"].get("accuracy")

    def gap(acc, base):
        return None if acc is None or base is None else 100 * (acc - base)

    def row(rule: str, attack: str, r: dict, base) -> None:
        pure = "" if attack == "none" else f"{r.get('pure_rounds', '-')}/{r.get('rounds', '-')}"
        print(f"{rule:>10}  {attack:>10}  {fmt(r.get('accuracy'), '.4f'):>8}"
              f"  {fmt(gap(r.get('accuracy'), base) if attack != 'none' else None, '+.1f'):>8}"
              f"  {fmt(gap(r.get('accuracy'), fedavg_base), '+.1f'):>9}"
              f"  {fmt(r.get('precision')):>9}  {fmt(r.get('recall')):>6}  {pure:>11}"
              f"  {r.get('rejected', '-'):>8}  {r['elapsed']:5.1f}s"
              + (f"  ERROR {r['error']}" if "error" in r else ""), flush=True)

    for rule in rules:
        base = clean[rule].get("accuracy")
        row(rule, "none", clean[rule], base)
        for attack in args.attacks.split(","):
            row(rule, attack, run(out / rule / attack, args.nodes, args.rounds, rule, args.byzantine, attack), base)
    print("vs clean: accuracy points against the clean run of the same rule; vs fedavg: against clean FedAvg;")
    print("precision/recall: mean over rounds of rejection as attacker detection; pure rounds: rounds whose")
    print("rejected updates were all attackers'.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
