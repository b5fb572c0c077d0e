"""Flower against ``node.py demo`` on exactly the same work, alternating in one run.

    .venv/bin/python bench/vs_flower.py [--reps 2] [--rounds 10] [--miners 2] [--venv out/bench/flower-venv]

The work (both sides): the 4-node digits split shipped in data/digits-4-iid
(node0..3.npz, test.npz), the project's own model and local recipe
``default_spec("digits")`` (MLP 64-32-10, its epochs, batch size, learning
rate, L2 and the seed of G0), trained and evaluated with the project's code
(learningchain.learning.models: ``Model.train`` / ``Model.evaluate``), FedAvg
weighted by sample counts, R rounds (default 10), every node in every round.

A = Flower (``flwr``, 1.42 when it was written): one ``flwr.server.start_server``
process and 4 ``flwr.client.start_client`` processes on 127.0.0.1 (gRPC), in a
virtual environment of their own that this bench creates with ``python3.11 -m
venv`` + ``pip install flwr`` (plus the numpy and scikit-learn versions of the
project's venv), reused when present; flwr is not a project requirement. The
Flower processes run this same file (``_flower-server`` / ``_flower-client``),
which imports the project from the repository root. Each client trains with
``Model.train`` from the global model it receives, with the batch-order seed
derived from (spec seed, node name, round) as our participants derive it from
(spec seed, key address, round); the server's strategy is Flower's ``FedAvg``
(``num_examples`` weights), initial parameters G0 = ``Model.initial_weights()``,
no client-side evaluation, the global model evaluated on test.npz on the server.
Telemetry is switched off (FLWR_TELEMETRY_ENABLED=0).

B = ours: the machinery of ``node.py demo --nodes 4 --rounds R --miners 2
--dataset digits`` (learningchain.cli.demo / processes): the demo's genesis
(default FedAvg, quorum 4, permissioned with the nodes' keys), 4 ``node.py run``
processes with real HTTP between them, nodes 0 and 1 mining.

The order is A B A B ... (``--reps`` pairs). For every run it prints:

* median round: the median of the R-1 intervals between consecutive round
  completions, rounds 1..R. Flower: wall-clock timestamps the server's strategy
  takes when ``aggregate_fit`` of a round has produced the new global model.
  Ours: the header timestamps of the blocks that close rounds 1..R (the block
  carrying the round's aggregate commitment), as bench/round.py does.
* final accuracy: G(R) on data/digits-4-iid/test.npz with ``Model.evaluate``.
  Flower: the server's ``evaluate_fn`` in round R; ours: node 0's
  ``/rounds/R`` metrics (each node evaluates G(R) itself).
* bytes per node per round: what one participant sent plus received between
  the completion of round 1 and that of round R, divided by R-1, averaged over
  the 4 participants (Flower: the 4 clients, the server is the hub and is not
  counted; ours: the 4 nodes, node 0 is the hub and is counted). Bytes are TCP
  payload (HTTP/2 and gRPC framing, HTTP/1.1 headers included; IP and TCP
  headers not). Flower: counted exactly by a byte-counting TCP proxy of this
  bench on 127.0.0.1 between each client and the server (timestamped, so the
  window is the one above). Ours: the nodes' own ``/status`` traffic counters,
  sent + received (every request and response body as sent, plus an estimated
  200 B of header lines per exchange, learningchain.node.p2p.peer_counters),
  read when the bench sees round 1 and round R closed (polling every 50 ms).
* wall: from starting the processes to the last round's completion (start-up
  included), for orientation only.

Then the medians over the repetitions of each side, and the ratios ours/Flower
(round time, bytes; and the accuracy difference in points) from this run,
against the goal of issue 13: our median round <= 2x Flower's at the same
accuracy (within 1 point).

The proxy sits in the path of Flower's traffic only, and its forwarding time
adds to Flower's rounds, which flatters our ratio a little. Every process is
stopped at the end, on failure and on Ctrl-C/SIGTERM. If flwr cannot be
installed (no network, no package index), the bench says so, still measures
ours, and exits with status 2. Logs and node data: out/bench/vs-flower/.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

N_NODES = 4
DATA = ROOT / "data" / f"digits-{N_NODES}-iid"
OUT = ROOT / "out" / "bench" / "vs-flower"
DEFAULT_VENV = ROOT / "out" / "bench" / "flower-venv"
FLOWER_ENV = {"FLWR_TELEMETRY_ENABLED": "0", "PYTHONUNBUFFERED": "1", "GRPC_ENABLE_FORK_SUPPORT": "0",
              "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


# --- the Flower side: run by the Flower venv's python (this file, _flower-* roles) ---------

def _recipe():
    from learningchain.learning.data import load_partition
    from learningchain.learning.models import build_model, default_spec
    spec = default_spec("digits")
    model = build_model(spec)
    return spec, model, list(model.initial_weights()), load_partition


def _batch_seed(*parts: object) -> int:
    """The batch-order seed, derived as learningchain.node.participant.derive_seed does."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big")


