"""A 5-host network in network namespaces against the loopback demo, in one run.

    .venv/bin/python bench/multihost.py [--hosts 5] [--rounds 10] [--timing-rounds 20] [--partition-rounds 5]
                                        [--delay-ms 50] [--loss 0.01] [--rate 20mbit] [--no-tls] [--out DIR]

Needs root and iproute2 (tests/netns_hosts.py builds the hosts). In order:

1. loopback: the demo's network (:func:`learningchain.cli.demo.start_network`,
   real processes on 127.0.0.1) on the same genesis: final accuracy, round time, CPU;
2. netns, plain HTTP: the same genesis (:func:`learningchain.cli.demo.make_config`:
   fedavg, the digits MLP, quorum 5, two miners) on 5 hosts, one node per host
   bound to its address, links shaped with ``tc tbf`` and given 50 ms one-way
   delay and 1 % segment loss by the hosts' link proxies (the loss model is in
   tests/netns_hosts.py: a lost segment stalls its stream by an RTO, a lost SYN
   costs 1 s);
3. netns, TLS: the same, every node serving HTTPS and talking HTTPS to its
   peers (``node.py tls init`` certificates for the host addresses); 2 and 3
   alternate ``--reps`` times (2) on the same hosts; after the last TLS run the
   trunk between hosts 0-2 and hosts 3-4 is cut for 5 of the majority's
   rounds (the minority holds no miner, as in the demo the miners are nodes 0
   and 1; with quorum 5 the majority closes those rounds by the round timeout)
   and healed: time until every node holds the tip the majority had at the
   heal (and until all show one tip and model at once), and the
   updates the majority accepted meanwhile that are missing from a node's
   main chain afterwards (lost);
4. the same partition on a network whose quorum is the majority (3 of 5), so
   the majority closes its rounds at quorum, not by timeout.

Accuracy is round R's (10). Round time, the median and the mean of the time
between the closing blocks' timestamps, and the CPU per round are measured over
``--timing-rounds`` (20) more rounds, once every node has long been up: a round
is one to a few blocks at the 200 ms target, so ten rounds alone give a noisy
median. CPU per round: the node processes' own CPU time (all threads:
HTTP, TLS, gossip, training, validation), and separately
their proof-of-work worker processes (they search whatever the network
does).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learningchain.cli.demo_rounds import chain_stats, check_agreement, closed_round, follow_rounds  # noqa: E402
from learningchain.cli.processes import Network, get, wait_for  # noqa: E402
from learningchain.core.errors import LearningChainError  # noqa: E402
from tests.netns_hosts import Hosts, available, network_files, start_nodes, tls_init  # noqa: E402
from tests.netutil import converged, main_chain_txs, status  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def cpu_sample(net: Network) -> tuple[float, float]:
    """(node processes' own CPU, their descendants': the PoW workers) in seconds."""
    own = workers = 0.0
    for n in net.nodes:
        if n.popen is None:
            continue
        own += cpu_seconds(n.popen.pid)
        todo = children(n.popen.pid)
        while todo:
            c = todo.pop()
            workers += cpu_seconds(c)
            todo += children(c)
    return own, workers


# --- the runs -------------------------------------------------------------------------------

def round_closes(net: Network, first: int, last: int) -> list[float]:
    """Header timestamps (s) of the blocks that closed rounds first..last, at node 0."""
    out = []
    for r in range(first, last + 1):
        height = (get(net.nodes[0].url, f"/rounds/{r}") or {}).get("closed_at")
        block = get(net.nodes[0].url, f"/blocks/{height}") if height is not None else None
        stamp = (block or {}).get("header", block or {}).get("timestamp")
        if stamp is not None:
            out.append(stamp / 1000)
    return out


def measure(net: Network, label: str, rounds: int, timing_rounds: int) -> dict:
    """Rounds 1..R followed as the demo does (its table), the agreement check on
    round R and its accuracy; then ``timing_rounds`` more, all nodes long up,
    for the round time (close to close of the closing blocks' timestamps) and
    the CPU per round."""
    entries = follow_rounds(net, rounds, set(), timeout=60 + 30 * rounds, tty=False)
    digest, tips = check_agreement(net, rounds)
    stats = chain_stats(net, rounds)
    cpu0, last = cpu_sample(net), rounds + timing_rounds
    for r in range(rounds + 1, last + 1):
        wait_for(lambda r=r: closed_round(net.nodes[0].url, r, wait=1), 60, f"round {r}", net, interval=0.0)
    cpu1 = cpu_sample(net)
    closes = round_closes(net, rounds, last)
    gaps = [b - a for a, b in zip(closes, closes[1:])]
    return {"label": label, "accuracy": entries[-1]["metrics"]["accuracy"], "median_round_s": med(gaps),
            "mean_round_s": statistics.mean(gaps) if gaps else None, "timing_rounds": len(gaps), "gaps": gaps,
            "stale": stats["stale_rate"],
            "cpu": ((cpu1[0] - cpu0[0]) / timing_rounds, (cpu1[1] - cpu0[1]) / timing_rounds),
            "agreement": f"{len(net.nodes)}/{len(net.nodes)} nodes hold model {digest[:12]} for round {rounds}; {tips}"}


def loopback(out: Path, n: int, rounds: int, timing_rounds: int) -> dict:
    """The demo's network (:func:`learningchain.cli.demo.start_network`: node 0 first, the others
    peered with it, nodes 0 and 1 mining) on 127.0.0.1, on the same genesis as the hosts."""
    from learningchain.cli.demo import start_network
    label = "loopback (the demo's network)"
    print(f"== {label}: {n} nodes, {rounds} rounds", flush=True)
    files, genesis, _ = network_files(out, n)
    with Network(out) as net:
        start_network(net, n, files[0].parent, genesis, miners=2)
        result = measure(net, label, rounds, timing_rounds)
        net.stop_all()
    return result


# --- 2 and 3: the hosts --------------------------------------------------------------------

def netns_run(hosts: Hosts, out: Path, rounds: int, timing_rounds: int, tls: bool, partition_rounds: int = 0,
              rep: int = 1) -> dict:
    label = f"netns, {'TLS' if tls else 'plain HTTP'} #{rep}"
    print(f"== {label}: {hosts.n} hosts, {rounds} rounds", flush=True)
    files, genesis, _ = network_files(out, hosts.n)
    tls_dir = tls_init(hosts, out) if tls else None
    with Network(out) as net:
        start_nodes(net, hosts, files, genesis, miners=2, tls_dir=tls_dir)
        result = measure(net, label, rounds, timing_rounds)
        if partition_rounds:
            result["partition"] = partition(hosts, net, partition_rounds, hosts.n)
        net.stop_all()
    return result


def partition_run(hosts: Hosts, out: Path, rounds: int, tls: bool, quorum: int) -> dict:
    """A network whose quorum is the majority (3 of 5): two rounds, then the partition."""
    print(f"== netns, {'TLS' if tls else 'plain HTTP'}, quorum {quorum}: partition only", flush=True)
    files, genesis, _ = network_files(out, hosts.n, quorum=quorum)
    tls_dir = tls_init(hosts, out) if tls else None
    with Network(out) as net:
        start_nodes(net, hosts, files, genesis, miners=2, tls_dir=tls_dir)
        wait_for(lambda: int(status(net.nodes[0]).get("round", 0)) >= 3, 120, "two rounds", net)
        result = {"label": f"netns, {'TLS' if tls else 'plain HTTP'}",
                  "partition": partition(hosts, net, rounds, quorum)}
        net.stop_all()
    return result


def cross_backoff(hosts: Hosts, net: Network) -> list[float]:
    """Seconds each node still backs off from each peer across the cut (its /peers)."""
    split = hosts.n - hosts.minority
    out = []
    for n in net.nodes:
        mine = n.index >= split
        for p in (get(n.url, "/peers") or {}).get("peers", []):
            other = next((i for i in range(hosts.n) if p["url"].endswith(f"//{hosts.addr(i)}:{hosts.port}")), None)
            if other is not None and (other >= split) != mine:
                out.append(float(p.get("backoff_seconds", 0.0)))
    return out


def partition(hosts: Hosts, net: Network, rounds: int, quorum: int) -> dict:
    nodes = net.nodes
    split = hosts.n - hosts.minority
    majority = nodes[:split]
    wait_for(lambda: converged(nodes), 60, "the network to converge before the cut", net, interval=0.1)
    r0 = int(status(nodes[0])["round"])
    print(f"== partition {split}|{hosts.minority} at round {r0}, for {rounds} rounds of the majority", flush=True)
    hosts.cut()
    t_cut = time.monotonic()
    try:
        wait_for(lambda: int(status(nodes[0]).get("round", 0)) >= r0 + rounds, 60 + 30 * rounds,
                 "the majority's rounds", net)
        wait_for(lambda: converged(majority), 60, "the majority to agree", net, interval=0.1)
        cut_s = time.monotonic() - t_cut
        accepted = [i for r in range(r0, r0 + rounds)
                    for i in ((get(nodes[0].url, f"/rounds/{r}") or {}).get("accepted") or [])]
        on_majority = set(main_chain_txs(nodes[0].url))
        minority_rounds = [int(status(n).get("round", 0)) for n in nodes[split:]]
        backoff = cross_backoff(hosts, net)
    finally:
        hosts.heal()
    t_heal = time.monotonic()
    height = int(status(nodes[0])["height"])  # the majority's height when the trunk came back
    caught: dict[str, float] = {}

    def all_caught_up() -> bool:
        """Every node holds node 0's block at that height (the minority was below it: it synced)."""
        want = (get(nodes[0].url, f"/blocks/{height}") or {}).get("hash")
        for n in nodes:
            if n.name not in caught and want and (get(n.url, f"/blocks/{height}") or {}).get("hash") == want:
                caught[n.name] = time.monotonic() - t_heal
        return len(caught) == len(nodes)
    try:
        wait_for(all_caught_up, 120, "every node to hold the majority's chain", net, interval=0.05)
        heal_s = max(caught.values())
    except LearningChainError:
        heal_s = None
    try:  # the same tip and model on every node at one moment (blocks keep coming every ~0.2 s)
        wait_for(lambda: converged(nodes), 60, "one tip", net, interval=0.05)
        same_tip_s = time.monotonic() - t_heal
    except LearningChainError:
        same_tip_s = None
    lost = {n.name: len(on_majority - set(main_chain_txs(n.url))) for n in nodes}
    return {"rounds": rounds, "from_round": r0, "cut_s": cut_s, "accepted": len(accepted),
            "accepted_missing_from_majority_chain": len(set(accepted) - on_majority),
            "majority_txs": len(on_majority), "minority_rounds": minority_rounds, "heal_s": heal_s,
            "same_tip_s": same_tip_s, "caught": caught,
            "lost": lost, "quorum": quorum, "backoff": (min(backoff), max(backoff)) if backoff else None}


