"""Round cost of the default demo network, bytes on the wire, and sync rate.

    .venv/bin/python bench/round.py [--rounds 10] [--nodes 4] [--sync-blocks 1000] [--compression q8|topk]
    .venv/bin/python bench/round.py --sync-only [--sync-blocks 1000]     (section 3 alone)

1. Runs the default demo network (real processes, real HTTP) and reports the
   time per round and what it is made of. Sources, named in the table:
   closing-block header timestamps (round), the nodes' logs (training), tx
   timestamps (when a node started its update), the nodes' own counters
   (``/status`` -> ``timings``: train, proof-of-work search, validation,
   gossip requests), and an in-process replay of node 0's store (validation
   and aggregation, signatures checked).
2. Bytes sent per node per round (``/status`` traffic counters) against the
   raw float32 size of the weights, split by message type
   (``/status`` -> ``traffic`` -> ``by_type``). With ``--compression`` every
   node sends its updates 8-bit quantised (q8) or top-k sparsified
   (``node.py run --compression``, learningchain/learning/compression.py).
3. Sync: a 1,000-block chain (one round of quorum-many signed updates every
   4 blocks, easy target) is built with a Ledger and the miner's search, stored
   in a node's data dir and served; a fresh node peered to it is timed until
   it reaches the same height.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from learningchain.cli import demo, demo_rounds  # noqa: E402
from learningchain.cli import processes  # noqa: E402
from learningchain.ledger.block import Block  # noqa: E402
from learningchain.ledger.chain import Chain  # noqa: E402
from learningchain.ledger.genesis import make_genesis  # noqa: E402
from learningchain.node.chainstate import REPLAY_NOW_MS, Ledger  # noqa: E402
from learningchain.node.store import Store, store_path  # noqa: E402

TRAINED = re.compile(r"trained round (\d+) in ([\d.]+) s; submitting ([0-9a-f]+)")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_s(x, unit="s"):
    if x is None:
        return "n/a"
    return f"{x * 1000:.1f} ms" if unit == "ms" else f"{x:.3f} s"


# --- 1 and 2: the demo network --------------------------------------------------------

def run_network(n: int, rounds: int, out: Path, compression: str | None = None, miners: int = 2) -> dict:
    part_dir = demo.partitions_for("digits", n, out)
    config = demo.make_config(n, "digits", "fedavg", 0)
    genesis = demo.write_genesis(config, out / "genesis.json")
    net = processes.Network(out)
    try:
        demo.start_network(net, n, part_dir, genesis, miners=miners,
                           extra=("--compression", compression) if compression else ())
        t0 = time.monotonic()
        # counters between the closes of round 1 and round R+1: both snapshots fall
        # at the same point of a round, so R rounds of traffic lie between them
        processes.wait_for(lambda: demo_rounds.closed_round(net.nodes[0].url, 1), 60, "round 1", net)
        before = [processes.get(x.url, "/status") for x in net.nodes]
        entries = demo_rounds.follow_rounds(net, rounds + 1, set(), timeout=30 + 10 * rounds, tty=False)
        after = [processes.get(x.url, "/status") for x in net.nodes]
        wall = time.monotonic() - t0
        hub = net.nodes[0].url
        details = [processes.get(hub, f"/rounds/{r}") for r in range(1, rounds + 2)]
        tx_ts = {}
        for d in details:
            for u in d["updates"]:
                tx_ts[u["id"]] = processes.get(hub, f"/txs/{u['id']}")["tx"]["timestamp"]
        blocks = processes.get(hub, f"/chain?start=0&limit={entries[-1]['height'] + 1}")["blocks"]
    finally:
        net.stop_all()
    train = {}  # (round, txid prefix) -> seconds
    for i in range(n):
        for m in TRAINED.finditer((out / f"node{i}.log").read_text()):
            train[(int(m.group(1)), m.group(3))] = float(m.group(2))
    return {"config": config, "details": details, "tx_ts": tx_ts, "blocks": blocks, "train": train,
            "wall": wall, "found": sum(((b.get("miner") or {}).get("blocks_found", 0)
                                        - (a.get("miner") or {}).get("blocks_found", 0)) for a, b in zip(before, after)),
            "grown": after[0]["height"] - before[0]["height"], "sent": [b["traffic"]["sent"] - a["traffic"]["sent"] for a, b in zip(before, after)],
            "by_type": [diff_types(a, b) for a, b in zip(before, after)],
            "timings": [diff_timings(a, b) for a, b in zip(before, after)],
            "rounds": rounds, "store": out / "nodes" / "node0", "compression": compression}


def diff_types(a: dict, b: dict) -> dict:
    """Per message type: (bytes sent, messages) between two /status documents."""
    ta, tb = a["traffic"].get("by_type", {}), b["traffic"].get("by_type", {})
    return {k: (v["sent"] - ta.get(k, {}).get("sent", 0), v["messages"] - ta.get(k, {}).get("messages", 0))
            for k, v in tb.items()}


def diff_timings(a: dict, b: dict) -> dict:
    ta, tb = a.get("timings", {}), b.get("timings", {})
    return {k: v - ta.get(k, 0) for k, v in tb.items()}


def breakdown(run: dict) -> list[tuple[str, str, str]]:
    ts = {b["height"]: b["timestamp"] for b in run["blocks"]}
    rows, round_s, train_s, start_s, ready_s, n_blocks = [], [], [], [], [], []
    prev_close = None
    for d in run["details"]:
        close = ts.get(d["closed_at"])
        if prev_close is not None and close is not None:
            r = d["round"]
            trained = [run["train"].get((r, u["id"][:12])) for u in d["updates"]]
            starts = [run["tx_ts"][u["id"]] for u in d["updates"]]
            ready = [s + 1000 * (t or 0) for s, t in zip(starts, trained)]
            round_s.append((close - prev_close) / 1000)
            train_s.append(max(t for t in trained if t is not None) if any(trained) else None)
            start_s.append((max(starts) - prev_close) / 1000)
            ready_s.append((close - max(ready)) / 1000)
            n_blocks.append(d["closed_at"] - d["opened_at"])
        prev_close = close
    rows.append(("round (close to close)", fmt_s(med(round_s)), "closing blocks' header timestamps"))
    rows.append(("  round opens -> last node starts training", fmt_s(med(start_s)),
                 "tx timestamps against the closing header's (its template time: the search is in it)"))
    rows.append(("  train (slowest node)", fmt_s(med(train_s)), "node logs: 'trained round r in X s'"))
    rows.append(("  last update ready -> closing block built", fmt_s(med(ready_s)),
                 "tx gossip to the miner + waiting for the next template"))
    rows.append(("  blocks per round", f"{med(n_blocks):.1f}" if n_blocks else "n/a", "/rounds/<r>"))
    heights = sorted(h for h in ts if h > 0)  # genesis carries the network's fixed timestamp
    if len(heights) > 1:
        first, last = heights[0], heights[-1]
        rows.append(("block interval (mean, whole run)", f"{(ts[last] - ts[first]) / (last - first):.1f} ms",
                     f"header timestamps; genesis target_block_ms = {run['config'].target_block_ms} ms"))
    found, grown = run["found"], run["grown"]
    if found:
        stale = max(0, found - grown)
        rows.append(("stale blocks (found by the miners, not on the main chain)",
                     f"{stale} / {found} = {100 * stale / found:.1f} %",
                     "miners' /status blocks_found against the main chain's growth, rounds 2..R+1"))
    rows += counter_rows(run)
    rows += replay_costs(run["store"], run["config"])
    rows.append(("rounds run / wall time", f"{run['rounds'] + 1} / {run['wall']:.1f} s",
                 f"{run['wall'] / (run['rounds'] + 1):.2f} s per round as seen by the demo"))
    return rows


def counter_rows(run: dict) -> list[tuple[str, str, str]]:
    """The nodes' own timings (``/status`` -> ``timings``) over rounds 2..R+1."""
    t = run["timings"]

    def per(name: str, nodes) -> float | None:
        secs = sum(t[i].get(f"{name}_s", 0) for i in nodes)
        count = sum(t[i].get(f"{name}_count", 0) for i in nodes)
        return secs / count if count else None

    def total(name: str, i: int) -> float:
        return t[i].get(f"{name}_s", 0)

    every = range(len(t))
    src = "/status timings of every node"
    found = t[0].get("mine_count", 0)
    gossip = [total("gossip", i) / run["rounds"] for i in every]
    return [("  train (mean per update)", fmt_s(per("train", every)), src),
            ("  mine: proof-of-work search per block found", fmt_s(per("mine", [0])),
             f"node 0's miner: {total('mine', 0):.2f} s searching, {found} blocks found; "
             f"target_block_ms = {run['config'].target_block_ms} ms by genesis"),
            ("  validate block (not closing)", fmt_s(per("validate", every), "ms"), src),
            ("  validate closing block (with aggregation)", fmt_s(per("validate_closing", every), "ms"), src),
            ("  evaluate G(r) on the test set", fmt_s(per("evaluate", every), "ms"), src),
            ("  gossip: one request to a peer (round trip)", fmt_s(per("gossip", every), "ms"),
             f"{src}; concurrent, 8 threads per node"),
            ("  gossip: request time per node per round", fmt_s(med(gossip)),
             "summed over requests (they overlap), median node")]