def flower_server(port: int, rounds: int, out: Path) -> None:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import ServerConfig, start_server
    from flwr.server.strategy import FedAvg
    spec, model, names, load_partition = _recipe()
    X_test, y_test = load_partition(DATA / "test.npz")
    log = {"completed": [], "accuracy": {}}

    def evaluate_fn(server_round, ndarrays, _config):
        acc = model.evaluate(dict(zip(names, ndarrays)), X_test, y_test)["accuracy"]
        log["accuracy"][server_round] = acc
        return 0.0, {"accuracy": acc}

    class TimedFedAvg(FedAvg):
        def aggregate_fit(self, server_round, results, failures):
            out_ = super().aggregate_fit(server_round, results, failures)
            log["completed"].append([server_round, time.time(), len(results), len(failures)])
            return out_

    strategy = TimedFedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N_NODES,
                           min_available_clients=N_NODES, accept_failures=False, evaluate_fn=evaluate_fn,
                           on_fit_config_fn=lambda r: {"server_round": r},
                           initial_parameters=ndarrays_to_parameters(list(model.initial_weights().values())))
    start_server(server_address=f"127.0.0.1:{port}", config=ServerConfig(num_rounds=rounds), strategy=strategy)
    import flwr
    log["version"] = flwr.__version__
    out.write_text(json.dumps(log))


def flower_client(index: int, address: str) -> None:
    from flwr.client import NumPyClient, start_client
    spec, model, names, load_partition = _recipe()
    X, y = load_partition(DATA / f"node{index}.npz")

    class Client(NumPyClient):
        def get_parameters(self, config):
            return list(model.initial_weights().values())

        def fit(self, parameters, config):
            r = int(config["server_round"])
            w = model.train(dict(zip(names, parameters)), X, y, seed=_batch_seed(spec.seed, f"node{index}", r))
            return [w[k] for k in names], len(X), {}

        def evaluate(self, parameters, config):
            acc = model.evaluate(dict(zip(names, parameters)), X, y)["accuracy"]
            return 0.0, len(X), {"accuracy": acc}

    start_client(server_address=address, client=Client().to_client(), insecure=True, max_wait_time=60)


# --- a byte-counting TCP proxy (in the bench process) ----------------------------------------

class CountingProxy:
    """Listens on 127.0.0.1 and forwards every connection to ``target``,
    recording (time, direction, bytes) for every chunk it relays."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.events: list[tuple[float, str, int]] = []  # list.append is atomic
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._conns.append(s)
            threading.Thread(target=self._pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "down"), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                self.events.append((time.time(), direction, len(data)))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def bytes_between(self, t0: float, t1: float) -> int:
        return sum(n for t, _, n in list(self.events) if t0 < t <= t1)

    def close(self) -> None:
        self.sock.close()
        for s in self._conns:
            s.close()


# --- the bench: set-up of the Flower venv -------------------------------------------------------

class FlowerUnavailable(Exception):
    pass


def _probe(python: Path) -> str | None:
    """flwr's version in the venv of ``python``, or None when it does not import."""
    if not python.exists():
        return None
    r = subprocess.run([str(python), "-c", "import flwr, numpy, sklearn; print(flwr.__version__)"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **FLOWER_ENV})
    return r.stdout.strip() if r.returncode == 0 else None