# --- the table ---------------------------------------------------------------------------------

def fmt(x, spec=".3f", unit=" s"):
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def report(args, runs: list[dict], proxy: dict) -> None:
    print()
    print(f"multihost: {args.hosts} hosts in network namespaces, links tbf {args.rate} + link proxy "
          f"{args.delay_ms:g} ms one-way, {100 * args.loss:g} % segment loss; {args.rounds} rounds, digits MLP, "
          f"fedavg, quorum {args.hosts}, nodes 0 and 1 mine; round time and CPU over {args.timing_rounds} more rounds")
    print(f"{'run':<30} {'accuracy':>9} {'median round':>13} {'mean round':>11} {'node CPU/round':>15} "
          f"{'PoW CPU/round':>14} {'stale':>6}")
    learning = [r for r in runs if "accuracy" in r]
    for r in learning:
        cpu = r["cpu"]
        print(f"{r['label']:<30} {r['accuracy']:>9.4f} {fmt(r['median_round_s']):>13} {fmt(r['mean_round_s']):>11} "
              f"{fmt(cpu[0]):>15} {fmt(cpu[1]):>14} {fmt(r['stale'] and 100 * r['stale'], '.1f', ' %'):>6}")
    print(f"(accuracy at round {args.rounds}; round: close to close of the closing blocks' timestamps, rounds "
          f"{args.rounds + 1}..{args.rounds + args.timing_rounds}; CPU per round over those: the node processes' own, "
          f"all threads, and their proof-of-work worker processes'; stale: blocks found off the main chain, rounds "
          f"1..{args.rounds})")
    base = learning[0]
    for r in learning:
        print(f"{r['label']}: {r['agreement']}")
        if r is not base:
            print(f"  accuracy {100 * (r['accuracy'] - base['accuracy']):+.2f} points against loopback "
                  f"(target within 0.5); round {r['median_round_s'] / base['median_round_s']:.2f}x loopback "
                  f"(median), {r['mean_round_s'] / base['mean_round_s']:.2f}x (mean)")
    plain = [r for r in learning if r["label"].startswith("netns, plain HTTP")]
    tls = [r for r in learning if r["label"].startswith("netns, TLS")]
    if plain and tls:
        def pooled(rs):
            gaps = [g for r in rs for g in r["gaps"]]
            cpu = sum(r["cpu"][0] for r in rs) / len(rs)
            return med(gaps), statistics.mean(gaps), cpu, len(gaps)
        (pm, pa, pc, pn), (tm, ta, tc, tn) = pooled(plain), pooled(tls)
        print(f"TLS cost on the same hosts ({len(plain)} plain and {len(tls)} TLS runs, alternating; {pn} and {tn} "
              f"rounds): round {tm:.3f} s vs {pm:.3f} s median ({tm / pm:.2f}x), {ta:.3f} s vs {pa:.3f} s mean "
              f"({ta / pa:.2f}x); node CPU per round {tc:.3f} s vs {pc:.3f} s ({tc / pc:.2f}x)")
    for r in runs:
        p = r.get("partition")
        if not p:
            continue
        how = "by the round timeout" if p["quorum"] > args.hosts - 2 else "at quorum"
        print(f"partition {args.hosts - 2}|2 ({r['label']}, quorum {p['quorum']}): trunk cut at round "
              f"{p['from_round']} for {p['rounds']} majority rounds ({p['cut_s']:.1f} s, closed {how}); "
              f"{p['accepted']} updates accepted meanwhile ({p['accepted_missing_from_majority_chain']} not on the "
              f"majority's chain); the minority stayed at rounds {p['minority_rounds']}")
        b = p["backoff"]
        print(f"  every node held the majority's chain as of the heal {fmt(p['heal_s'], '.2f')} after healing (target within "
              f"10 s; per node: {', '.join(f'{k} {v:.2f} s' for k, v in sorted(p['caught'].items()))}); "
              f"one tip and model on all at once after {fmt(p['same_tip_s'], '.2f')}")
        print(f"  peers across the cut were backing off "
              f"{fmt(b and b[0], '.1f')} .. {fmt(b and b[1], '.1f')} at the heal; updates of the "
              f"majority's chain ({p['majority_txs']}) missing afterwards, per node: "
              f"{', '.join(f'{k} {v}' for k, v in p['lost'].items())}")
    if proxy:
        seg = proxy.get("segments", 0)
        print(f"link proxies: {proxy.get('connections', 0)} connections ({proxy.get('syn_lost', 0)} SYNs lost, "
              f"{proxy.get('refused', 0)} refused while cut), {proxy.get('bytes', 0) / 1e6:.1f} MB, "
              f"{proxy.get('segments_lost', 0)} of {seg} segments lost "
              f"({100 * proxy.get('segments_lost', 0) / max(1, seg):.2f} %)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hosts", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--timing-rounds", type=int, default=20, help="rounds after --rounds that round time and CPU "
                                                                  "are measured over (default 20)")
    p.add_argument("--partition-rounds", type=int, default=5)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--loss", type=float, default=0.01)
    p.add_argument("--rate", default="20mbit")
    p.add_argument("--no-tls", action="store_true", help="plain HTTP only (no TLS run, no TLS cost)")
    p.add_argument("--reps", type=int, default=2, help="plain and TLS runs on the hosts, alternating (default 2 each)")
    p.add_argument("--out", help="directory for the runs (default: a temporary one)")
    args = p.parse_args()
    why = available()
    if why:
        print(f"bench/multihost.py: {why}", file=sys.stderr)
        return 1
    out = Path(args.out or tempfile.mkdtemp(prefix="lc-multihost-"))
    runs = [loopback(out / "loopback", args.hosts, args.rounds, args.timing_rounds)]
    with Hosts(args.hosts, out / "hosts", minority=2, delay_ms=args.delay_ms, loss=args.loss,
               rate=args.rate) as hosts:
        tls = not args.no_tls
        for rep in range(1, args.reps + 1):
            last = rep == args.reps
            runs.append(netns_run(hosts, out / f"plain{rep}", args.rounds, args.timing_rounds, tls=False,
                                  partition_rounds=args.partition_rounds if last and not tls else 0, rep=rep))
            if tls:
                runs.append(netns_run(hosts, out / f"tls{rep}", args.rounds, args.timing_rounds, tls=True,
                                      partition_rounds=args.partition_rounds if last else 0, rep=rep))
        if args.partition_rounds:
            runs.append(partition_run(hosts, out / "quorum3", args.partition_rounds, tls, quorum=args.hosts // 2 + 1))
        hosts.stop_proxies()
        proxy = hosts.proxy_stats()
    report(args, runs, proxy)
    print(f"(runs in {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
