"""TLS cost on a small local network: round time and CPU per round, HTTPS between peers against plain HTTP, one run.

    .venv/bin/python bench/tls.py [--nodes 4] [--rounds 8] [--reps 2]

Runs the demo's network (real ``node.py run`` processes on 127.0.0.1, digits,
4 IID partitions, nodes 0 and 1 mining, every node peered with node 0) twice
per repetition, alternating plain HTTP and TLS (``node.py tls init``'s CA and
certificates, ``--tls-cert/--tls-key/--tls-ca``: every peer exchange is HTTPS
with mutual TLS and the chain-identity check), so both see the same machine
load. Per network, between the close of round 1 and that of round R+1:

* round time: median of close-to-close intervals, from the closing blocks'
  header timestamps (and the wall time per round as seen by polling);
* CPU per round: user + system seconds of every node process and its miner
  workers (``/proc/<pid>/stat`` of the process trees), summed over the nodes,
  divided by R; and of the node processes alone (where TLS runs: the
  proof-of-work workers search whatever the transport, for as long as the
  round lasts);
* the peers' own gossip round trip (``/status`` timings: mean request time).

Then a request-level comparison against node 0 while the network still runs:
``GET /tip`` on a kept-alive connection, and on a fresh connection each time
(TCP + TLS handshake + the chain-identity check), the node's
``BoundedSession`` as the client. Loopback only: the netns benchmarks
measure the multi-host version.
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

import requests  # noqa: E402

from learningchain.cli import demo, processes  # noqa: E402
from learningchain.node import keyfile, tls  # noqa: E402
from learningchain.node.p2p.httpclient import BoundedSession  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def make_pki(out: Path, dirs: list[Path]) -> list[tls.TlsConfig]:
    ca_key, ca = tls.new_ca("bench")
    out.mkdir(parents=True, exist_ok=True)
    tls.write_file(out / "ca.pem", tls.cert_pem(ca))
    configs = []
    for i, d in enumerate(dirs):
        key, cert = tls.issue_node_cert(ca_key, ca, keyfile.load_or_create_key(d), list(tls.DEFAULT_NAMES), f"node{i}")
        tls.write_file(out / f"node{i}.pem", tls.cert_pem(cert))
        tls.write_file(out / f"node{i}.key", tls.key_pem(key), secret=True)
        configs.append(tls.TlsConfig(str(out / f"node{i}.pem"), str(out / f"node{i}.key"), str(out / "ca.pem")))
    return configs


def tree_cpu(pids: list[int]) -> tuple[float, float]:
    """User + system CPU seconds of ``pids`` alone, and with all their
    descendants alive now (the miner's proof-of-work workers)."""
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / TICK
    total, todo = 0.0, list(pids)
    seen = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += cpu.get(pid, 0.0)
        todo += [child for child, ppid in parent.items() if ppid == pid]
    return sum(cpu.get(pid, 0.0) for pid in pids), total


class Client:
    def __init__(self, ca: str | None):
        self.s = requests.Session()
        self.s.trust_env = False
        if ca:
            self.s.verify = ca

    def get(self, url: str, timeout: float = 5.0):
        try:
            r = self.s.get(url, timeout=timeout)
        except requests.RequestException:
            return None
        return r.json() if r.status_code == 200 else None


def run_network(n: int, rounds: int, out: Path, use_tls: bool) -> dict:
    part_dir = demo.partitions_for("digits", n, out)
    config = demo.make_config(n, "digits", "fedavg", 0)
    genesis = demo.write_genesis(config, out / "genesis.json")
    dirs = [out / "nodes" / f"node{i}" for i in range(n)]
    pki = make_pki(out / "pki", dirs) if use_tls else [None] * n
    scheme = "https" if use_tls else "http"
    ports = [processes.free_port() for _ in range(n)]
    urls = [f"{scheme}://127.0.0.1:{p}" for p in ports]
    client = Client(pki[0].ca if use_tls else None)
    net = processes.Network(out)

    def flags(i):
        c = pki[i]
        return ("--tls-cert", c.cert, "--tls-key", c.key, "--tls-ca", c.ca) if c else ()
    try:
        net.start(0, port=ports[0], dataset=part_dir / "node0.npz", genesis=genesis, mine=True,
                  data_dir=dirs[0], extra=flags(0))
        processes.wait_for(lambda: client.get(urls[0] + "/tip"), 60, "node 0", net)
        for i in range(1, n):
            net.start(i, port=ports[i], peers=[urls[0]], dataset=part_dir / f"node{i}.npz", genesis=genesis,
                      mine=i < 2, data_dir=dirs[i], extra=flags(i))
        for u in urls[1:]:
            processes.wait_for(lambda u=u: client.get(u + "/tip"), 60, u, net)

        def closed(r):
            doc = client.get(urls[0] + f"/rounds/{r}?wait=2", timeout=5)
            return doc if doc and doc.get("status") == "closed" and doc.get("metrics") else None
        pids = [x.popen.pid for x in net.nodes]
        processes.wait_for(lambda: closed(1), 120, "round 1", net, interval=0.0)
        t0, cpu0 = time.monotonic(), tree_cpu(pids)
        before = [client.get(u + "/status") for u in urls]
        docs = [closed(1)]
        for r in range(2, rounds + 2):
            docs.append(processes.wait_for(lambda r=r: closed(r), 60, f"round {r}", net, interval=0.0))
        wall, cpu1 = time.monotonic() - t0, tree_cpu(pids)
        own, cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        after = [client.get(u + "/status") for u in urls]
        height = after[0]["height"]
        blocks = client.get(urls[0] + f"/chain?start=0&limit={height + 1}")["blocks"]
        heights = [client.get(u + "/tip")["height"] for u in urls]
        micro = request_costs(urls[0], pki[1])
    finally:
        net.stop_all()
    ts = {b["height"]: b["timestamp"] for b in blocks}
    closes = [ts[d["closed_at"]] for d in docs]
    intervals = [(b - a) / 1000 for a, b in zip(closes, closes[1:])]

    def gossip_ms():
        secs = sum(b["timings"].get("gossip_s", 0) - a["timings"].get("gossip_s", 0) for a, b in zip(before, after))
        count = sum(b["timings"].get("gossip_count", 0) - a["timings"].get("gossip_count", 0)
                    for a, b in zip(before, after))
        return 1000 * secs / count if count else float("nan")
    return {"tls": use_tls, "round": statistics.median(intervals), "wall_round": wall / rounds,
            "cpu_round": cpu / rounds, "cpu_node_round": own / rounds, "gossip_ms": gossip_ms(),
            "accuracy": docs[-1]["metrics"].get("accuracy"),
            "synced": len(set(heights)) <= 2, "micro": micro}


def request_costs(url: str, tls_config, n_keep: int = 300, n_fresh: int = 60) -> dict:
    """ms per GET /tip with the node's own client: kept-alive, and a new connection each time."""
    session = BoundedSession((1.0, 3.0), 5.0, 1 << 16, tls=tls_config)
    try:
        session.request("GET", url + "/tip")
        t = time.perf_counter()
        for _ in range(n_keep):
            session.request("GET", url + "/tip")
        keep = (time.perf_counter() - t) / n_keep
    finally:
        session.close()
    t = time.perf_counter()
    for _ in range(n_fresh):
        s = BoundedSession((1.0, 3.0), 5.0, 1 << 16, tls=tls_config)
        s.request("GET", url + "/tip")
        s.close()
    fresh = (time.perf_counter() - t) / n_fresh
    return {"keep_ms": 1000 * keep, "fresh_ms": 1000 * fresh}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="lc-bench-tls-") as tmp:
        for rep in range(args.reps):
            for use_tls in (False, True):
                out = Path(tmp) / f"{'tls' if use_tls else 'plain'}{rep}"
                res = run_network(args.nodes, args.rounds, out, use_tls)
                runs.append(res)
                print(f"rep {rep} {'TLS  ' if use_tls else 'plain'}: round {res['round']:.3f} s (wall "
                      f"{res['wall_round']:.3f} s), CPU {res['cpu_round']:.3f} s/round over {args.nodes} nodes "
                      f"({res['cpu_node_round']:.3f} s without the PoW workers), "
                      f"gossip request {res['gossip_ms']:.1f} ms, accuracy {res['accuracy']:.4f}, "
                      f"GET /tip kept-alive {res['micro']['keep_ms']:.2f} ms, new connection "
                      f"{res['micro']['fresh_ms']:.2f} ms{'' if res['synced'] else ' (nodes NOT in sync)'}",
                      flush=True)

    def med(key, use_tls, sub=None):
        return statistics.median((r[key][sub] if sub else r[key]) for r in runs if r["tls"] == use_tls)
    print(f"\n{args.nodes} nodes, {args.rounds} rounds x {args.reps} reps each, loopback, same run")
    print(f"{'':<36}{'plain':>10}{'TLS':>10}{'TLS/plain':>11}")
    for label, key, sub, unit in (("round time (header timestamps)", "round", None, "s"),
                                  ("round time (wall, polled)", "wall_round", None, "s"),
                                  ("CPU per round (all nodes)", "cpu_round", None, "s"),
                                  ("  of it node processes (no PoW)", "cpu_node_round", None, "s"),
                                  ("gossip request (node counters)", "gossip_ms", None, "ms"),
                                  ("GET /tip, kept-alive connection", "micro", "keep_ms", "ms"),
                                  ("GET /tip, new connection each", "micro", "fresh_ms", "ms")):
        a, b = med(key, False, sub), med(key, True, sub)
        print(f"{label:<36}{a:>8.3f}{unit:<2}{b:>8.3f}{unit:<2}{b / a:>10.2f}x")


if __name__ == "__main__":
    main()