def ensure_flower(venv: Path) -> tuple[Path, str, str]:
    """(python, flwr version, how it was obtained); FlowerUnavailable if pip cannot install it."""
    from importlib.metadata import version
    python = venv / "bin" / "python"
    found = _probe(python)
    if found:
        return python, found, f"reused {venv}"
    t = time.monotonic()
    base = shutil.which("python3.11") or sys.executable
    r = subprocess.run([base, "-m", "venv", "--clear", str(venv)], capture_output=True, text=True)
    if r.returncode:
        raise FlowerUnavailable(f"`{base} -m venv {venv}` failed: {(r.stderr or r.stdout).strip()[-300:]}")
    pins = [f"numpy=={version('numpy')}", f"scikit-learn=={version('scikit-learn')}"]
    tail = ""
    for wanted in (["flwr", *pins], ["flwr", "numpy", "scikit-learn"]):  # the project's versions if possible
        r = subprocess.run([str(python), "-m", "pip", "install", "-q", *wanted], capture_output=True, text=True,
                           timeout=900)
        if r.returncode == 0:
            break
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
    found = _probe(python)
    if not found:
        raise FlowerUnavailable(f"pip could not install flwr into {venv}: {tail[0] if tail else 'import failed'}")
    return python, found, f"installed into {venv} in {time.monotonic() - t:.0f} s"


# --- the bench: one run of each side ------------------------------------------------------------

def _popen(procs: list, argv: list[str], log: Path, env: dict) -> subprocess.Popen:
    """Start a process in its own session and record it in ``procs`` with no
    signal landing in between (it would leave a process nobody stops)."""
    from learningchain.cli.processes import deferred_signals
    with open(log, "ab") as f, deferred_signals(message=None) as held:
        p = subprocess.Popen(argv, cwd=str(ROOT), stdout=f, stderr=subprocess.STDOUT, env=env,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(p)
    for signum in held:
        signal.raise_signal(signum)
    return p


def _stop(procs: list[subprocess.Popen], timeout: float = 5.0) -> None:
    from learningchain.cli.processes import deferred_signals
    with deferred_signals():
        live = [p for p in procs if p.poll() is None]
        for p in live:
            p.terminate()
        deadline = time.monotonic() + timeout
        for p in live:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join("    " + x for x in path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "    (no log)"


def run_flower(python: Path, out: Path, rounds: int) -> dict:
    from learningchain.cli.processes import free_port
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **FLOWER_ENV}
    port, result = free_port(), out / "server.json"
    me = str(Path(__file__).resolve())
    procs: list[subprocess.Popen] = []
    proxies: list[CountingProxy] = []
    t0 = time.time()
    try:
        server = _popen(procs, [str(python), me, "_flower-server", "--port", str(port), "--rounds", str(rounds),
                                "--result", str(result)], out / "server.log", env)
        for i in range(N_NODES):
            proxies.append(CountingProxy(("127.0.0.1", port)))
            _popen(procs, [str(python), me, "_flower-client", "--index", str(i), "--address",
                           f"127.0.0.1:{proxies[i].port}"], out / f"client{i}.log", env)
        deadline = time.monotonic() + 120 + 5 * rounds
        while server.poll() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Flower server did not finish {rounds} rounds in time; its log:\n"
                                   + _tail(out / "server.log"))
            time.sleep(0.05)
        if server.returncode or not result.exists():
            raise RuntimeError(f"the Flower server exited with status {server.returncode}; its log:\n"
                               + _tail(out / "server.log"))
        log = json.loads(result.read_text())
    finally:
        _stop(procs)
        for p in proxies:
            p.close()
    done = {r: t for r, t, _, _ in log["completed"]}
    if sorted(done) != list(range(1, rounds + 1)) or any(ok != N_NODES or bad for _, _, ok, bad in log["completed"]):
        raise RuntimeError(f"Flower rounds incomplete: {log['completed']}")
    times = [done[r] for r in range(1, rounds + 1)]
    per_node = [p.bytes_between(times[0], times[-1]) / (rounds - 1) for p in proxies]
    return {"round": statistics.median(b - a for a, b in zip(times, times[1:])),
            "accuracy": log["accuracy"][str(rounds)], "g0": log["accuracy"].get("0"),
            "bytes": statistics.mean(per_node), "wall": times[-1] - t0, "version": log["version"]}


