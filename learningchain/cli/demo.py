"""``python node.py demo``: a real local network, start to finish.

Starts N node processes (``python node.py run``) on free loopback ports, each
with its own data dir under ``--out/nodes`` and its IID partition, sharing one
genesis whose quorum is N. Nodes 0 and 1 mine (``--miners``, one worker each: on
two cores that leaves room for training and validation; two, so that one miner
dying does not stop the chain); the others peer with node 0 and learn about each
other through its peer list. With ``--byzantine K`` the *last* K nodes attack,
so the miners are honest (under l-nearest the rule centres on the miner's own
update). The demo follows node 0's rounds with the ``/rounds/<r>?wait=`` long-poll (and
reads every node's ``/status`` once a round), prints a
row per closed round, stops after R rounds, checks that every node derived the
same model digest for round R, writes ``results.json`` and plots
(:mod:`learningchain.sim.results`, the simulator's schema) and shuts every process
down: SIGTERM, then SIGKILL after a deadline, also on Ctrl-C, SIGTERM or SIGHUP
to the demo (the nodes live in their own sessions, so the terminal's signals
do not reach them: the demo must stop them) or when a node dies (then its log
tail is shown and the exit status is 1).

Starting, watching and stopping the processes is :mod:`learningchain.cli.processes`
(also used by the end-to-end tests and ``bench/round.py``); following the rounds,
the agreement check and the baselines are :mod:`learningchain.cli.demo_rounds`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from learningchain.cli import argtypes
from learningchain.core.errors import ConfigError

if TYPE_CHECKING:
    from learningchain.cli.processes import Network
# learningchain.cli.processes (and what it imports) is imported by the functions
# that start processes: `node.py --help` and the inspection commands need none of it

__all__ = ["run_demo", "register", "stop_on_term_and_hup"]


@contextmanager
def stop_on_term_and_hup() -> Iterator[None]:
    """Turn SIGTERM (``kill``) and SIGHUP (the terminal closed) into
    :class:`Stopped`, like Ctrl-C, while no node runs (setup, results); while
    nodes run, :func:`_run_demo` only notes signals (see there)."""
    from learningchain.cli.processes import Stopped

    def raise_stopped(signum, _frame):
        raise Stopped(signum)
    previous = {sig: signal.signal(sig, raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def _fmt(value, unit: str) -> str:
    return "n/a" if value is None else f"{value:.3f} s" if unit == "s" else f"{value:.1f} {unit}"


def say(text: str) -> None:
    """Print to stderr; after SIGHUP the terminal may be gone, which must not
    keep the nodes from being stopped."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


# --- set-up -----------------------------------------------------------------------

def partitions_for(dataset: str, n: int, out: Path) -> Path:
    """data/<dataset>-<n>-iid if it is there for n nodes, else written under ``out``."""
    from learningchain.learning import data
    from learningchain.cli.processes import ROOT
    shipped = ROOT / "data" / f"{dataset}-{n}-iid"
    try:
        if data.load_meta(shipped).get("n_nodes") == n:
            return shipped
    except ConfigError:
        pass
    return data.write_partitions(out / "data" / f"{dataset}-{n}-iid", dataset, n, "iid")


def user_data(args: argparse.Namespace):
    """``demo --data DIR``: the node files, test file and model spec of a user's
    directory (``args.nodes`` set from its files); None without --data. The demo
    reports its learning on the test file, so a directory without one is refused."""
    if getattr(args, "data", None) is None:
        return None
    from learningchain.learning.data import load_data_dir, no_test_line
    from learningchain.learning.models import spec_for
    if args.dataset is not None:
        raise ConfigError("pass either --dataset NAME (a bundled set) or --data DIR (your own files), not both")
    user = load_data_dir(args.data)
    if args.nodes is not None and args.nodes != len(user.files):
        raise ConfigError(f"--nodes {args.nodes} does not match the {len(user.files)} node files in {args.data} "
                          f"(node0..node{len(user.files) - 1}): drop --nodes")
    if user.test is None:
        raise ConfigError(f"{no_test_line(args.data)}, and the demo reports the learning measured on it: add "
                          f"test.npz (arrays X and y) to {args.data}")
    args.nodes = len(user.files)
    i = user.info
    return user, spec_for(i.task, i.n_features, i.n_outputs, args.model, backend=args.backend)