def replay_costs(data_dir: Path, config) -> list[tuple[str, str, str]]:
    """Validation and aggregation, timed by replaying node 0's stored chain."""
    from learningchain.learning import aggregation
    with Store(store_path(data_dir)) as store:
        blocks = list(store.iter_blocks())
    chain = Chain(blocks[0])
    closing, with_txs, empty, agg = [], [], [], []
    for b in blocks[1:]:
        base = chain.tip_state.model  # G(r-1): what compressed updates are deltas from
        t = time.perf_counter()
        chain.add_block(b, REPLAY_NOW_MS, verify_signatures=True)
        dt = time.perf_counter() - t
        (closing if b.commitment else with_txs if b.txs else empty).append(dt)
        if b.commitment:
            ids = set(b.commitment.get("updates", []))
            txs = [chain.find_tx(i)[0] for i in ids if chain.find_tx(i)]
            ups = [aggregation.Update(x.id, x.sender, x.full_weights(base), x.num_samples)
                   for x in txs if not x.is_skip]
            t = time.perf_counter()
            aggregation.aggregate(config.rule, ups, config.params)
            agg.append(time.perf_counter() - t)
    src = "replay of node 0's store in-process (signatures checked)"
    return [("  validate closing block (txs + aggregation)", fmt_s(med(closing), "ms"), src),
            ("  validate block with txs, not closing", fmt_s(med(with_txs), "ms"), src),
            ("  validate empty block", fmt_s(med(empty), "ms"), src),
            (f"  aggregate ({config.rule}, one round)", fmt_s(med(agg), "ms"),
             "aggregation.aggregate on each round's stored updates")]