def run_ours(out: Path, rounds: int, miners: int) -> dict:
    from learningchain.cli import demo, processes
    from learningchain.cli.demo_rounds import closed_round
    from learningchain.ledger.genesis import permissioned
    from learningchain.learning.models import default_spec
    from learningchain.node.keyfile import load_or_create_key
    part_dir = demo.partitions_for("digits", N_NODES, out)
    if part_dir.resolve() != DATA.resolve():
        raise RuntimeError(f"the demo would use {part_dir}, not {DATA}")
    config = demo.make_config(N_NODES, "digits", "fedavg", 0)
    if config.model_spec != default_spec("digits"):
        raise RuntimeError(f"the demo's model spec {config.model_spec} is not default_spec('digits')")
    # as node.py demo does: keys first, genesis permissioned with them
    config = permissioned(config, [load_or_create_key(out / "nodes" / f"node{i}").public_hex
                                   for i in range(N_NODES)])
    genesis = demo.write_genesis(config, out / "genesis.json")
    net = processes.Network(out)
    t0 = time.time()
    try:
        demo.start_network(net, N_NODES, part_dir, genesis, miners=miners)
        hub = net.nodes[0].url

        def snapshot(r: int) -> list[dict]:
            processes.wait_for(lambda: closed_round(hub, r, wait=1), 60 + 10 * rounds, f"round {r} to close", net,
                               interval=0.01)  # a long-poll: node 0 answers when round r closes
            return [processes.get(n.url, "/status") for n in net.nodes]
        before = snapshot(1)
        after = snapshot(rounds)
        t_end = time.time()
        details = [processes.get(hub, f"/rounds/{r}") for r in range(1, rounds + 1)]
        height = max(d["closed_at"] for d in details)
        blocks = processes.get(hub, f"/chain?start=0&limit={height + 1}")["blocks"]
    finally:
        net.stop_all()
    ts = {b["height"]: b["timestamp"] for b in blocks}
    closes = [ts[d["closed_at"]] / 1000 for d in details]
    per_node = [(b["traffic"]["sent"] + b["traffic"]["received"] - a["traffic"]["sent"] - a["traffic"]["received"])
                / (rounds - 1) for a, b in zip(before, after)]
    return {"round": statistics.median(b - a for a, b in zip(closes, closes[1:])),
            "accuracy": float(details[-1]["metrics"]["accuracy"]), "bytes": statistics.mean(per_node),
            "wall": t_end - t0}


# --- the bench: report --------------------------------------------------------------------------

def _row(name: str, side: str, r: dict | None, note: str = "") -> str:
    if r is None:
        return f"{name:<4} {side:<7} {'n/a':>12} {'n/a':>9} {'n/a':>16} {'n/a':>7}  {note}"
    return (f"{name:<4} {side:<7} {r['round']:>10.3f} s {r['accuracy']:>9.4f} {r['bytes']:>14,.0f} B "
            f"{r['wall']:>5.1f} s  {note}")


def summary(flower: list[dict], ours: list[dict]) -> list[str]:
    med = {k: (statistics.median(r[k] for r in flower) if flower else None,
               statistics.median(r[k] for r in ours) if ours else None) for k in ("round", "accuracy", "bytes")}
    lines = ["", "medians over the repetitions", "----------------------------",
             f"{'':<22}{'Flower':>12}{'ours':>12}{'ours/Flower':>14}"]
    for k, label, fmt in (("round", "median round (s)", ".3f"), ("accuracy", "final accuracy", ".4f"),
                          ("bytes", "bytes/node/round", ",.0f")):
        f, o = med[k]
        ratio = f"{o / f:.2f}x" if f and o is not None and k != "accuracy" else ""
        lines.append(f"{label:<22}{format(f, fmt) if f is not None else 'n/a':>12}"
                     f"{format(o, fmt) if o is not None else 'n/a':>12}{ratio:>14}")
    if flower and ours:
        pairs = [f"{o['round'] / f['round']:.1f}x" for f, o in zip(flower, ours)]
        lines.append("round-time ratio ours/Flower per pair (B1/A1, B2/A2, ...): " + ", ".join(pairs))
        rt = med["round"][1] / med["round"][0]
        gap = 100 * (med["accuracy"][1] - med["accuracy"][0])
        lines.append(f"goal (issue 13): our median round <= 2x Flower's: {rt:.1f}x, "
                     f"{'met' if rt <= 2 else 'NOT met'}; same accuracy within 1 point: {gap:+.2f} points, "
                     f"{'met' if abs(gap) <= 1 else 'NOT met'}")
    return lines


