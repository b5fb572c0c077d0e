"""The round page's update distances (learningchain/node/round_distances.py,
learningchain/node/web/distances.py) on a large model: what ``GET /rounds/<r>``
costs, before and after the distances moved to the evaluator thread.

A real Node (SQLite store, real ECDSA, real proof of work on an easy target,
deep blocks retired as in a running node) on a network of ``--senders`` listed
keys with an MLP of ``--features`` x ``--hidden`` x 10 (default 64 x 3000 x 10:
225k parameters) holds ``--rounds`` closed rounds of one dense update per sender.
Then, in-process (Flask's test client, the node's own routes):

* before: the previous code (``git show main:learningchain/node/web/distances.py``,
  loaded as a module), every request a cache miss, as a loop over many rounds
  makes it: CPU per request, the node's lock held per request, and the chain's
  model LRU (consensus' working set) changed or not;
* after: the evaluator's pass computes each round once (CPU per round, off the
  request path); then the same request loop reads them; then a loop over rounds
  the evaluator has not computed (on demand, one at a time, models peeked);
* 8 threads looping over cold rounds at once, before and after: CPU in total;
* the node's round time (8 updates submitted and validated, the closing block
  mined, validated and connected) alone and while 8 threads loop over the old
  rounds' pages, before and after.

Prints figures, asserts nothing.

    .venv/bin/python bench/explorer_round_distances.py [--rounds 24] [--senders 8] [--hidden 3000] [--pad 2]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: the code measured: this checkout, or (``--tree``) another one, e.g. main exported
TREE = Path(sys.argv[sys.argv.index("--tree") + 1]) if "--tree" in sys.argv else ROOT
sys.path.insert(0, str(TREE))

import numpy as np  # noqa: E402

from learningchain.core.crypto import PrivateKey  # noqa: E402
from learningchain.ledger.block import Block  # noqa: E402
from learningchain.ledger.genesis import NetworkConfig  # noqa: E402
from learningchain.ledger.tx import UpdateTx  # noqa: E402
from learningchain.learning.models.spec import ModelSpec  # noqa: E402
from learningchain.node.keyfile import load_or_create_key  # noqa: E402
from learningchain.node.service import Node  # noqa: E402
from learningchain.node.web import distances as web_distances  # noqa: E402
from learningchain.node.web.api import create_app  # noqa: E402
from miner.pow import search  # noqa: E402

try:
    from learningchain.node import round_distances as rd  # noqa: E402
except ImportError:  # the code before: distances computed by the requests
    rd = None


class TimedLock:
    """The node's RLock, counting the seconds it is held (outermost hold only)."""

    def __init__(self, lock):
        self.lock, self.held, self._depth, self._t0 = lock, 0.0, 0, 0.0
        self._me = threading.local()

    def __enter__(self):
        self.lock.acquire()
        self._depth += 1
        if self._depth == 1:
            self._t0 = time.perf_counter()

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            self.held += time.perf_counter() - self._t0
        self.lock.release()

    def acquire(self, *a, **kw):
        return self.lock.acquire(*a, **kw)

    def release(self):
        return self.lock.release()


def mine(node: Node) -> Block:
    _tid, block = node.new_template()
    nonce, _ = search(block.header.prefix(), block.header.target, 0, 1 << 40)
    mined = Block(block.header.with_nonce(nonce), block.txs, block.commitment, block.config)
    assert node.submit_block(mined, relay=False) == "connected"
    return mined


