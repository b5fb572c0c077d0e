"""Live round time of secure aggregation against plain FedAvg (issue 12, target:
round time <= 2x plain mode in the live demo).

    .venv/bin/python bench/secagg_live.py [--nodes 10 30] [--rounds 5] [--out DIR]

For each network size: the demo network (``node.py demo``'s genesis: digits MLP,
quorum = every node, 2 miners, real processes and HTTP) run twice in the same
invocation, plain and with ``--secure-aggregation`` (demo defaults: t = floor(2N/3)+1,
phase timeout = round timeout = 20 blocks), the same nodes, partitions and
rounds. Round 1 is warm-up (nodes still joining); rounds 2 .. R+1 are timed by
the header timestamps of their closing blocks (the miners' clocks, the same
machine). Reported: the median round time of each mode, their ratio, blocks per
round, the final accuracy, and under SA the counted members per round and
failed rounds. Another engineer's bench/secagg.py holds the simulator part
(accuracy, bytes, dropouts).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learningchain.cli import demo, demo_rounds, processes  # noqa: E402
from learningchain.ledger.genesis import permissioned  # noqa: E402
from learningchain.ledger.genesis_privacy import default_params  # noqa: E402
from learningchain.node.keyfile import load_or_create_key  # noqa: E402


def fetch(url: str, path: str, net, what: str):
    """GET with retries: a node of an overloaded machine may miss a 3 s deadline."""
    return processes.wait_for(lambda: processes.get(url, path), 60, what, net, interval=0.5)


def run(n: int, rounds: int, out: Path, secure: bool, phase_timeout: int | None = None) -> dict:
    part_dir = demo.partitions_for("digits", n, out.parent)
    keys = [load_or_create_key(out / "nodes" / f"node{i}").public_hex for i in range(n)]
    config = permissioned(demo.make_config(n, "digits", "fedavg", 0), keys)
    if secure:
        config = config.with_secure_aggregation(default_params(n, config.round_timeout,
                                                               phase_timeout=phase_timeout))
    genesis = demo.write_genesis(config, out / "genesis.json")
    net = processes.Network(out)
    t_start = time.monotonic()
    try:
        demo.start_network(net, n, part_dir, genesis, miners=2)
        started = time.monotonic() - t_start
        hub = net.nodes[0].url
        last = rounds + 1
        timeout = 120 + 60 * rounds * (1 + n // 10)
        processes.wait_for(lambda: demo_rounds.closed_round(hub, last), timeout, f"round {last}", net, interval=1.0)
        docs = [fetch(hub, f"/rounds/{r}", net, f"/rounds/{r}") for r in range(1, last + 1)]
        stamps = [fetch(hub, f"/blocks/{d['block']}", net, "a block")["header"]["timestamp"] for d in docs]
        times = [(b - a) / 1000 for a, b in zip(stamps, stamps[1:])]
        heights = [d["closed_at"] for d in docs]
        blocks = [b - a for a, b in zip(heights, heights[1:])]
        digests = {fetch(x.url, f"/rounds/{last}", net, "a round").get("model_digest") for x in net.nodes}
        sa = [d.get("secure_aggregation") or {} for d in docs[1:]]
        return {"median_s": statistics.median(times), "times": times, "blocks": statistics.median(blocks),
                "accuracy": (docs[-1].get("metrics") or {}).get("accuracy", float("nan")), "agree": len(digests) == 1 and None not in digests,
                "counted": [len(s.get("counted", [])) for s in sa] if secure else None,
                "failed": sum(1 for s in sa if s.get("failed")) if secure else 0, "startup_s": started,
                "accepted": [len(d.get("accepted", [])) for d in docs[1:]]}
    finally:
        net.stop_all()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (after one warm-up round)")
    ap.add_argument("--out", help="work dir (default: a temporary one)")
    ap.add_argument("--sa-phase-timeout", type=int, help="blocks a phase may last (default the demo's 20)")
    args = ap.parse_args()
    base = Path(args.out or tempfile.mkdtemp(prefix="secagg-live-"))
    rows = []
    for n in args.nodes:
        for secure in (False, True):
            mode = "secure-agg" if secure else "plain"
            print(f"running {n} nodes, {mode}, {args.rounds} timed rounds ...", file=sys.stderr, flush=True)
            try:
                res = run(n, args.rounds, base / f"n{n}-{mode}", secure, args.sa_phase_timeout)
            except Exception as exc:  # a size the machine cannot run: say so in the table
                res = {"error": f"{type(exc).__name__}: {str(exc)[:100]}"}
            rows.append((n, mode, res))
            print(f"  {res}", file=sys.stderr, flush=True)
    print(f"\nlive round time, digits MLP, node.py demo genesis, {args.rounds} timed rounds after 1 warm-up, "
          f"2 miners, on this machine ({processes_cores()} cores); SA phase timeout "
          f"{args.sa_phase_timeout or 20} blocks")
    print(f"{'nodes':>5}  {'mode':<10}  {'median round':>12}  {'ratio':>6}  {'blocks/round':>12}  "
          f"{'final acc':>9}  {'agree':>5}  {'counted/round':<16}  failed")
    plain: dict[int, float] = {}
    for n, mode, res in rows:
        if "error" in res:
            print(f"{n:>5}  {mode:<10}  could not run: {res['error']}")
            continue
        if mode == "plain":
            plain[n] = res["median_s"]
        ratio = f"{res['median_s'] / plain[n]:.2f}x" if mode != "plain" and n in plain else "1"
        counted = ",".join(map(str, res["counted"] or res["accepted"]))
        print(f"{n:>5}  {mode:<10}  {res['median_s']:>10.2f} s  {ratio:>6}  {res['blocks']:>12}  "
              f"{res['accuracy']:>9.4f}  {str(res['agree']):>5}  {counted:<16}  {res['failed']}")
    return 0


def processes_cores() -> int:
    import os
    return os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
