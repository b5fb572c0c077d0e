"""The simulator at 100, 300 and 1,000 nodes: how time and memory grow with N.

Each size runs in its own child process (``python bench/sim_scale.py --child``):
``Simulation`` on ``synthetic-classification`` (its default size for N nodes,
:func:`learningchain.learning.data.default_samples`), the MLP, FedAvg, quorum N,
three full nodes validating everything (real ECDSA, real blocks, PoW at the
simulator's difficulty), no baselines. Printed per size: set-up seconds, mean
seconds per round and per stage of a round (the simulator's own timing), total
wall time of the child (imports included), peak memory, final accuracy.

Peak memory is the child's ``ru_maxrss`` as the parent reads it with
``os.wait4`` (kernel-measured resident set, whole process: interpreter,
NumPy, scikit-learn and all); "over start" subtracts the child's VmRSS once its
imports are done, i.e. what the simulation itself added.

Growth: for each figure, the ratio between the largest and the smallest size
scaled to a 10x step in N (``(b/a) ** (1 / log10(N_b/N_a))``) and the exponent
k of a least-squares fit of ``figure ~ N**k`` over all sizes: k = 1 is linear.

``--profile`` runs each size under cProfile (its timings are then inflated),
writes a listing per size (``out/bench/sim_scale/profile-N.txt``, top functions
by own time) and prints, between the smallest and the largest size, the
functions whose calls per round grow faster than N (none: the round's work is
linear) and those whose own time grows most beyond N. Prints figures, asserts nothing.
Run: ``.venv/bin/python bench/sim_scale.py [--sizes 100,300,1000] [--rounds 20]``.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "sign", "submit", "template", "mine", "validate_block", "evaluate")


def vm_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child(nodes: int, rounds: int, out: Path, profile: Path | None) -> None:
    sys.path.insert(0, str(ROOT))
    from learningchain.sim.config import SimConfig
    from learningchain.sim.simulator import Simulation
    importlib.import_module("learningchain.sim.results")  # the first round imports it (matplotlib): count it at start
    start_rss = vm_rss_mib()
    t0 = time.perf_counter()
    sim = Simulation(SimConfig(name=f"scale-{nodes}", nodes=nodes, rounds=rounds,
                               dataset="synthetic-classification"))
    setup = time.perf_counter() - t0
    if profile is not None:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
    res = sim.run(with_baselines=False)
    if profile is not None:
        prof.disable()
        prof.dump_stats(str(profile.with_suffix(".pstats")))  # pstats' own marshal format
        with profile.open("w") as f:
            pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(40)
    stages = {s: sum(e["timing"].get(s, 0.0) for e in res["rounds"]) / rounds for s in STAGES}
    out.write_text(json.dumps({
        "nodes": nodes, "rounds": rounds, "setup_s": setup, "simulation_s": res["simulation_s"],
        "per_round_s": res["simulation_s"] / rounds, "stages": stages, "start_rss_mib": start_rss,
        "final": res["final"]["accuracy"], "initial": res["initial"]["accuracy"],
        "samples": res["config"]["data"]["samples"], "per_node": res["config"]["data"]["per_node_min"],
        "block_bytes": res["rounds"][-1]["bytes"]}))


def run_size(nodes: int, rounds: int, profile_dir: Path | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        argv = [sys.executable, __file__, "--child", str(nodes), "--rounds", str(rounds), "--result", str(out)]
        if profile_dir is not None:
            argv += ["--profile-to", str(profile_dir / f"profile-{nodes}.txt")]
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"the {nodes}-node child failed with status {proc.returncode}")
        res = json.loads(out.read_text())
    res["wall_s"] = wall
    res["peak_rss_mib"] = usage.ru_maxrss / 1024  # Linux: KiB
    res["over_start_mib"] = res["peak_rss_mib"] - res["start_rss_mib"]
    return res


def growth(xs: list[int], ys: list[float]) -> tuple[float, float]:
    """(ratio per 10x in N between the first and last size, fitted exponent)."""
    if len(xs) < 2 or min(ys) <= 0:
        return float("nan"), float("nan")
    per10 = (ys[-1] / ys[0]) ** (1 / math.log10(xs[-1] / xs[0]))
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    k = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return per10, k


def superlinear(rows: list[dict], profile_dir: Path, top: int = 8) -> None:
    """From the cProfile data of the smallest and the largest size: the functions
    whose calls per round grow faster than N (exact, whatever the machine's load:
    the first sign of per-round work that is not linear), and those whose own
    time grows most beyond N (timing, so noisier)."""
    import pstats
    small, large = rows[0], rows[-1]
    a, b = (pstats.Stats(str(profile_dir / f"profile-{r['nodes']}.pstats")).stats for r in (small, large))
    scale = large["nodes"] / small["nodes"]

    def name(key) -> str:
        return f"{Path(key[0]).name}:{key[1]} {key[2]}"
    calls, excess = [], []
    for key, (_, ncalls, tottime, _, _) in b.items():
        _, ncalls0, tottime0, _, _ = a.get(key, (0, 0, 0.0, 0, {}))
        per_round, per_round0 = ncalls / large["rounds"], ncalls0 / small["rounds"]
        if per_round > scale * per_round0 * 1.05 and per_round >= 1000:
            calls.append((per_round / max(per_round0, 1), per_round, per_round0, name(key)))
        excess.append((tottime / large["rounds"] - scale * tottime0 / small["rounds"], tottime / large["rounds"],
                       tottime0 / small["rounds"], name(key)))
    total = [sum(v[2] for v in st.values()) for st in (a, b)]
    print(f"\ncProfile, {small['nodes']} -> {large['nodes']} nodes (x{scale:g}): own time per round "
          f"{total[0] / small['rounds']:.2f} -> {total[1] / large['rounds']:.2f} s "
          f"(x{total[1] / large['rounds'] / (total[0] / small['rounds']):.2f})")
    print(f"  functions whose calls per round grow faster than N (>= 1000 calls a round): {len(calls)}")
    for ratio, n1, n0, fn in sorted(calls, reverse=True)[:top]:
        print(f"    x{ratio:8.1f}  {n0:>10.0f} -> {n1:>10.0f} calls/round  {fn}")
    print(f"  own time per round beyond x{scale:g} (s): largest {top}")
    for ex, t1, t0, fn in sorted(excess, reverse=True)[:top]:
        print(f"    {ex:+7.3f}  {t0:7.3f} -> {t1:7.3f} s/round  {fn}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,300,1000", help="node counts, comma-separated")
    ap.add_argument("--rounds", type=int, default=20, help="rounds at the largest size (20)")
    ap.add_argument("--small-rounds", type=int, default=None,
                    help="rounds at the other sizes (default: as --rounds)")
    ap.add_argument("--profile", action="store_true", help="write a cProfile listing per size")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench" / "sim_scale"))
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.rounds, Path(args.result), Path(args.profile_to) if args.profile_to else None)
        return 0
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    profile_dir = None
    if args.profile:
        profile_dir = Path(args.out)
        profile_dir.mkdir(parents=True, exist_ok=True)
    print(f"synthetic-classification, MLP, FedAvg, quorum N, 3 full nodes; {os.cpu_count()} CPUs; "
          f"peak memory = ru_maxrss of each child process (os.wait4)")
    print(f"{'nodes':>6} {'rounds':>6} {'samples':>8} {'setup s':>8} {'s/round':>8} {'sim s':>8} {'wall s':>8} "
          f"{'peak MiB':>9} {'over start':>10} {'accuracy':>9} {'MB/round':>9}", flush=True)
    rows = []
    for n in sizes:
        rounds = args.rounds if n == sizes[-1] or args.small_rounds is None else args.small_rounds
        r = run_size(n, rounds, profile_dir)
        rows.append(r)
        print(f"{n:>6} {rounds:>6} {r['samples']:>8} {r['setup_s']:>8.2f} {r['per_round_s']:>8.2f} "
              f"{r['simulation_s']:>8.1f} {r['wall_s']:>8.1f} {r['peak_rss_mib']:>9.0f} {r['over_start_mib']:>10.0f} "
              f"{r['final']:>9.4f} {r['block_bytes'] / 1e6:>9.2f}", flush=True)
    print("\nper round, by stage (s):")
    print(f"{'nodes':>6} " + " ".join(f"{s:>14}" for s in STAGES))
    for r in rows:
        print(f"{r['nodes']:>6} " + " ".join(f"{r['stages'][s]:>14.3f}" for s in STAGES))
    if len(rows) < 2:
        return 0
    xs = [r["nodes"] for r in rows]
    print(f"\ngrowth with N ({xs[0]} -> {xs[-1]} nodes): x per 10x nodes, fitted exponent k (figure ~ N^k)")
    figures = {"seconds per round": [r["per_round_s"] for r in rows],
               "seconds per round per node (ms)": [1000 * r["per_round_s"] / r["nodes"] for r in rows],
               "set-up seconds": [r["setup_s"] for r in rows],
               "peak memory": [r["peak_rss_mib"] for r in rows],
               "memory over start": [r["over_start_mib"] for r in rows],
               "memory over start per round": [r["over_start_mib"] / r["rounds"] for r in rows],
               **{f"stage {s}": [r["stages"][s] for r in rows] for s in STAGES}}
    for name, ys in figures.items():
        per10, k = growth(xs, ys)
        print(f"  {name:<34} " + " ".join(f"{y:>9.3f}" for y in ys) + f"   x{per10:>6.2f} per 10x   k = {k:.2f}")
    if profile_dir is not None:
        superlinear(rows, profile_dir)
        print(f"\ncProfile listings: {', '.join(str(profile_dir / f'profile-{n}.txt') for n in xs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