def make_config(n: int, dataset: str, aggregator: str, byzantine: int, round_timeout: int | None = None,
                block_ms: int | None = None, spec=None):
    """The demo's genesis: quorum n, blocks every ``block_ms`` (default
    ``LOCAL_BLOCK_MS``, fit for one machine), and a round that waits about
    ``LOCAL_ROUND_TIMEOUT_MS`` for a slow node (``round_timeout`` blocks, if given)."""
    from learningchain.learning import aggregation
    from learningchain.ledger.genesis import LOCAL_BLOCK_MS, LOCAL_ROUND_TIMEOUT_MS, blocks_for, default_config
    block_ms = block_ms or LOCAL_BLOCK_MS
    round_timeout = round_timeout or blocks_for(LOCAL_ROUND_TIMEOUT_MS, block_ms)
    params = aggregation.sized_params(aggregator, n, byzantine)
    return default_config(n, dataset=dataset, rule=aggregator, params=params, quorum=n,
                          round_timeout=round_timeout, target_block_ms=block_ms, spec=spec)


def write_genesis(config, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
    return path


def start_network(net: Network, n: int, part_dir: Path, genesis: Path, attackers: int = 0,
                  attack: str | None = None, base_port: int | None = None, miners: int = 1,
                  extra: tuple[str, ...] = (), files=None) -> list:
    """Node 0 (miner) first, then the others in parallel, peered with node 0;
    nodes ``0 .. miners-1`` mine (several, so that one miner dying does not stop
    the chain: issue 10 item 14). The last ``attackers`` nodes run ``--attack``
    (never a miner: :func:`check_args`); ``extra`` goes to every ``node.py run``
    (e.g. ``--compression q8``); ``files``: node i's data file (default
    ``part_dir/node{i}.npz``)."""
    from learningchain.cli.processes import check_ports_free, wait_ready
    files = files or [part_dir / f"node{i}.npz" for i in range(n)]
    port = (lambda i: base_port + i) if base_port else (lambda i: None)
    if base_port:
        check_ports_free(range(base_port, base_port + n))

    def bad(i: int) -> str | None:
        return attack if i >= n - attackers else None
    first = net.start(0, port=port(0), dataset=files[0], genesis=genesis, mine=True,
                      attack=bad(0), extra=extra)
    wait_ready(net, [first])
    rest = [net.start(i, port=port(i), peers=[first.url], dataset=files[i],
                      genesis=genesis, mine=i < miners, attack=bad(i), extra=extra)
            for i in range(1, n)]
    wait_ready(net, rest)
    return net.nodes


def _sa_label(config) -> str:
    p = config.secure_aggregation
    return "" if p is None else (f", secure aggregation t={p.threshold} clip {p.clip} scale {p.scale} "
                                 f"phase timeout {p.phase_timeout}")


def check_args(args: argparse.Namespace) -> None:
    """What argparse cannot check alone (counts are positive already): a
    ConfigError, hence exit status 2 (cli/main.py), before anything is written."""
    from learningchain.learning.data import DATASETS
    if args.dataset is None:
        args.dataset = "digits"
    if getattr(args, "data", None) is None and args.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS)}")
    if not 0 <= args.byzantine < args.nodes:
        raise ConfigError(f"--byzantine must be in [0, {args.nodes - 1}] with --nodes {args.nodes} "
                          f"(at least one honest node mines), got {args.byzantine}")
    if args.miners + args.byzantine > args.nodes:
        raise ConfigError(f"--miners {args.miners} and --byzantine {args.byzantine} overlap with --nodes "
                          f"{args.nodes}: miners are the first nodes, attackers the last, and no miner "
                          f"attacks (lower --miners or --byzantine)")
    if args.byzantine and not args.attack:
        raise ConfigError("--byzantine needs --attack NAME (e.g. --attack sign-flip)")
    if args.selection != "all" and not 1 <= (args.select_k or 0) <= args.nodes:
        raise ConfigError(f"--selection {args.selection} needs --select-k in [1, {args.nodes}]")
    check_sa_args(args)
    # the genesis quorum is --nodes: say so in the demo's flags, not genesis's
    argtypes.check_rule_fits(args.aggregator, args.nodes, args.byzantine)
    _dp_role(args)  # the DP flags: the one check of participant.Role, before any process starts
    if args.base_port and args.base_port + args.nodes - 1 > 65535:
        raise ConfigError(f"--base-port {args.base_port} + {args.nodes} nodes goes past port 65535")


