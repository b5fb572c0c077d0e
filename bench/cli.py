"""Start-up and answer time of every ``node.py`` inspection command (issue 14,
target: each under 0.3 s wall on an idle machine).

    .venv/bin/python bench/cli.py [--repeat 5] [--rounds 2] [--out DIR] [--against CHECKOUT]

1. Builds a real chain: the demo network (``node.py demo``'s genesis, 2 node
   processes, node 0 mining, real HTTP) until round ``--rounds`` is closed, then
   stops it.
2. Restarts node 0 alone on that data dir, neither mining nor learning, so the
   machine is idle while we measure.
3. Runs each inspection command (table and ``--json``), plus ``node.py --help``,
   ``--repeat`` times as a fresh process (``.venv/bin/python node.py ...``, as a
   user would) and prints the median wall time, the spread and whether it is
   under 0.3 s. For scale, measured in the same run: the interpreter alone
   (``python -c pass``), ``python -c "import requests"``, and one HTTP GET of
   ``/status`` from an already running interpreter (the floor a CLI cannot beat).
   With ``--against CHECKOUT`` (e.g. ``git worktree add /tmp/before main~5``) the
   same commands also run that checkout's node.py, alternately with ours, and the
   table adds its median and the ratio.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learningchain.cli import demo, demo_rounds, processes  # noqa: E402
from learningchain.ledger.genesis import permissioned  # noqa: E402
from learningchain.node.keyfile import load_or_create_key  # noqa: E402

TARGET_S = 0.3


def build_chain(out: Path, rounds: int) -> tuple[Path, Path]:
    """The demo network until round ``rounds`` closes; (node 0's data dir, genesis)."""
    n = 2
    part = demo.partitions_for("digits", n, out)
    config = permissioned(demo.make_config(n, "digits", "fedavg", 0),
                          [load_or_create_key(out / "nodes" / f"node{i}").public_hex for i in range(n)])
    genesis = demo.write_genesis(config, out / "genesis.json")
    net = processes.Network(out)
    try:
        demo.start_network(net, n, part, genesis, miners=1)
        processes.wait_for(lambda: demo_rounds.closed_round(net.nodes[0].url, rounds), 120,
                           f"round {rounds} to close", net)
    finally:
        net.stop_all()
    return out / "nodes" / "node0", genesis


#: as a user runs it: with Python's bytecode cache (a session that sets
#: PYTHONDONTWRITEBYTECODE would recompile every module on each start)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(argv: list[str], repeat: int, cwd: Path = ROOT) -> list[float]:
    """Wall times of ``repeat`` runs of ``argv``, after one untimed warm-up run."""
    times = []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        done = subprocess.run(argv, cwd=str(cwd), capture_output=True, text=True, timeout=60, env=ENV)
        if i:
            times.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[1:])} failed ({done.returncode}): {done.stderr.strip()}")
    return times


def walls(argv: list[str], repeat: int, against: Path | None) -> tuple[list[float], list[float] | None]:
    """Ours and, with ``against``, that checkout's, alternating run by run."""
    if against is None:
        return wall(argv, repeat), None
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        ours += wall(argv, 1)
        theirs += wall(argv, 1, against)
    return ours, theirs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="rounds of the chain inspected")
    ap.add_argument("--out", help="work directory (default: a temporary one)")
    ap.add_argument("--against", type=Path, help="another checkout whose node.py runs the same commands")
    args = ap.parse_args()
    against = args.against.resolve() if args.against else None
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-cli-"))
    t0 = time.monotonic()
    data_dir, genesis = build_chain(out, args.rounds)
    print(f"chain built by a 2-node demo network in {time.monotonic() - t0:.1f} s; node 0 restarted alone, "
          f"idle (no --mine, no --dataset), on {data_dir}")
    net = processes.Network(out)
    try:
        node = net.start(0, genesis=genesis, data_dir=data_dir)
        processes.wait_ready(net, [node])
        url = node.url
        r1 = processes.get(url, "/rounds/1")
        txid = r1["updates"][0]["id"]
        commands = [["status"], ["status", "--brief"], ["chain"], ["block", "2"], ["tx", txid], ["mempool"],
                    ["peers"], ["model"], ["round"], ["round", "1"]]
        py = sys.executable
        load_before = os.getloadavg()
        rows = []
        for cmd in commands:
            for extra in ([], ["--json"]):
                if "--brief" in cmd and (extra or against):  # new here: nothing to compare with
                    continue
                argv = [py, "node.py", *cmd, "--node", url, *extra]
                label = " ".join(cmd[:1] + ([c[:16] + "…" if len(c) > 20 else c for c in cmd[1:]]) + extra)
                rows.append((label, *walls(argv, args.repeat, against)))
        rows.append(("--help", *walls([py, "node.py", "--help"], args.repeat, against)))
        floor = [("python -c pass", wall([py, "-c", "pass"], args.repeat)),
                 ("python -c 'import requests'", wall([py, "-c", "import requests"], args.repeat))]
        import requests
        with requests.Session() as s:
            s.get(url + "/status", timeout=5)
            gets = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                s.get(url + "/status", timeout=5).json()
                gets.append(time.perf_counter() - t)
        floor.append(("GET /status (warm interpreter)", gets))
        load_after = os.getloadavg()
    finally:
        net.stop_all()
    width = max(len(row[0]) for row in rows + floor)
    print(f"\nmedian of {args.repeat} runs, each a fresh process (wall time, after a warm-up run); "
          f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after, on {os.cpu_count()} cores\n")
    other = f"  {'against':>8}  {'ratio':>6}" if against else ""
    print(f"{'command':<{width}}  {'median':>8}  {'min':>8}  {'max':>8}  under {TARGET_S} s{other}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}  {'-' * 8}  {'-' * 11}" + ("  --------  ------" if against else ""))
    for label, times, theirs in rows:
        med = statistics.median(times)
        cmp = (f"  {statistics.median(theirs):>7.3f}s  {med / statistics.median(theirs):>5.2f}x"
               if theirs else "")
        print(f"{label:<{width}}  {med:>7.3f}s  {min(times):>7.3f}s  {max(times):>7.3f}s  "
              f"{'yes' if med < TARGET_S else 'NO':<11}{cmp}".rstrip())
    if against:
        print(f"(against: {against}, each run alternating with ours)")
    print("\nfor scale (same run)")
    for label, times in floor:
        print(f"{label:<{width}}  {statistics.median(times):>7.3f}s  {min(times):>7.3f}s  {max(times):>7.3f}s")
    slowest = max(statistics.median(t) for _, t, _ in rows)
    base = statistics.median(floor[0][1])
    print(f"\nslowest command {slowest:.3f} s = {slowest / base:.1f} x the bare interpreter ({base:.3f} s); "
          f"{sum(statistics.median(t) < TARGET_S for _, t, _ in rows)}/{len(rows)} under {TARGET_S} s")
    return 0  # a figure, not a test: `make bench` goes on (a loaded machine is slower)


if __name__ == "__main__":
    sys.exit(main())