def build(root: Path, args) -> Node:
    own = load_or_create_key(root / "node").public_hex
    keys = [PrivateKey.from_secret(5000 + i) for i in range(args.senders)]
    spec = ModelSpec("mlp", "classification", args.features, 10, (args.hidden,))
    params = args.features * args.hidden + args.hidden + args.hidden * 10 + 10
    cfg = NetworkConfig(network="bench", model=spec.to_dict(), aggregation={"rule": "fedavg", "params": {}},
                        quorum=args.senders, round_timeout=20, target_block_ms=1000, initial_target=1 << 252,
                        pow_limit=1 << 252, retarget_window=1000, max_tx_bytes=8 * params + (1 << 16),
                        max_block_bytes=(8 * params + (1 << 16)) * (args.senders + 1), max_future_ms=4000,
                        allow_list=[k.public_hex for k in keys] + [own], timestamp=1_700_000_000_000)
    node = Node(root / "node", cfg, quiet=True, port=5990)
    rng = np.random.default_rng(0)

    def new_round():
        model, digest = node.chain.model()
        for k in keys:
            w = {n: (a + rng.normal(0, 0.01, a.shape)).astype(np.float32) for n, a in model.items()}
            assert node.submit_tx(UpdateTx.create(k, node.chain.tip_state.round, digest, w, 10)) == "accepted"
        mine(node)
        for _ in range(args.pad):  # empty blocks: deep rounds get retired, as on a long chain
            mine(node)
    node.new_round = new_round  # bench only: round_time
    for r in range(args.rounds):
        new_round()
    print(f"{args.rounds} closed rounds of {args.senders} dense updates, MLP {args.features}x{args.hidden}x10 "
          f"= {params} parameters; {node.chain.index.retired} of {node.chain.height} blocks retired "
          f"(store-backed, as in a running node)")
    return node


def count_lru_writes(node) -> list[int]:
    """Count the chain's model LRU writes (BlockIndex.remember_model: each may evict a model)."""
    index, calls = node.chain.index, [0]
    remember = index.remember_model

    def counted(digest, model):
        calls[0] += 1
        remember(digest, model)
    index.remember_model = counted
    return calls


def loop(client, node, rounds, lock: TimedLock, lru_writes: list[int]) -> tuple[float, float, str]:
    """CPU (this thread) and node-lock seconds per request over ``rounds`` (newest
    first); the model LRU's writes and whether its content changed."""
    lru, writes0 = list(node.chain.index.models), lru_writes[0]
    cpu, held0 = [], lock.held
    for r in reversed(rounds):
        t0 = time.thread_time()
        assert client.get(f"/rounds/{r}?format=json").status_code == 200
        cpu.append(time.thread_time() - t0)
    after = list(node.chain.index.models)
    lru_note = (f"{lru_writes[0] - writes0} LRU writes, "
                f"{len(set(lru) - set(after))} of its {len(lru)} models evicted")
    return statistics.median(cpu), (lock.held - held0) / len(rounds), lru_note


def parallel(app, rounds, before: bool) -> tuple[float, int]:
    """8 threads, each looping over ``rounds`` (all cold): process CPU seconds, distances served."""
    served = [0]
    served_lock = threading.Lock()

    def worker(i):
        c = app.test_client()
        for r in rounds[i::8] + rounds[:i]:
            doc = c.get(f"/rounds/{r}?format=json").get_json()
            if any(u["distance"] is not None for u in doc["updates"]):
                with served_lock:
                    served[0] += 1
            if before:  # the cycled cache: every request a miss
                web_distances._cache.clear()
    t0 = time.process_time()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.process_time() - t0, served[0]


def round_time(node, n: int, app=None, paths=(), before: bool = False) -> float:
    """Median seconds of one new round on the node (8 signed updates submitted,
    validated, the closing block mined, validated and connected, and its empty
    blocks), alone or (``app``) while 8 threads loop over ``paths``."""
    stop, threads = threading.Event(), []

    def worker(i):
        c = app.test_client()
        while not stop.is_set():
            for path in list(paths[i % len(paths):]) + list(paths[:i % len(paths)]):
                c.get(path)
                if before:  # the cycled cache: every request a miss
                    web_distances._cache.clear()
                if stop.is_set():
                    break
    if app is not None:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        node.new_round()
        times.append(time.perf_counter() - t0)
    stop.set()
    for t in threads:
        t.join()
    return statistics.median(times)