def bench(args: argparse.Namespace) -> int:
    from learningchain.learning.models import default_spec
    s = default_spec("digits")
    print(f"== Flower vs node.py demo: {N_NODES} nodes, {args.rounds} rounds, digits from "
          f"{DATA.relative_to(ROOT)}, {s.kind} {s.n_features}-{'-'.join(map(str, s.hidden))}-{s.n_outputs} "
          f"E={s.epochs} B={s.batch_size} lr={s.lr} l2={s.l2} G0 seed {s.seed}, FedAvg by samples", flush=True)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    try:
        python, version, how = ensure_flower(Path(args.venv).resolve())
        print(f"Flower: flwr {version}, {how}", flush=True)
    except (FlowerUnavailable, subprocess.TimeoutExpired, OSError) as exc:
        python = None
        print(f"Flower: NOT AVAILABLE, so no comparison is made: {exc}", flush=True)
    print(f"ours:   node.py demo machinery, {args.miners} miners; logs and data in {OUT.relative_to(ROOT)}")
    print(f"order:  {' '.join('A B' if python else 'B' for _ in range(args.reps))} "
          f"(A = Flower, B = ours)\n", flush=True)
    print(f"{'run':<4} {'side':<7} {'median round':>12} {'final acc':>9} {'bytes/node/round':>16} {'wall':>7}")
    flower, ours = [], []
    for i in range(1, args.reps + 1):
        if python:
            flower.append(run_flower(python, OUT / f"A{i}-flower", args.rounds))
            print(_row(f"A{i}", "Flower", flower[-1], f"G0 {flower[-1]['g0']:.4f}"), flush=True)
        ours.append(run_ours(OUT / f"B{i}-ours", args.rounds, args.miners))
        print(_row(f"B{i}", "ours", ours[-1]), flush=True)
    print("\n".join(summary(flower, ours)))
    print("\nround: median interval between consecutive round completions, rounds 1..R (Flower: server "
          "timestamps after aggregate_fit; ours: closing blocks' header timestamps). bytes: TCP payload one "
          "participant sent + received from round 1's completion to round R's, / (R-1), mean of 4 "
          "(Flower: the bench's proxy per client; ours: /status counters, bodies + 200 B per exchange). "
          "wall: process start to round R, start-up included.")
    if python is None:
        print("\nFlower could not be installed: no ratios measured (exit status 2)")
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="role")
    p = sub.add_parser("_flower-server")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--result", type=Path, required=True)
    p = sub.add_parser("_flower-client")
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--address", required=True)
    ap.add_argument("--reps", type=int, default=2, help="A B pairs (default 2)")
    ap.add_argument("--rounds", type=int, default=10, help="rounds per run (default 10, at least 2)")
    ap.add_argument("--miners", type=int, default=2, help="our mining nodes (default 2, as node.py demo)")
    ap.add_argument("--venv", default=str(DEFAULT_VENV), help="Flower's virtual environment (created if absent)")
    args = ap.parse_args(argv)
    if args.role == "_flower-server":
        flower_server(args.port, args.rounds, args.result)
        return 0
    if args.role == "_flower-client":
        flower_client(args.index, args.address)
        return 0
    if args.reps < 1 or args.rounds < 2 or not 1 <= args.miners <= N_NODES:
        ap.error(f"--reps >= 1, --rounds >= 2 and --miners in 1..{N_NODES}")
    from learningchain.cli.demo import stop_on_term_and_hup
    try:
        with stop_on_term_and_hup():
            return bench(args)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (Stopped)
        print("\nvs_flower: interrupted; every process stopped", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except Exception as exc:  # a failed run: one line (plus a log tail), processes already stopped
        print(f"\nvs_flower: failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