def traffic_rows(run: dict) -> list[tuple[str, str, str]]:
    from learningchain.learning.models import build_model
    raw = sum(a.size * 4 for a in build_model(run["config"].model_spec).initial_weights().values())
    rows = [("raw float32 weights", f"{raw} B", "one model")]
    per = [s / run["rounds"] for s in run["sent"]]
    for i, p in enumerate(per):
        rows.append((f"node{i} sent per round", f"{p:,.0f} B", f"{p / raw:.2f}x raw"
                     + ("  (miner, hub of the star)" if i == 0 else "")))
    mean = sum(per) / len(per)
    rows.append(("mean per node per round", f"{mean:,.0f} B",
                 f"{mean / raw:.2f}x raw (goal < 1.4x): {'met' if mean / raw < 1.4 else 'NOT met'}"))
    kinds = sorted({k for d in run["by_type"] for k in d},
                   key=lambda k: -sum(d.get(k, (0, 0))[0] for d in run["by_type"]))
    n_nodes = len(run["by_type"])
    for k in kinds:
        b = sum(d.get(k, (0, 0))[0] for d in run["by_type"]) / n_nodes / run["rounds"]
        m = sum(d.get(k, (0, 0))[1] for d in run["by_type"]) / n_nodes / run["rounds"]
        rows.append((f"  {k}", f"{b:,.0f} B", f"{b / raw:.2f}x raw, {m:.1f} messages "
                     f"(requests we made + answers we gave)"))
    from learningchain.core.encoding import canonical_json
    from learningchain.node.p2p.wire import gzip_encode
    with Store(store_path(run["store"])) as store:
        txs = [t for b in store.iter_blocks() for t in b.txs]
    sizes = [t.size for t in txs]
    n = len(per)
    if sizes:
        tx = statistics.median(sizes)
        rows.append(("one update tx, canonical JSON", f"{tx:,.0f} B", f"{tx / raw:.2f}x raw (base64 in JSON"
                     + (f", {run['compression']})" if run.get("compression") else ")")))
        tx = statistics.median(len(gzip_encode(canonical_json(t.to_dict()))) for t in txs)
        rows.append(("one update tx on the wire (gzip)", f"{tx:,.0f} B", f"{tx / raw:.2f}x raw "
                     "(learningchain.node.p2p.wire.gzip_encode, as peers send it)"))
        floor = (n - 1) * tx
        rows.append(("floor: every update reaches N-1 nodes", f"{floor:,.0f} B",
                     f"{floor / raw:.2f}x raw per node per round; measured mean is "
                     f"{mean / floor:.2f}x this floor"))
    return rows


# --- 3: sync rate -------------------------------------------------------------------------