def check_sa_args(args: argparse.Namespace) -> None:
    """The bad combinations with --secure-aggregation, before any process starts
    (genesis refuses the rest: the threshold range, the sum bound, ...)."""
    sa = getattr(args, "secure_aggregation", False)
    if not sa:
        if any(getattr(args, k, None) is not None for k in ("sa_threshold", "sa_clip", "sa_phase_timeout")):
            raise ConfigError("--sa-threshold, --sa-clip and --sa-phase-timeout need --secure-aggregation")
        return
    if args.aggregator != "fedavg":
        raise ConfigError(f"robust rule {args.aggregator} cannot run under secure aggregation: it must see each "
                          f"update, and only the sum of the masked updates is ever revealed; use fedavg")
    if args.compression:
        raise ConfigError("--compression does not apply under --secure-aggregation: inputs are fixed-point "
                          "vectors in Z_(2^32) already")
    t, n = args.sa_threshold, args.nodes
    if t is not None and not n // 2 + 1 <= t <= n:
        raise ConfigError(f"--sa-threshold {t} must be in [floor(N/2)+1, N] = [{n // 2 + 1}, {n}] for --nodes {n}")


def sa_config(config, args: argparse.Namespace):
    """``config`` in secure-aggregation mode when ``--secure-aggregation`` is given."""
    if not getattr(args, "secure_aggregation", False):
        return config
    from learningchain.ledger.genesis_privacy import default_params
    return config.with_secure_aggregation(default_params(
        len(config.candidates), config.round_timeout, args.sa_clip or "0.5", args.sa_threshold, None,
        args.sa_phase_timeout))


def _dp_role(args: argparse.Namespace):
    from learningchain.node.participant import Role
    return Role(dp_mode=args.dp_mode, dp_epsilon=args.dp_epsilon, dp_delta=args.dp_delta, dp_sigma=args.dp_sigma,
                dp_clip=args.dp_clip, dp_sample_rate=args.dp_sample_rate,
                dp_rounds=args.rounds if args.dp_epsilon else 0)


def run_demo(args: argparse.Namespace) -> int:
    from learningchain.node import user_models
    user_models.ensure(args.model)  # a user's torch module: loaded (or refused) before anything starts
    user = user_data(args)  # --data DIR: read and checked before anything starts
    if args.nodes is None:
        args.nodes = 4
    if getattr(args, "miners", None) is None:  # 2, unless the attackers need the second node
        args.miners = max(1, min(2, args.nodes - args.byzantine))
    check_args(args)
    with stop_on_term_and_hup():
        return _run_demo(args, user)


