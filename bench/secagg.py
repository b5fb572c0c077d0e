"""Secure aggregation in the simulator (issue 12 part A's targets): accuracy
against plain FedAvg, the exact sum under dropouts, bytes on chain and
validation time against plain mode as n grows, and what attackers can still do
under the clipping range.

Every run is the in-process simulator (learningchain/sim/simulator.py): the
same ledger, mempool and chain a node runs, real txs and mined blocks, every
full node validating everything. Ratios compare runs made in this same
invocation. Prints tables; asserts nothing.
``--quick``: 3 rounds, n in {5, 10, 30}, one attack row each.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.learning import secagg  # noqa: E402
from learningchain.node.secagg_client import flatten  # noqa: E402
from learningchain.sim.config import SimConfig  # noqa: E402
from learningchain.sim.simulator import Simulation  # noqa: E402

BASE = dict(dataset="digits", model="mlp", split="iid", seed=0)


def cfg(nodes=10, rounds=10, sa=False, **kw) -> SimConfig:
    return SimConfig(name="bench-secagg", nodes=nodes, rounds=rounds, secure_aggregation=sa, **{**BASE, **kw})


def run(c: SimConfig):
    sim = Simulation(c)
    res = sim.run(with_baselines=False)
    digests = {l.chain.tip_state.model_digest for l in sim.ledgers}
    return sim, res, digests


def table(title: str, head: list[str], rows: list[list], widths: list[int]) -> None:
    print(f"\n{title}")
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    for r in rows:
        print(" ".join(f"{v:>{w}}" if not isinstance(v, float) else f"{v:>{w}.4f}" for v, w in zip(r, widths)))


# --- 1. accuracy -----------------------------------------------------------------------
def accuracy(rounds: int, seeds) -> None:
    rows = []
    for seed in seeds:
        _, plain, dp = run(cfg(rounds=rounds, seed=seed))
        _, sa, ds = run(cfg(rounds=rounds, sa=True, seed=seed))
        a, b = plain["final"]["accuracy"], sa["final"]["accuracy"]
        rows.append([seed, a, b, f"{100 * (b - a):+.2f}", "yes" if abs(b - a) <= 0.005 else "NO",
                     f"{len(dp)} / {len(ds)}"])
    table(f"1. digits, 10 nodes, MLP, {rounds} rounds: final accuracy, plain FedAvg vs secure aggregation "
          f"(target: within 0.5 points; every full node the same digest)",
          ["seed", "plain", "SA", "SA-plain pts", "<=0.5", "digests plain/SA"], rows, [5, 8, 8, 13, 6, 17])


# --- 2. the exact sum under dropouts ----------------------------------------------------
def exact_sum(rounds: int) -> None:
    sim = Simulation(cfg(rounds=rounds, sa=True, sa_drop_after_setup=3))
    p = sim.network.secure_aggregation
    rows = []
    for _ in range(rounds):
        base = sim.ledgers[0].chain.tip_state.model
        entry = sim.run_round()
        sa = sim.ledgers[0].chain.tip.commitment["secure_aggregation"]
        qs = [secagg.quantize(sim.sa_deltas[k], p.clip_value, p.scale).astype(np.int64) for k in sa["counted"]]
        signed = [np.where(q >= 1 << 31, q - (1 << 32), q) for q in qs]
        total = np.sum(signed, axis=0)
        digest = hashlib.sha256((total & 0xFFFFFFFF).astype("<u4").tobytes()).hexdigest()
        avg = _split(base, total.astype(np.float64) / float(p.scale * len(qs)))
        got = sim.ledgers[0].chain.tip_state.model
        same = all(np.array_equal(got[k], (np.asarray(base[k], np.float64) + avg[k]).astype(np.float32))
                   for k in base)
        e = entry["secure_aggregation"]
        rows.append([entry["round"], e["counted"], e["dropped"], ",".join(e["dropped_after_setup"]),
                     "{setup}/{input}/{unmask}".format(**e["phase_blocks"]),
                     "yes" if digest == sa["sum_digest"] else "NO", "yes" if same else "NO",
                     entry["metrics"]["accuracy"]])
    tip, _ = sim.check_agreement()
    table("2. 3 of 10 dropped after setup (seeded, each round): the sum on chain against the sum computed "
          "here from the 7 counted members' quantised deltas",
          ["round", "counted", "dropped", "who", "phase blocks", "sum exact", "G(r) exact", "accuracy"],
          rows, [5, 7, 7, 20, 14, 9, 10, 9])
    print(f"   every full node holds tip {tip[:16]}...")


def _split(model, flat):
    out, off = {}, 0
    for k in sorted(model):
        a = np.asarray(model[k])
        out[k] = flat[off:off + a.size].reshape(a.shape)
        off += a.size
    return out


# --- 3 + 4. bytes and validation time against n --------------------------------------------
def cost(ns, full_nodes: int, rounds: int) -> None:
    run(cfg(nodes=5, rounds=1, full_nodes=full_nodes))  # warm-up: imports and caches, not measured
    run(cfg(nodes=5, rounds=1, sa=True, full_nodes=full_nodes))
    rows, trows = [], []

    def per_node(sim):  # a fresh full node validating the round's blocks: CPU s, the least over the rounds
        return min(replay(sim))

    def round_s(res):
        return float(np.median([sum(e["timing"].values()) for e in res["rounds"]]))

    for n in ns:
        plain_sim, plain, _ = run(cfg(nodes=n, rounds=rounds, full_nodes=full_nodes))
        sim, sa, _ = run(cfg(nodes=n, rounds=rounds, sa=True, full_nodes=full_nodes))
        pe, se = plain["rounds"][-1], sa["rounds"][-1]
        by = se["secure_aggregation"]["bytes_per_participant"]
        ratio = se["bytes_per_update"] / pe["bytes_per_update"]
        t = sim.network.secure_aggregation.threshold
        rows.append([n, t, int(pe["bytes_per_update"]), int(by["sa-setup"]), int(by["sa-input"]),
                     int(by["sa-unmask"]), int(se["bytes_per_update"]), f"{ratio:.2f}x"])
        client = float(np.median([e["timing"]["sa_client"] for e in sa["rounds"]])) / n
        vp, vs = per_node(plain_sim), per_node(sim)
        trows.append([n, f"{1000 * vp:.1f}", f"{1000 * vs:.1f}", f"{vs / vp:.1f}x", f"{1000 * client:.1f}",
                      f"{round_s(plain):.2f}", f"{round_s(sa):.2f}", f"{round_s(sa) / round_s(plain):.1f}x"])
    d = sum(int(np.asarray(a).size) for a in plain_sim.ledgers[0].chain.tip_state.model.values())
    table(f"3. bytes on chain per participant per round (MLP, d = {d}), plain update tx vs the three SA txs "
          "(target: <= 1.5x at 10)",
          ["n", "t", "plain", "sa-setup", "sa-input", "sa-unmask", "SA total", "SA/plain"], rows,
          [4, 4, 8, 9, 9, 10, 9, 9])
    table(f"4. validation of one round by a full node (CPU ms: a fresh Ledger checking every block of the "
          f"round, each tx in it with its Feldman/DLEQ checks; least of {rounds} rounds), the client's SA crypto "
          f"per member (ms), and the whole simulated round (wall s, training included; median)",
          ["n", "plain ms", "SA ms", "SA/plain", "client ms", "plain rnd", "SA rnd", "SA/plain"], trows,
          [4, 9, 9, 9, 10, 10, 8, 9])


def replay(sim) -> list[float]:
    """CPU seconds a fresh full node spends validating each round's blocks (the main
    chain re-parsed from its bytes and submitted block by block)."""
    from learningchain.core.encoding import parse_json
    from learningchain.ledger.block import Block
    from learningchain.node.chainstate import Ledger
    ledger, out, acc = Ledger(sim.genesis), [], 0.0
    for b in sim.ledgers[0].chain.main_chain(1, 100_000):
        block = Block.parse(parse_json(b.serialize()))
        t0 = time.process_time()
        ledger.submit_block(block, sim.now_ms)
        acc += time.process_time() - t0
        if block.commitment is not None:
            out.append(acc)
            acc = 0.0
    return out


# --- 5. robustness --------------------------------------------------------------------------
def _dist(a, b) -> float:
    return float(np.linalg.norm(flatten(a) - flatten(b)))


MODES = (("plain", {}), ("SA 0.5", {"sa": True}), ("SA 0.05", {"sa": True, "sa_clip": "0.05"}))


def robustness(rounds: int, cases) -> None:
    rows = []
    honest = {}
    for name, kw in MODES:
        sim, res, _ = run(cfg(rounds=rounds, **kw))
        honest[name] = (sim.ledgers[0].chain.tip_state.model, res["final"]["accuracy"])
        rows.append(["none", 0, name, res["final"]["accuracy"], res["final"]["accuracy"], "+0.00", "0.000",
                     _clipped(sim, False) + " (hon)" if kw else "-"])
    for attack, k in cases:
        for name, kw in MODES:
            sim, res, _ = run(cfg(rounds=rounds, byzantine=k, attack=attack, **kw))
            model = sim.ledgers[0].chain.tip_state.model
            acc, (h_model, h_acc) = res["final"]["accuracy"], honest[name]
            rows.append([attack, k, name, acc, h_acc, f"{100 * (acc - h_acc):+.2f}", f"{_dist(model, h_model):.3f}",
                         f"{_clipped(sim, True)} / {_clipped(sim, False)}" if kw else "-"])
    table(f"5. attackers under the clipping range (SA, clip 0.5 = the default, and 0.05) next to FedAvg in "
          f"plain mode: digits, 10 nodes, MLP, {rounds} rounds; 'honest' = the same mode with every node honest; "
          f"last column: share of delta coordinates beyond the clip in the last round, attackers / honest",
          ["attack", "k", "mode", "accuracy", "honest", "pts", "||G-G_honest||", "clipped att / hon"], rows,
          [9, 2, 7, 9, 8, 7, 14, 22])


def _clipped(sim, attackers: bool) -> str:
    clip = sim.network.secure_aggregation.clip_value
    ds = [d for key, d in sim.sa_deltas.items() if (key in sim.attacker_keys) == attackers]
    return f"{100 * np.mean([np.mean(np.abs(d) > clip) for d in ds]):.1f}%" if ds else "-"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, n in {5, 10, 30}, fewer rows")
    ap.add_argument("--only", choices=("accuracy", "exact", "cost", "robustness"))
    args = ap.parse_args(argv)
    rounds = 3 if args.quick else 10
    start = time.perf_counter()
    print("bench/secagg.py: digits, MLP (the default spec), IID, seed 0, in the simulator"
          + (" (--quick)" if args.quick else ""))
    if args.only in (None, "accuracy"):
        accuracy(rounds, (0,) if args.quick else (0, 1, 2))
    if args.only in (None, "exact"):
        exact_sum(rounds)
    if args.only in (None, "cost"):
        cost((5, 10, 30) if args.quick else (5, 10, 20, 30, 50), 2, 1 if args.quick else 3)
    if args.only in (None, "robustness"):
        robustness(rounds, (("sign-flip", 1), ("scale", 3)) if args.quick else
                   (("sign-flip", 1), ("sign-flip", 3), ("scale", 1), ("scale", 3)))
    print(f"\n{time.perf_counter() - start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
