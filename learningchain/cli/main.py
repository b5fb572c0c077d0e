"""``python node.py COMMAND``: the command line of a LearningChain node.

Commands that own a data directory (``run``, ``keygen``, ``verify``,
``genesis``) live here; the read-only commands that ask a running node over
HTTP live in :mod:`learningchain.cli.inspection`; the multi-process demo in
:mod:`learningchain.cli.demo`; ``simulate``, ``experiment`` and ``data`` in
:mod:`learningchain.cli.sim_commands`.

Every failure ends the process with ONE line on stderr saying what to do,
never a traceback, and an exit status (:data:`EXIT_CODES`, also in ``--help``):
2 when the command line is wrong (argparse's convention: a bad flag value, an
unknown name, flags that do not go together, a file or directory it names that
cannot be used; every :class:`ConfigError`), 1 when the command ran and failed
(a node unreachable or answering an error, a node process died, a chain that
does not verify, a key file, a port in use). Lower layers write hints as
``'node.py COMMAND ...'``; :func:`one_line` turns them into the interpreter that
runs now (:func:`argtypes.node_py`). Set ``LEARNINGCHAIN_DEBUG=1`` to see the
traceback of an unexpected error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Sequence

from learningchain.cli import argtypes, run_config, tls_cmd
from learningchain.cli.argtypes import add_dp_flags, add_model_flags, fraction, non_negative, port, positive_int
from learningchain.core.errors import ConfigError, LearningChainError

PROG = "node.py"
GENESIS_FILE = "genesis.json"
#: exit statuses of every command (shown by ``node.py --help``)
EXIT_CODES = ("exit status: 0 done; 1 the command ran and failed (a node unreachable or answering an error, "
              "a node process died, a chain that does not verify, a key file, a port in use); 2 the command "
              "line is wrong (a bad flag value, an unknown name, flags that do not go together, a file or "
              "directory it names that cannot be used); 128+N stopped by signal N (130: Ctrl-C). Every "
              "failure is one line on stderr saying what to do.")
USAGE_ERROR, RUNTIME_ERROR = 2, 1


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (usage stays behind ``--help``)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- run ---------------------------------------------------------------------

def load_genesis_file(path: str | os.PathLike):
    """The :class:`NetworkConfig` in a JSON file written by ``node.py genesis``."""
    from learningchain.ledger.genesis import NetworkConfig
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such genesis file; write one with "
                          f"'{argtypes.node_py()} genesis --nodes N --dataset D --out {p}'") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a readable JSON genesis file ({exc})") from None
    if isinstance(doc, dict) and "config" in doc and "network" not in doc:
        doc = doc["config"]  # accept a whole genesis block document too
    return NetworkConfig.from_dict(doc)


def resolve_genesis(genesis: str | None, data_dir: str, dataset: str | None):
    """--genesis FILE, else DATA_DIR/genesis.json, else the default network for
    the partition directory of ``dataset`` (the node's data file, ``run --data``;
    its meta.json names dataset and node count): open, as no key is known here,
    so priced by the genesis stamp (``genesis --open``)."""
    from learningchain.ledger import genesis as gen
    if dataset and not Path(dataset).is_file():
        raise ConfigError(f"--data: data file {dataset} not found: pass a partition such as "
                          f"data/digits-4-iid/node0.npz, or your own .npz with arrays X and y")
    if genesis:
        return load_genesis_file(genesis)
    local = Path(data_dir) / GENESIS_FILE
    if local.exists():
        return load_genesis_file(local)
    if dataset:
        from learningchain.learning.data import load_meta
        if not (Path(dataset).parent / "meta.json").is_file():
            raise ConfigError(f"no genesis for {dataset}: write one shared by every node with "
                              f"'{argtypes.node_py()} genesis --nodes N --data {dataset} --out "
                              f"{Path(data_dir) / GENESIS_FILE}' (or pass --genesis FILE)")
        meta = load_meta(Path(dataset).parent)
        return gen.open_network(gen.default_config(int(meta.get("n_nodes", 4)), dataset=meta.get("dataset", "digits")))
    # nobody's keys are known here: an open network, priced by the stamp (protocol.md section 6)
    return gen.open_network(gen.default_config())


def data_file(args: argparse.Namespace) -> str | None:
    """``run``'s local data: ``--data FILE``, or the old ``--dataset FILE``
    (deprecated, with a warning line: every other ``--dataset`` takes a name)."""
    if args.dataset is None:
        return args.data
    if args.data is not None:
        raise ConfigError("pass the node's data once, as --data FILE (--dataset FILE is its old name)")
    from learningchain.learning.data import DATASETS
    if args.dataset in DATASETS:
        raise ConfigError(f"a node learns from its own partition, not a whole data set: pass --data FILE, "
                          f"e.g. --data data/{args.dataset}-4-iid/node0.npz (write partitions with "
                          f"'{argtypes.node_py()} data --dataset {args.dataset} --nodes N')")
    print(f"{PROG} run: warning: --dataset FILE is deprecated, use --data {args.dataset}", file=sys.stderr)
    return args.dataset


def check_data_dir(data_dir: str) -> None:
    """A first start creates ``--data-dir`` (and the node's key in it), but only
    inside a directory that exists: a mistyped path must not start a node with a
    new identity somewhere nobody looks."""
    d = Path(data_dir)
    if d.is_dir():
        return
    if d.exists():
        raise ConfigError(f"--data-dir {d} is a file, not a directory")
    parent = d.absolute().parent
    if not parent.is_dir():
        raise ConfigError(f"--data-dir {d}: its parent {parent} does not exist (a typo?); for a new node "
                          f"create it first (mkdir -p {parent}) or make the node's key with "
                          f"'{argtypes.node_py()} keygen --data-dir {d}'")


def cmd_run(args: argparse.Namespace) -> int:
    advertise_url = run_config.advertised(args)  # a wildcard --host needs --advertise-url, said up front
    peers = args.peers  # checked by argtypes.peer_urls: a bad URL is an error, not a silent drop
    dataset = data_file(args)
    check_data_dir(args.data_dir)
    config = resolve_genesis(args.genesis, args.data_dir, dataset)  # a missing --data or genesis file
    if args.test is not None and not Path(args.test).is_file():
        raise ConfigError(f"--test: test file {args.test} not found: pass a .npz with X and y (e.g. "
                          f"data/digits-4-iid/test.npz), or X.npy with a sibling y.npy")
    # imported only now: the node (its learner, the DP accountant's scipy) takes ~1 s to
    # import, and a mistyped --data-dir or --data must answer at once
    from learningchain.node import keyfile, logs, run as node_run
    from learningchain.node.participant import Role
    # the learner settings are checked (participant.Role) before anything is written
    dp = dict(dp_sigma=args.dp_sigma, dp_clip=args.dp_clip, dp_mode=args.dp_mode, dp_epsilon=args.dp_epsilon,
              dp_delta=args.dp_delta, dp_sample_rate=args.dp_sample_rate,
              dp_rounds=args.dp_rounds if args.dp_epsilon else 0)
    Role(attack=args.attack, compression=args.compression, topk_fraction=args.topk_fraction,
         skip_threshold=args.skip_threshold, **dp)
    argtypes.require_secure_aggregation(args.dp_mode, config.secure_aggregation is not None)
    kind = config.model_spec.kind
    learns = dataset is not None or args.test is not None  # else no model is built: no code imported
    if ":" in kind and learns and args.trust_model != kind:  # a genesis is data: running the code it names is opt-in
        raise ConfigError(f"this network's model is {kind}, code from this machine that the node would import "
                          f"and run: start the node with --trust-model {kind} if you trust it")
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    keyfile.load_or_create_key(args.data_dir)
    kwargs = dict(data_dir=args.data_dir, port=args.port, host=args.host, peers=peers,
                  dataset_path=dataset, genesis_config=config, mine=args.mine,
                  attack=args.attack, tls=tls_cmd.run_tls(args))
    kwargs["advertise_url"] = advertise_url
    if args.test is not None:
        kwargs["test_path"] = args.test
    if args.workers is not None:
        kwargs["mine_workers"] = args.workers
    if Role(**dp).dp:
        kwargs.update(dp)
    if args.compression or args.skip_threshold:
        kwargs.update(compression=args.compression, topk_fraction=args.topk_fraction,
                      skip_threshold=args.skip_threshold)
    if args.until_round:
        kwargs["until_round"] = args.until_round
    if args.rest_after_round:
        kwargs["rest_after_round"] = args.rest_after_round
    if args.local_baseline:
        kwargs["local_baseline"] = True
    kwargs["ops"] = logs.ops_settings(args)  # --log-format/--log-file/--log-level, --admin-allow
    node_run.run_node(**kwargs)
    return 0


# --- keygen / verify / genesis --------------------------------------------------

def cmd_keygen(args: argparse.Namespace) -> int:
    from learningchain.core import crypto
    from learningchain.node import keyfile
    path = keyfile.key_path(args.data_dir)
    if path.exists():
        raise ConfigError(f"{path} already exists: refusing to overwrite a node key "
                          f"(move it away first if you really want a new identity)")
    key = crypto.PrivateKey.generate()
    keyfile.save_key(key, args.data_dir)
    print(f"key file  {path} (mode 600)")
    print(f"address   {key.address}")
    print(f"pubkey    {key.public_hex}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from learningchain.ledger.genesis import make_genesis
    from learningchain.node.chainstate import verify_store
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise ConfigError(f"{data_dir}: no such data directory")
    genesis = None
    if (data_dir / GENESIS_FILE).exists():
        genesis = make_genesis(load_genesis_file(data_dir / GENESIS_FILE))
    from learningchain.cli.progress import Progress
    with Progress("block", "verify", on=False if args.json else None, delay=1.0) as bar:
        report = verify_store(data_dir, genesis, progress=bar.goto if bar.on else None)
    if args.json:
        print(json.dumps(asdict(report), indent=1))
        return 0 if report.ok else 1
    if report.ok:
        print(f"OK: {report.blocks} blocks valid from genesis, height {report.height}, tip {report.tip}")
        return 0
    e = report.error or {}
    where = f"height {e.get('height')}" + (f" (block {e.get('hash')})" if e.get("hash") else "")
    print(f"BROKEN at {where}: {e.get('code')}: {e.get('detail')}; {report.blocks} block(s) "
          f"valid before it, best valid tip at height {report.height}", file=sys.stderr)
    return 1


def cmd_genesis(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from learningchain.learning import aggregation
    from learningchain.ledger.genesis import default_config, make_genesis
    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists: pass --force to overwrite it")
    try:
        params = json.loads(args.params) if args.params else None
    except ValueError as exc:
        raise ConfigError(f"--params is not JSON ({exc}): e.g. --params '{{\"f\": 1}}'") from None
    if params is not None and not isinstance(params, dict):
        raise ConfigError(f"--params must be a JSON object, e.g. '{{\"f\": 1}}', got {args.params}")
    if params is None and args.aggregator != "fedavg":
        params = aggregation.default_params(args.aggregator, args.quorum or args.nodes)
    # in this command's flags, before genesis refuses it in its own terms
    argtypes.check_rule_fits(args.aggregator, args.nodes, quorum=args.quorum, explicit=params,
                             byzantine_flag=None, params_flag="--params")
    from learningchain.learning.models import default_spec, spec_for
    from learningchain.node import user_models
    user_models.ensure(args.model)
    spec, described = None, ""
    if args.data:
        from learningchain.learning.data import describe_file
        if args.dataset:
            raise ConfigError("pass either --dataset NAME (a bundled set) or --data FILE, not both")
        info = describe_file(args.data, args.task)
        spec = spec_for(info.task, info.n_features, info.n_outputs, args.model, backend=args.backend)
        described = (f"; model {spec.label} for {info.task}, {info.n_features} features"
                     + (f", {info.n_outputs} classes" if info.task == "classification" else "")
                     + f" (from {info.n_samples} samples in {args.data})")
    elif args.task:
        raise ConfigError("--task applies to --data FILE only (a bundled --dataset fixes its task)")
    else:
        spec = default_spec(args.dataset or "digits", args.model, backend=args.backend)
    config = default_config(args.nodes, network=args.network, dataset=args.dataset or "digits",
                            kind=args.model, rule=args.aggregator, params=params, quorum=args.quorum,
                            round_timeout=args.round_timeout, target_block_ms=args.block_ms, spec=spec)
    if args.participants or args.selection != "all":
        if args.allow_list or args.open:
            raise ConfigError("--participants are the allow-list already: drop --allow-list / --open")
        config = _selecting(config, args)
    elif args.allow_list:
        if args.open:
            raise ConfigError("pass either --allow-list (permissioned) or --open, not both")
        config = replace(config, allow_list=tuple(_keys_of(args.allow_list)))
    elif args.open:
        from learningchain.ledger.genesis import OPEN_STAMP_BITS, open_network
        config = open_network(config, OPEN_STAMP_BITS if args.stamp_bits is None else args.stamp_bits,
                              args.max_samples)
    else:
        raise ConfigError("say who may submit updates: --allow-list DIR_OR_PUBKEY,... (the node data dirs; "
                          "their keys are created if missing) for a permissioned network, or --open for "
                          "a network any key may join, priced by a proof-of-work stamp per tx "
                          "(docs/protocol.md section 6)")
    if args.secure_aggregation:
        from learningchain.ledger.genesis_privacy import default_params
        config = config.with_secure_aggregation(default_params(
            len(config.candidates), args.round_timeout, args.sa_clip, args.sa_threshold, args.sa_scale,
            args.sa_phase_timeout))
    elif any(v is not None for v in (args.sa_threshold, args.sa_scale, args.sa_phase_timeout)) \
            or args.sa_clip != "0.5":
        raise ConfigError("--sa-threshold, --sa-clip, --sa-scale and --sa-phase-timeout need --secure-aggregation")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(config.to_dict(), indent=1, sort_keys=True) + "\n")
    if (args.stamp_bits is not None or args.max_samples is not None) and not args.open:
        config = replace(config, stamp_bits=args.stamp_bits or None, max_samples=args.max_samples)
    who = (f"open to any key, {config.stamp_bits or 0}-bit stamp per tx, claims capped at "
           f"{config.max_samples or 'no limit'}" if config.allowed is None else f"{len(config.allowed)} allowed senders")
    print(f"wrote {out}: network {config.network}, genesis {make_genesis(config).hash}, "
          f"quorum {config.quorum}, rule {config.rule}, {who}{described}")
    return 0


def _selecting(config, args: argparse.Namespace):
    """--participants (data dirs holding node.key, or public keys) with energy
    profiles, and --selection/--select-k (selection.py)."""
    from learningchain.ledger.genesis import with_participants
    keys = _keys_of(args.participants or "")
    if not keys:
        raise ConfigError("--selection needs the candidates: --participants DIR_OR_PUBKEY,...")
    if args.selection != "all" and not 1 <= (args.select_k or 0) <= len(keys):
        raise ConfigError(f"--selection {args.selection} needs --select-k in [1, {len(keys)}]")
    return with_participants(config, keys, args.selection, args.select_k, args.energy_seed)


def _keys_of(items: str) -> list[str]:
    """Public keys from a comma-separated list of node data dirs (the key is
    created there if missing, as the node would on first start) or key hex."""
    from learningchain.node import keyfile
    keys = []
    for item in items.split(","):
        item = item.strip()
        if item:
            is_key = len(item) == 66 and all(ch in "0123456789abcdef" for ch in item)
            keys.append(item if is_key else keyfile.load_or_create_key(Path(item)).public_hex)
    return keys


# --- parser -------------------------------------------------------------------

def _add_run(sub) -> None:
    argtypes.later(sub, sub.add_parser("run", help="start a node (HTTP API, peer sync, learning, optional mining)"),
                   _run_flags)


def _run_flags(p) -> None:
    from learningchain.learning.attacks import ATTACKS
    from learningchain.node.logs import add_ops_flags
    p.add_argument("--data-dir", required=True,
                   help="the node's directory: its key (node_key.pem), the chain store (SQLite), peers.json "
                        "and miner.token; created on first start if its parent exists. The log goes to "
                        "stdout, not here (redirect it, as demo does to --out/node<i>.log)")
    p.add_argument("--port", type=port, required=True, help="HTTP port of the node API")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--peers", type=argtypes.peer_urls, default=[],
                   help="comma-separated peer URLs, e.g. http://127.0.0.1:5001")
    p.add_argument("--data", metavar="FILE",
                   help="this node's local data (.npz with X and y, e.g. data/digits-4-iid/node0.npz, or "
                        "X.npy with a sibling y.npy); without it the node validates and relays but does not learn")
    p.add_argument("--test", metavar="FILE",
                   help="this node's evaluation set (same formats as --data): the global model is measured "
                        "on it every round (default: test.npz next to --data, if there is one)")
    p.add_argument("--dataset", metavar="FILE", help="deprecated name of --data FILE (every other --dataset "
                                                     "takes a bundled data set's name)")
    p.add_argument("--genesis", help="network configuration JSON (default: DATA_DIR/genesis.json, "
                                     "else the default network for the dataset)")
    p.add_argument("--mine", action="store_true", help="mine blocks in this node")
    p.add_argument("--trust-model", metavar="MODULE:FACTORY",
                   help="import and run the user's PyTorch module that the genesis names (a genesis is data: "
                        "the node imports no code it names unless this matches)")
    p.add_argument("--until-round", type=positive_int, metavar="R",
                   help="stop (exit 0) once round R is closed on our chain and, with a test set, measured")
    p.add_argument("--rest-after-round", type=positive_int, metavar="R",
                   help="once round R is closed (and measured), stop learning and mining but keep serving "
                        "the chain, the API and the explorer")
    p.add_argument("--local-baseline", action="store_true",
                   help="train a local-only baseline in the background (this node's data alone, every 10 rounds) "
                        "for the explorer's chart; costs CPU beside the rounds (node.py demo writes the baselines "
                        "instead)")
    p.add_argument("--workers", type=positive_int, help="mining worker processes (with --mine)")
    p.add_argument("--attack", choices=ATTACKS, help="behave as a Byzantine participant (evaluation only)")
    add_dp_flags(p)
    tls_cmd.add_tls_flags(p)
    p.add_argument("--dp-rounds", type=positive_int, default=30,
                   help="rounds this node plans to train in: --dp-epsilon is spread over them, and the node "
                        "stops releasing updates when they are spent (default 30)")
    p.add_argument("--compression", choices=("q8", "topk"), help="send updates as 8-bit quantised or "
                                                                "top-k sparsified deltas (compression.py)")
    p.add_argument("--topk-fraction", type=fraction, default=0.1, help="share of entries a topk update sends")
    p.add_argument("--skip-threshold", type=non_negative, default=0.0,
                   help="send a signed skip instead of an update when ||w - G(r-1)|| is below this")
    add_ops_flags(p)  # --log-format, --log-file, --log-level, --admin-allow (node/logs.py)
    run_config.add_flags(p)  # --advertise-url, --config; every flag also from LC_* and the config file
    p.set_defaults(func=cmd_run)


def _add_admin(sub) -> None:
    p = sub.add_parser("keygen", help="create this node's key (refuses to overwrite)")
    p.add_argument("--data-dir", required=True, help="the node's directory (created if missing): the key goes "
                                                     "to DIR/node_key.pem with mode 600")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("verify", help="revalidate the stored chain from genesis")
    p.add_argument("--data-dir", required=True, help="the node's directory, whose chain store is checked "
                                                     "(with DIR/genesis.json when it is there)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_verify)

    argtypes.later(sub, sub.add_parser("genesis", help="write the genesis.json that every node of a network shares"),
                   _genesis_flags)


def _genesis_flags(p) -> None:
    from learningchain.learning.aggregation import RULES
    p.add_argument("--nodes", type=positive_int, required=True, help="nodes of the network (quorum default)")
    p.add_argument("--dataset", help="bundled dataset the model is built for (default digits)")
    p.add_argument("--data", metavar="FILE", help="build the model for your own data instead: .npz with "
                                                  "X and y, or X.npy with a sibling y.npy (X of any shape)")
    p.add_argument("--task", choices=("classification", "regression"),
                   help="with --data: force the task (default: classification when the labels are "
                        "integers 0..99, else regression)")
    p.add_argument("--out", required=True, help="file to write")
    p.add_argument("--aggregator", choices=sorted(RULES), default="fedavg",
                   help="aggregation rule every node applies (default fedavg; docs/learning.md)")
    p.add_argument("--params", help='aggregation parameters as JSON, e.g. \'{"f": 1}\' (default: the '
                                    "rule's defaults for the quorum)")
    add_model_flags(p)
    p.add_argument("--quorum", type=positive_int, help="updates that close a round (default: --nodes)")
    p.add_argument("--round-timeout", type=positive_int, default=20, help="blocks before a round closes anyway")
    p.add_argument("--block-ms", type=positive_int, default=500, help="target block interval in ms")
    p.add_argument("--network", default="learningchain-demo", help="network name")
    p.add_argument("--force", action="store_true", help="overwrite --out")
    p.add_argument("--participants", help="comma-separated node data dirs (their key is created if "
                                          "missing) or public keys: the participants, with energy profiles")
    p.add_argument("--allow-list", metavar="DIRS_OR_KEYS",
                   help="comma-separated node data dirs (key created if missing) or public keys: the "
                        "only senders whose updates are valid (a permissioned network)")
    p.add_argument("--open", action="store_true",
                   help="write allow_list null: any key may submit (open to Sybils, see docs/protocol.md "
                        "section 6); one of --allow-list, --participants or --open is required")
    p.add_argument("--stamp-bits", type=int, metavar="K",
                   help="every tx id must start with K zero bits (~2^K hashes per tx; default 16 with --open, "
                        "else none; 0 = none)")
    p.add_argument("--max-samples", type=positive_int, metavar="N",
                   help="FedAvg counts a num_samples claim as at most N (default: no cap)")
    p.add_argument("--selection", choices=("all", "random-k", "top-k", "energy-aware"), default="all",
                   help="participant selection policy (needs --participants and --select-k)")
    p.add_argument("--select-k", type=positive_int, help="senders selected per round")
    p.add_argument("--energy-seed", type=int, default=0, help="seed of the participants' energy profiles")
    p.add_argument("--secure-aggregation", action="store_true",
                   help="masked updates: only the sum of a round's deltas is ever revealed (docs/protocol.md "
                        "section 14; needs --allow-list or --participants and the fedavg rule)")
    p.add_argument("--sa-threshold", type=positive_int, metavar="T",
                   help="members whose shares rebuild a secret (default floor(2N/3)+1)")
    p.add_argument("--sa-clip", default="0.5", metavar="C",
                   help="each delta coordinate is clipped to [-C, C] (a decimal, default 0.5)")
    p.add_argument("--sa-scale", type=positive_int, metavar="S",
                   help="fixed-point scale (default: the largest power of two with N*C*S <= 2^28)")
    p.add_argument("--sa-phase-timeout", type=positive_int, metavar="K",
                   help="blocks after which a phase closes anyway (default --round-timeout)")
    p.set_defaults(func=cmd_genesis)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="LearningChain: federated learning on a "
                                                  "proof-of-work ledger.", epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser,
                                action=argtypes.LazyCommands)  # flags added when their command is parsed
    sub.required = True
    _add_run(sub)
    _add_admin(sub)
    tls_cmd.register(sub)
    from learningchain.cli import demo, inspection as inspect_cli
    demo.register(sub)
    inspect_cli.register(sub)
    try:
        from learningchain.cli import sim_commands as sim_cli
    except ImportError:
        sim_cli = None
    if sim_cli is not None:
        sim_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":  # its processes are checked before they start
            argtypes.require_secure_aggregation(getattr(args, "dp_mode", None),
                                                bool(getattr(args, "secure_aggregation", False)))
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `node.py chain | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into a line
        if isinstance(exc, SystemExit):
            raise
        text = one_line(exc)
        print(f"{PROG} {args.command}: {text.removeprefix(f'{args.command}: ')}", file=sys.stderr)
        if os.environ.get("LEARNINGCHAIN_DEBUG"):
            traceback.print_exc()
        return exit_status(exc)


def exit_status(exc: BaseException) -> int:
    """2 for a command line that cannot be used (every ConfigError), 1 for a
    command that ran and failed (:data:`EXIT_CODES`)."""
    return USAGE_ERROR if isinstance(exc, ConfigError) else RUNTIME_ERROR


def one_line(exc: BaseException) -> str:
    """What to tell a user about ``exc``, on one line; a hint ``'node.py CMD``
    from a lower layer names the interpreter that runs now."""
    import requests
    if isinstance(exc, LearningChainError):
        text = str(exc)
    elif isinstance(exc, requests.exceptions.SSLError):  # before ConnectionError, its base
        url = getattr(exc, "node_url", None) or _url_of(exc)
        text = (f"TLS with {url} failed (the certificate is not trusted or not for that name): for a node of "
                f"a network with its own CA, set REQUESTS_CA_BUNDLE to that ca.pem")
    elif isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        url = getattr(exc, "node_url", None) or _url_of(exc)
        text = f"cannot reach node at {url}: is it running?"
    elif isinstance(exc, requests.RequestException):
        text = f"HTTP request failed: {exc}"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    else:
        text = (f"unexpected {type(exc).__name__}: {exc} "
                f"(rerun with LEARNINGCHAIN_DEBUG=1 and report the traceback)")
    return " ".join(text.split()).replace("'node.py ", f"'{argtypes.node_py()} ")


def _url_of(exc: BaseException) -> str:
    req = getattr(exc, "request", None)
    if req is not None and getattr(req, "url", None):
        from urllib.parse import urlsplit
        parts = urlsplit(req.url)
        return f"{parts.scheme}://{parts.netloc}"
    return "the given URL"