def _run_demo(args: argparse.Namespace, user=None) -> int:
    from learningchain.cli.demo_rounds import (BackgroundBaselines, chain_stats, check_agreement, complete_entries,
                                               follow_rounds)
    from learningchain.cli.processes import Network, NodeDied, Stopped, deferred_signals, get
    from learningchain.ledger.genesis import make_genesis
    from learningchain.sim.results import plot_results, write_results
    out = Path(args.out).resolve()
    t_start = time.monotonic()
    # everything that can refuse the arguments (an unknown dataset, a rule the quorum
    # cannot run) first: a failed demo must not delete the previous run's chains and logs
    user, spec = user or (None, None)
    if spec is None:
        from learningchain.learning.models import default_spec
        spec = default_spec(args.dataset or "digits", args.model, backend=args.backend)
    part_dir = Path(args.data).resolve() if user else partitions_for(args.dataset, args.nodes, out)
    config = make_config(args.nodes, args.dataset, args.aggregator, args.byzantine,
                         block_ms=getattr(args, "block_ms", None), spec=spec)
    shutil.rmtree(out / "nodes", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("node*.log"):
        old.unlink()
    # The keys exist before the nodes start: they go into genesis, so the demo
    # network is permissioned (allow_list, or the participants under a selection
    # policy) and a stranger's key is refused before its signature is checked.
    from learningchain.node.keyfile import load_or_create_key
    from learningchain.ledger.genesis import permissioned, with_participants
    pubkeys = [load_or_create_key(out / "nodes" / f"node{i}").public_hex for i in range(args.nodes)]
    if args.selection != "all":
        config = with_participants(config, pubkeys, args.selection, args.select_k)
    else:
        config = permissioned(config, pubkeys)
    config = sa_config(config, args)
    genesis = write_genesis(config, out / "genesis.json")
    # G0, centralized and local-only, computed while the network runs (low priority) and
    # written to every node's baselines.json for its explorer's chart; results.json reuses them
    baselines = BackgroundBaselines(config.model_spec, part_dir, args.rounds,
                                    [out / "nodes" / f"node{i}" for i in range(args.nodes)])
    tty = sys.stdout.isatty()
    extra = (("--compression", args.compression) if args.compression else ()) + argtypes.dp_argv(args, args.rounds)
    if ":" in config.model_spec.kind:  # the user named their module on this command line: the nodes may import it
        extra += ("--trust-model", config.model_spec.kind)
    if user:  # every node measures the global model on the directory's test file
        extra += ("--test", str(user.test_file.resolve()))
    if args.keep:  # a kept network learns --keep-rounds more rounds, then rests (serves, no mining): issue 14
        extra += ("--rest-after-round", str(args.rounds + args.keep_rounds))
    print(f"LearningChain demo: {args.nodes} nodes, {args.rounds} rounds, {args.data if user else args.dataset}, {config.model_spec.label}, "
          f"{config.rule}{f', {args.byzantine} x {args.attack}' if args.byzantine else ''}"
          f"{f', {args.compression} updates' if args.compression else ''}"
          f"{_sa_label(config)}; "
          f"genesis {make_genesis(config).hash[:16]}; logs in {out}", flush=True)
    first_bad = args.nodes - args.byzantine
    keep, entries, late, privacy, stats = False, [], [], {}, {}
    # While nodes may run, a signal is only noted; Network.check_alive (every poll
    # loop) acts on it. No KeyboardInterrupt can then land between a Popen and its
    # bookkeeping, or in the except/finally below before the nodes are stopped
    # (a second Ctrl-C there would orphan them: they live in their own sessions).
    with deferred_signals(message=None) as requested:
        net = Network(out, signals=requested)
        try:
            baselines.start()
            start_network(net, args.nodes, part_dir, genesis, args.byzantine, args.attack, args.base_port,
                          miners=args.miners, extra=extra,
                          files=[f.resolve() for f in user.files] if user else None)
            keys = {get(n.url, "/status")["pubkey"] for n in net.nodes[first_bad:]}
            print("nodes: " + "  ".join(f"{n.name}={n.url}{' (miner)' if n.index < args.miners else ''}"
                                        f"{' (attacker)' if n.index >= first_bad else ''}" for n in net.nodes),
                  flush=True)
            entries = follow_rounds(net, args.rounds, keys, timeout=30 + 10 * args.rounds, tty=tty,
                                    secure=config.secure_aggregation is not None)
            digest, tips = check_agreement(net, args.rounds)
            print(f"agreement: all {args.nodes} nodes hold model {digest[:16]} for round {args.rounds}; {tips}")
            complete_entries(net, entries)
            stats = chain_stats(net, args.rounds)
            print(f"chain: median round {_fmt(stats['median_round_s'], 's')} (closing blocks' timestamps), "
                  f"{stats['height']} blocks, mean interval {_fmt(stats['mean_block_ms'], 'ms')} (target "
                  f"{config.target_block_ms} ms), {stats['stale_blocks']} of {stats['blocks_found']} blocks found "
                  f"by {args.miners} miner{'s' if args.miners != 1 else ''} stale "
                  f"({_fmt(None if stats['stale_rate'] is None else 100 * stats['stale_rate'], '%')})", flush=True)
            privacy = {n.name: get(n.url, "/status").get("privacy") for n in net.nodes}
            net.check_alive()
            keep = args.keep
            if keep:
                print(f"network left running (--keep): it learns until round {args.rounds + args.keep_rounds}, "
                      f"then stops learning and mining and keeps serving; inspect with")
                for n in net.nodes:
                    print(f"  {argtypes.node_py()} status --node {n.url}")
                print("stop it with: kill " + " ".join(str(n.popen.pid) for n in net.nodes))
        except Stopped as exc:
            say(f"\ninterrupted ({signal.Signals(exc.signum).name}): stopping the nodes")
            keep = False
            return 128 + exc.signum
        except NodeDied as exc:
            say(f"\nnode.py demo: {exc}; its last lines:\n"
                + "\n".join("    " + line for line in exc.tail.splitlines()))
            keep = False
            return 1
        finally:
            if not keep or requested:  # a signal after the last check stops a --keep network too
                keep = False
                late = requested + net.stop_all()  # stop_all defers signals too, and returns them
    if late:
        say(f"interrupted ({signal.Signals(late[0]).name}): nodes stopped, no results written")
        return 128 + late[0]
    elapsed = time.monotonic() - t_start
    initial, base = baselines.result()
    results = {"config": {"mode": "live", "dataset": None if user else args.dataset,
                          "data_dir": str(part_dir) if user else None, "model": config.model_spec.kind,
                          "backend": config.model_spec.backend,
                          "nodes": args.nodes, "split": "iid", "rounds": args.rounds,
                          "aggregator": config.rule, "params": config.params,
                          "byzantine": args.byzantine, "attack": args.attack,
                          "attackers": list(range(first_bad, args.nodes)) if args.byzantine else [],
                          "compression": args.compression, "selection": args.selection,
                          "dp_mode": _dp_role(args).mode, "dp_epsilon": args.dp_epsilon or None,
                          "dp_delta": args.dp_delta, "miners": args.miners,
                          "target_block_ms": config.target_block_ms, "round_timeout": config.round_timeout,
                          "genesis": make_genesis(config).hash, "partitions": str(part_dir)},
               "chain": stats,
               "initial": initial, "rounds": entries, "final": entries[-1]["metrics"],
               "baselines": base, "elapsed_s": round(elapsed, 3),
               "privacy": {k: v for k, v in privacy.items() if v is not None}}
    from learningchain.learning.data import load_meta
    from learningchain.sim.provenance import command_line, flags, provenance
    results["provenance"] = provenance({"flags": flags(args), "network": config.to_dict()},
                                       {"model": config.model_spec.seed,
                                        "partitions": None if user else load_meta(part_dir).get("seed")},
                                       command_line(args))
    path = write_results(out, results)
    plots = plot_results(out, results)
    name = "accuracy" if "accuracy" in initial else "rmse"
    print(f"{name}: G0 {initial[name]:.4f} -> G{args.rounds} {results['final'][name]:.4f} "
          f"(centralized {base['centralized'][name]:.4f}, local-only mean "
          f"{base['local_only'][name]:.4f}) in {elapsed:.1f} s")
    mean_bytes = sum(e["bytes_per_update"] for e in entries) / len(entries)
    print(f"update tx: {mean_bytes:,.0f} B on average"
          f"{f' ({args.compression})' if args.compression else ''}")
    print(f"results: {path}\nplots:   {', '.join(str(p) for p in plots)}\nlogs:    {out}/node*.log")
    print(f"inspect a stored chain: {argtypes.node_py()} verify --data-dir {out / 'nodes' / 'node0'}")
    return 0


def register(sub) -> None:
    argtypes.later(sub, sub.add_parser("demo", help="run a local multi-process network and report the learning"),
                   _demo_flags)


def _demo_flags(p) -> None:
    from learningchain.learning.aggregation import RULES
    from learningchain.learning.attacks import ATTACKS

    p.add_argument("--nodes", type=argtypes.positive_int,
                   help="node processes (default 4; with --data: one per node file, and --nodes must match)")
    p.add_argument("--rounds", type=argtypes.positive_int, default=10, help="rounds to run (default 10)")
    p.add_argument("--dataset", help="bundled data set: digits (default), diabetes, "
                                     "breast-cancer, synthetic-classification, synthetic-regression, ct-phantoms")
    p.add_argument("--data", metavar="DIR",
                   help="your own data instead: DIR/node0.npz, node1.npz, ... (arrays X and y, X of any shape; or "
                        "node0_X.npy with node0_y.npy), one per node, and DIR/test.npz; the model is built for its "
                        "features and classes as genesis --data does")
    argtypes.add_model_flags(p)
    p.add_argument("--aggregator", choices=sorted(RULES), default="fedavg",
                   help="aggregation rule (default fedavg); robust rules are sized for --byzantine")
    p.add_argument("--byzantine", type=argtypes.count, default=0,
                   help="the last K nodes attack (the miners, the first nodes, stay honest)")
    p.add_argument("--miners", type=argtypes.positive_int, default=None,
                   help="the first K nodes mine (default 2, or 1 when the attackers take the rest): "
                        "one miner dying does not stop the chain")
    p.add_argument("--attack", choices=ATTACKS, help="attack of the Byzantine nodes")
    p.add_argument("--compression", choices=("q8", "topk"),
                   help="every node sends its updates 8-bit quantised or top-k sparsified")
    p.add_argument("--out", default="out/demo", help="results, plots, logs and node data (default out/demo)")
    p.add_argument("--base-port", type=argtypes.port, help="node i listens on P+i (default: free ports)")
    p.add_argument("--selection", choices=("all", "random-k", "top-k", "energy-aware"), default="all",
                   help="participant selection policy; nodes get energy profiles in genesis")
    p.add_argument("--select-k", type=argtypes.positive_int, help="senders selected per round (with --selection)")
    p.add_argument("--keep", action="store_true", help="leave the network running and print its URLs")
    p.add_argument("--keep-rounds", type=argtypes.positive_int, default=50, metavar="K",
                   help="with --keep: rounds the network runs on after the demo's, before it rests (stops learning "
                        "and mining, keeps serving the explorer and API; default 50)")
    p.add_argument("--block-ms", type=argtypes.positive_int, default=None, metavar="MS",
                   help="genesis target block interval (default 200: one machine; docs/protocol.md section 5 "
                        "says how to choose it for a WAN); a round waits about 10 s for a slow node")
    argtypes.add_dp_flags(p)
    p.add_argument("--secure-aggregation", action="store_true",
                   help="masked updates: only the sum of a round's deltas is revealed (docs/protocol.md "
                        "section 14); fedavg only")
    p.add_argument("--sa-threshold", type=argtypes.positive_int, metavar="T",
                   help="members whose shares rebuild a secret (default floor(2N/3)+1)")
    p.add_argument("--sa-clip", metavar="C", help="each delta coordinate is clipped to [-C, C] (default 0.5)")
    p.add_argument("--sa-phase-timeout", type=argtypes.positive_int, metavar="K",
                   help="blocks after which a phase closes anyway (default the round timeout: about 10 s)")
    p.set_defaults(func=run_demo)