def print_round_times(app, node, rounds, before: bool) -> None:
    alone = round_time(node, 3)
    status = round_time(node, 3, app, ["/status"], before)
    pages = [f"/rounds/{r}?format=json" for r in rounds]
    loaded = round_time(node, 3, app, pages, before)
    print(f"{'before' if before else 'after'}: the node's round time {alone:.2f} s alone; while 8 threads loop "
          f"over /status (GIL and lock sharing alone) {status:.2f} s ({status / alone:.1f}x); over the "
          f"{len(rounds)} old rounds' /rounds/<r> {loaded:.2f} s ({loaded / alone:.1f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=24)
    ap.add_argument("--senders", type=int, default=8)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=3000)
    ap.add_argument("--pad", type=int, default=2, help="empty blocks after each round's close")
    ap.add_argument("--tree", help="measure the code of this checkout instead (the before run: main)")
    ap.add_argument("--no-before", action="store_true", help="skip the run on main's code")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node = build(Path(tmp), args)
        lock = node.lock = TimedLock(node.lock)
        app = create_app(node)
        lru_writes = count_lru_writes(node)
        rounds = list(range(1, args.rounds + 1))
        if rd is None:
            before(app, node, rounds, lock, lru_writes)
        else:
            after(app, node, rounds, lock, lru_writes)
        node.stop()
    if rd is not None and "--tree" not in sys.argv and not args.no_before:
        with tempfile.TemporaryDirectory() as old_tree:  # the same run on main's code
            subprocess.run(f"git -C {ROOT} archive main | tar -x -C {old_tree}", shell=True, check=True)
            print("--- the same on main (the code before):", flush=True)
            subprocess.run([sys.executable, __file__, "--tree", old_tree, *sys.argv[1:]], check=True)


def before(app, node, rounds, lock, lru_writes) -> None:
    client = app.test_client()
    web_distances._cache.clear()
    cache = web_distances._cache

    class Missing(dict):  # every lookup a miss: the 512-round cache cycled by a loop over rounds
        def __contains__(self, k):
            return False
    web_distances._cache = Missing()
    b_cpu, b_lock, b_lru = loop(client, node, rounds, lock, lru_writes)
    web_distances._cache = cache
    print(f"before: /rounds/<r> (cache miss) {b_cpu * 1e3:.1f} ms CPU per request, node lock held "
          f"{b_lock * 1e3:.1f} ms per request; model LRU: {b_lru}")
    p_cpu, p_served = parallel(app, rounds, True)
    print(f"before: 8 threads x {len(rounds)} cold rounds: {p_cpu:.2f} s CPU, {p_served} answers with distances")
    print_round_times(app, node, rounds, True)


def after(app, node, rounds, lock, lru_writes) -> None:
    client = app.test_client()
    node.round_distances = rd.RoundDistances()
    t0 = time.thread_time()
    n = 0
    while (k := rd.measure_round_distances(node)):
        n += k
    ev = (time.thread_time() - t0) / max(1, n)
    a_cpu, a_lock, a_lru = loop(client, node, rounds, lock, lru_writes)
    print(f"after: evaluator pass {ev * 1e3:.1f} ms CPU per round, once per round ({n} rounds, off the "
          f"request path); /rounds/<r> {a_cpu * 1e3:.2f} ms CPU per request, "
          f"node lock held {a_lock * 1e3:.2f} ms per request; model LRU: {a_lru}")
    # cold rounds (not computed by the evaluator): on demand, one at a time, models peeked
    node.round_distances = rd.RoundDistances()
    web_distances._cache.clear()
    c_cpu, c_lock, c_lru = loop(client, node, rounds, lock, lru_writes)
    print(f"after, cold rounds: /rounds/<r> {c_cpu * 1e3:.1f} ms CPU per request (computed on demand, "
          f"then held), node lock held {c_lock * 1e3:.1f} ms; model LRU: {c_lru}")
    node.round_distances = rd.RoundDistances()
    web_distances._cache.clear()
    q_cpu, q_served = parallel(app, rounds, False)
    print(f"after: 8 threads x {len(rounds)} cold rounds: {q_cpu:.2f} s CPU, "
          f"{q_served} answers with distances (the others: busy, at once)")
    print_round_times(app, node, rounds, False)


if __name__ == "__main__":
    main()