def build_chain(data_dir: Path, n_blocks: int):
    from dataclasses import replace

    import numpy as np

    from learningchain.core.crypto import PrivateKey
    from learningchain.ledger.genesis import default_config
    from learningchain.ledger.tx import UpdateTx
    from miner.pow import search
    easy = 1 << 250  # ~64 hashes per block
    config = replace(default_config(4), initial_target=easy, pow_limit=easy, retarget_window=10**6,
                     timestamp=1_700_000_000_000)
    data_dir.mkdir(parents=True, exist_ok=True)
    from learningchain.node.keyfile import load_or_create_key
    load_or_create_key(data_dir)  # the node serving this store needs its key before the store exists
    (data_dir / "genesis.json").write_text(json.dumps(config.to_dict()))
    genesis = make_genesis(config)
    keys = [PrivateKey.from_secret(500 + i) for i in range(4)]
    miner = PrivateKey.from_secret(99)
    ledger = Ledger(genesis, Store(store_path(data_dir)))
    chain = ledger.chain
    for h in range(1, n_blocks + 1):
        txs = []
        if h % 4 == 1:
            model, digest = chain.model()
            txs = [UpdateTx.create(k, chain.tip_state.round, digest,
                                   {n: (a + np.float32(0.01 * (i + 1))).astype(np.float32)
                                    for n, a in model.items()}, 100, timestamp=config.timestamp)
                   for i, k in enumerate(keys)]
        block = chain.build_block(miner.public_hex, txs, chain.tip.header.timestamp + 500)
        nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 40)
        ledger.submit_block(Block(block.header.with_nonce(nonce), block.txs, block.commitment,
                                  block.config), REPLAY_NOW_MS)
    height, n_txs = chain.height, sum(len(b.txs) for b in chain.main_chain(0, n_blocks + 1))
    ledger.store.close()
    return data_dir / "genesis.json", height, n_txs


def sync_rate(out: Path, n_blocks: int) -> list[tuple[str, str, str]]:
    t = time.perf_counter()
    genesis, height, n_txs = build_chain(out / "nodes" / "node0", n_blocks)
    built = time.perf_counter() - t
    net = processes.Network(out)
    try:
        src = net.start(0, genesis=genesis)
        processes.wait_ready(net, [src])
        t = time.perf_counter()
        fresh = net.start(1, genesis=genesis, peers=[src.url])
        processes.wait_ready(net, [fresh])
        ready = time.perf_counter() - t
        processes.wait_for(lambda: (processes.get(fresh.url, "/status") or {}).get("height") == height,
                      300, "the fresh node to sync", net, interval=0.05)
        total = time.perf_counter() - t
    finally:
        net.stop_all()
    syncing = total - ready
    return [("chain built", f"{height} blocks, {n_txs} txs", f"in {built:.1f} s (Ledger + miner search)"),
            ("fresh node: start to API up", f"{ready:.2f} s", "process start, imports"),
            ("fresh node: API up to same height", f"{syncing:.2f} s", "sync over HTTP, full validation"),
            ("sync rate", f"{height / syncing:,.0f} blocks/s", f"{n_txs / syncing:,.0f} txs/s"
             f"; {height / total:,.0f} blocks/s counting process start")]


def table(title: str, rows) -> str:
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{a.ljust(w0)}  {b.rjust(w1)}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--sync-blocks", type=int, default=1000)
    ap.add_argument("--compression", choices=("q8", "topk"), help="updates sent compressed by every node")
    ap.add_argument("--miners", type=int, default=2, help="nodes that mine (the demo's default, 2)")
    ap.add_argument("--sync-only", action="store_true", help="only section 3 (sync), no demo network")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp:
        tmp = Path(tmp)
        if args.sync_only:
            print(f"== sync of a fresh node from a peer holding {args.sync_blocks} blocks")
            print(table("sync", sync_rate(tmp / "sync", args.sync_blocks)))
            return 0
        print(f"== demo network: {args.nodes} nodes, {args.rounds} rounds (digits, fedavg"
              f"{', ' + args.compression + ' updates' if args.compression else ''})")
        run = run_network(args.nodes, args.rounds, tmp / "demo", args.compression, args.miners)
        print()
        print(table(f"time per round (median over rounds 2..{args.rounds + 1})", breakdown(run)))
        print()
        print(table(f"bytes sent per node per round (rounds 2..{args.rounds + 1})", traffic_rows(run)))
        print()
        print(f"== sync of a fresh node from a peer holding {args.sync_blocks} blocks")
        print(table("sync", sync_rate(tmp / "sync", args.sync_blocks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
