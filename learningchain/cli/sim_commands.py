"""``python node.py simulate | experiment | data``: the in-process simulator,
the sweeps and the partition files.

:func:`register` adds the three subcommands to the node's argparse
subparsers; :func:`main` runs them standalone (``python -m learningchain.cli.sim_commands``).
A bad flag or config ends with ONE line on stderr and exit status 2 (a usage
error, as everywhere in ``node.py``: cli/main.py ``EXIT_CODES``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from learningchain.cli.argtypes import (add_dp_flags, add_model_flags, check_rule_fits, count, later, non_negative, number_list,
                                        positive_int)
from learningchain.cli.progress import Progress
from learningchain.core.errors import ConfigError
from learningchain.core.units import metric_name

PROG = "node.py"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _fail(command: str, exc: Exception) -> int:
    print(f"{PROG} {command}: {' '.join(str(exc).split())}", file=sys.stderr)
    return 2


def _overrides(args: argparse.Namespace) -> dict:
    keys = {"nodes": "nodes", "rounds": "rounds", "dataset": "dataset", "samples": "samples", "split": "split", "alpha": "alpha",
            "model": "model", "backend": "backend", "aggregator": "aggregator", "byzantine": "byzantine", "attack": "attack",
            "dp_sigma": "dp_sigma", "dp_clip": "dp_clip", "dp_delta": "dp_delta", "dp_noise": "dp_noise",
            "dp_mode": "dp_mode", "dp_epsilon": "dp_epsilon", "dp_sample_rate": "dp_sample_rate",
            "seed": "seed", "quorum": "quorum",
            "full_nodes": "full_nodes", "out": "out", "selection": "selection", "select_k": "select_k",
            "compression": "compression", "topk_fraction": "topk_fraction",
            "skip_threshold": "skip_threshold", "energy_budget": "energy_budget_j", "hash_nj": "hash_nj",
            "sa_threshold": "sa_threshold", "sa_clip": "sa_clip", "sa_scale": "sa_scale",
            "sa_phase_timeout": "sa_phase_timeout", "sa_drop_after_setup": "sa_drop_after_setup",
            "sa_drop_after_input": "sa_drop_after_input", "data": "data_dir"}
    check_data_flags(args)
    out = {cfg: getattr(args, arg, None) for arg, cfg in keys.items()}
    if getattr(args, "agg_param", None):
        params = {}
        for item in args.agg_param:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ConfigError(f"--agg-param takes NAME=VALUE, got {item!r}")
            params[name] = int(value) if value.lstrip("-").isdigit() else value
        out["aggregator_params"] = params
    if getattr(args, "explore", None) is not None:
        out["selection_params"] = {"explore": args.explore}
    if getattr(args, "secure_aggregation", False):
        out["secure_aggregation"] = True
    return out


def check_data_flags(args: argparse.Namespace) -> None:
    """--data DIR replaces --dataset, --samples and --split (its files are the partitions)."""
    if getattr(args, "data", None) is None:
        return
    given = [flag for flag, dest in (("--dataset", "dataset"), ("--samples", "samples"), ("--split", "split"),
                                     ("--alpha", "alpha")) if getattr(args, dest, None) is not None]
    if given:
        raise ConfigError(f"--data DIR brings its own partitions: drop {', '.join(given)}")


def add_data_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR",
                   help="your own data instead of --dataset: DIR/node0.npz, node1.npz, ... (arrays X and y, X of "
                        "any shape; or node0_X.npy with node0_y.npy), one per node, and the hold-out DIR/test.npz")


def build_config(args: argparse.Namespace):
    from learningchain.sim.config import SimConfig, load_config
    over = _overrides(args)
    if args.config:
        return load_config(args.config, over)
    return SimConfig.from_dict({k: v for k, v in over.items() if v is not None}, "flags")


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def round_row(entry: dict, metric: str) -> str:
    t = entry["timing"]
    return (f"{entry['round']:>5} {entry['height']:>6} {len(entry['accepted']):>8} {len(entry['rejected']):>8} "
            f"{entry['metrics'][metric]:>9.4f} {entry['attackers_rejected']:>6}/"
            f"{entry['attackers_rejected'] + entry['attackers_accepted']:<3} {sum(t.values()):>7.2f}s")


def print_round(entry: dict, metric: str, bar: Progress | None = None) -> None:
    """The table row of a round, above the rounds' progress bar when there is one."""
    (bar or Progress("round", "", on=False)).write(round_row(entry, metric))
    if bar is not None:
        bar.update()


def _sa_line(sim) -> str:
    p = sim.network.secure_aggregation
    if p is None:
        return ""
    return (f", secure aggregation t={p.threshold} clip={p.clip} scale={p.scale} phase_timeout={p.phase_timeout}"
            f" (drop {sim.cfg.sa_drop_after_setup} after setup, {sim.cfg.sa_drop_after_input} after input)")


def _seeds(text: str) -> list[int]:
    """``--seeds`` value: ``0,1,2``, ``0..4`` or a mix (learningchain/sim/repeats.py)."""
    from learningchain.sim.repeats import parse_seeds
    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _exclusive_seeds(args: argparse.Namespace) -> None:
    if getattr(args, "seeds", None) is not None and args.seed is not None:
        raise ConfigError("--seed and --seeds are exclusive: one seed with --seed, several with --seeds")


def _simulate_one(args: argparse.Namespace, cfg, out: Path, quiet: bool = False) -> dict:
    """Run one simulation of ``cfg``, print its table (unless ``quiet``), write
    ``out``/results.json and its figures; return the results."""
    from learningchain.sim.provenance import command_line
    from learningchain.sim.results import plot_results, primary_metric, write_results
    from learningchain.sim.simulator import Simulation
    sim = Simulation(cfg)
    metric = metric_name(sim.spec.task)
    say = (lambda *a, **k: None) if quiet else print
    say(f"{cfg.name}: {cfg.nodes} nodes ({len(sim.attackers)} x {cfg.attack if sim.attackers else 'no attack'}), "
        f"{cfg.rounds} rounds, {cfg.data_dir or f'{cfg.dataset}/{cfg.split}'}, {cfg.model}, {cfg.aggregator} "
        f"{json.dumps(sim.rule_params, sort_keys=True)}, "
        f"{cfg.n_full} full nodes, quorum {cfg.n_quorum}" + _sa_line(sim))
    if sim.undersized:
        print(f"warning: {sim.undersized}; recorded in results.json (config.aggregator_params_warning)",
              file=sys.stderr)
    say(f"{'round':>5} {'height':>6} {'accepted':>8} {'rejected':>8} {metric:>9} {'attk-rej':>10} {'time':>8}")
    with Progress("round", cfg.name, total=cfg.rounds) as bar:
        results = sim.run_documented(not args.no_baselines,
                                     (lambda e: bar.update()) if quiet else (lambda e: print_round(e, metric, bar)),
                                     command_line(args))
    m = primary_metric(results["final"])
    say(f"initial {m} {results['initial'][m]:.4f}  final {results['final'][m]:.4f}")
    for name, rep in list(results.get("privacy", {}).items())[:1]:
        say(f"privacy ({rep['mode']} mode, {rep['relation']}): epsilon {rep['epsilon']:.4f}, "
            f"delta {rep['delta']:g}, noise multiplier {rep['noise_multiplier']:.4f} (every node alike)")
    if not args.no_baselines:
        for name, base in results["baselines"].items():
            gap = results["final"][m] - base[m]
            say(f"  vs {name:<20} {base[m]:.4f}  (federated {'+' if gap >= 0 else ''}{gap:.4f})")
    write_results(out, results)
    plot_results(out, results)
    return results


def cmd_simulate(args: argparse.Namespace) -> int:
    try:
        _exclusive_seeds(args)
        cfg = build_config(args)
        check_rule_fits(cfg.aggregator, cfg.nodes, cfg.byzantine, quorum=cfg.quorum,
                        explicit=cfg.aggregator_params, params_flag="--agg-param" if cfg.aggregator_params else None)
        out = Path(cfg.out or f"out/{cfg.name}")
        if args.seeds is not None:
            return _simulate_seeds(args, cfg, out)
        results = _simulate_one(args, cfg, out)
    except ConfigError as exc:
        return _fail("simulate", exc)
    print(f"simulation {results['simulation_s']:.1f}s, total {results['elapsed_s']:.1f}s; "
          f"wrote {out}/results.json, metric.png, updates.png")
    return 0


def _simulate_seeds(args: argparse.Namespace, cfg, out: Path) -> int:
    """``simulate --seeds``: one run per seed in out/seed-<s>/, their summary in
    out/results.json (learningchain/sim/repeats.py) and out/metric.png (mean ± std band)."""
    from learningchain.sim.repeats import aggregate_runs, pm
    from learningchain.sim.results import plot_repeats, primary_metric, write_json
    cfgs = {s: replace(cfg, seed=s, out=str(out / f"seed-{s}")) for s in args.seeds}
    start = time.perf_counter()
    runs = {}
    for s, c in cfgs.items():
        res = _simulate_one(args, c, Path(c.out), quiet=True)
        m = primary_metric(res["final"])
        runs[s] = res
        print(f"seed {s}: initial {m} {res['initial'][m]:.4f}  final {res['final'][m]:.4f}  "
              f"({res['simulation_s']:.1f}s) -> {c.out}/results.json", flush=True)
    agg = aggregate_runs(runs)
    from learningchain.sim.provenance import command_line, provenance
    agg["provenance"] = provenance(agg["config"], {"seeds": list(args.seeds)}, command_line(args))
    agg["config"]["out"] = str(out)
    agg["runs"] = {str(s): f"seed-{s}/results.json" for s in args.seeds}
    m = primary_metric(runs[args.seeds[0]]["final"])
    n = len(args.seeds)
    print(f"{cfg.name}: {n} seeds {','.join(map(str, args.seeds))}; mean ± sample std (n - 1) over the seeds")
    print(f"{'round':>5} {m + ' mean ± std':>22} {'n':>3}")
    for e in agg["rounds"]:
        st = e["metrics"][m]
        print(f"{e['round']:>5} {pm(st):>22} {st['n']:>3}")
    print(f"final {m} {pm(agg['final'][m])} (n={agg['final'][m]['n']}), initial {pm(agg['initial'][m])}")
    for name, base in agg["baselines"].items():
        if base is not None:
            print(f"  {name:<20} {pm(base[m])}")
    if "privacy_epsilon" in agg:
        print(f"  privacy epsilon      {pm(agg['privacy_epsilon'])}")
    path = write_json(out / "results.json", agg)
    plot_repeats(out, agg)
    print(f"{n} seeds in {time.perf_counter() - start:.1f}s; wrote {path}, {out}/metric.png and "
          f"{out}/seed-<s>/ per seed")
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    try:
        _exclusive_seeds(args)
    except ConfigError as exc:
        return _fail("experiment", exc)
    from learningchain.learning import aggregation
    from learningchain.sim import experiments
    from learningchain.learning.data import dir_files
    from learningchain.sim.simulator import SimConfig
    bar = Progress("run", f"experiment {args.kind}")  # on a terminal: a bar on stderr, the rows above it
    try:
        check_data_flags(args)
        seeds = args.seeds if args.seeds is not None else [0 if args.seed is None else args.seed]
        args.seed = seeds[0] if args.seeds is None else None
        nodes = args.nodes or (len(dir_files(args.data)[0]) if args.data else 10)
        base = SimConfig(name=f"{args.kind}", nodes=nodes, rounds=args.rounds, dataset=args.dataset or "digits",
                         samples=args.samples, data_dir=args.data,
                         split=args.split or "iid", alpha=0.5 if args.alpha is None else args.alpha,
                         model=args.model, backend=args.backend, attack=args.attack,
                         seed=seeds[0], byzantine=args.byzantine,
                         aggregator=args.aggregator or "fedavg")
        out = Path(args.out or f"out/experiment-{args.kind}")
        start = time.perf_counter()
        if args.kind == "byzantine":
            rules = experiments.parse_list(args.aggregators, aggregation.RULES, "--aggregators")
            for rule in rules:  # sized for the most attackers of the sweep
                check_rule_fits(rule, nodes, args.max_byzantine, byzantine_flag="--max-byzantine")
        else:  # selection, compression, dp: one rule, sized for --byzantine
            check_rule_fits(base.aggregator, nodes, args.byzantine)
        sweeps = {}
        for seed in seeds:
            if args.seeds is not None:
                bar.write(f"seed {seed}:")
            sweeps[seed] = _sweep(args, replace(base, seed=seed), bar, rules if args.kind == "byzantine" else None)
    except (ConfigError, ValueError) as exc:
        bar.close()
        return _fail("experiment", exc)
    bar.close()
    from learningchain.sim.provenance import command_line, flags, provenance
    prov = provenance({"flags": flags(args), "base": base.to_dict()},
                      {"seed": base.seed} if args.seeds is None else {"seeds": list(seeds)}, command_line(args))
    if args.seeds is None:
        sweep = sweeps[seeds[0]]
        sweep["provenance"] = prov
        paths = experiments.write_sweep(out, args.kind, sweep)
    else:
        from learningchain.sim.repeats import aggregate_sweeps
        for seed, one in sweeps.items():
            experiments.write_sweep(out / f"seed-{seed}", args.kind, one)
        agg = aggregate_sweeps(sweeps)
        agg["provenance"] = prov
        _print_sweep_summary(args.kind, agg)
        paths = experiments.write_sweep(out, args.kind, agg) + [out / f"seed-<s>/{args.kind}.json"]
    print(f"{time.perf_counter() - start:.1f}s; wrote {', '.join(str(p) for p in paths)}")
    return 0


def _sweep(args: argparse.Namespace, base, bar: Progress, rules) -> dict:
    """One sweep of ``args.kind`` from ``base``, its rows printed as they come."""
    from learningchain.sim import experiments
    if args.kind == "byzantine":
        bar.write(f"{'aggregator':<14} {'attackers':>9} {'final':>8} {'attackers rejected':>19}")

        def show(rule, k, res):
            m = next(iter(res["final"]))
            caught = sum(e["attackers_rejected"] for e in res["rounds"])
            total = sum(e["attackers_rejected"] + e["attackers_accepted"] for e in res["rounds"])
            bar.write(f"{rule:<14} {k:>9} {res['final'][m]:>8.4f} {caught:>12}/{total:<6}")
            bar.update()
        bar.start(len(rules) * (args.max_byzantine + 1))
        return experiments.byzantine_sweep(base, rules, args.max_byzantine, show)
    if args.kind == "selection":
        from learningchain.learning.selection import POLICIES
        policies = experiments.parse_list(args.policies, POLICIES, "--policies")
        bar.write(f"{'policy':<13} {'final':>8} {'energy J':>9} {'saving':>7} {'J to all-1pt':>12}  "
                  "attackers selected per round")

        def show(policy, row):
            hit = row["energy_to_target_j"]
            bar.write(f"{policy:<13} {row['final']:>8.4f} {row['energy_j']:>9.2f} {row['saving']:>7.1%} "
                      f"{'-' if hit is None else f'{hit:.2f}':>12}  {row['attackers_selected']}")
            bar.update()
        bar.start(len({"all", *policies}))
        return experiments.selection_sweep(base, policies, args.k, {"explore": args.explore}, show)
    if args.kind == "compression":
        schemes = experiments.parse_list(args.schemes, ("none", "q8", "topk", "skip"), "--schemes")
        bar.write(f"{'scheme':<7} {'final':>8} {'tx bytes':>9} {'payload/raw f32':>15} {'energy J':>9} skipped")

        def show(scheme, row):
            bar.write(f"{scheme:<7} {row['final']:>8.4f} {row['mean_tx_bytes']:>9.0f} "
                      f"{_fmt(row.get('payload_vs_raw')):>15} {row['energy_j']:>9.2f} {sum(row['skipped'])}")
            bar.update()
        bar.start(len({"none", *schemes}))
        sweep = experiments.compression_sweep(base, schemes, args.topk_fraction, args.skip_threshold, show)
        for scheme, row in sweep["schemes"].items():
            bar.write(f"  {scheme}: tx bytes {row['vs_uncompressed_tx']:.3f} x the uncompressed tx")
        return sweep
    bar.write(f"{'sigma':>6} {'epsilon':>10} {'final':>8}")

    def show(sigma, res):
        m = next(iter(res["final"]))
        eps = res["rounds"][-1].get("epsilon")
        bar.write(f"{sigma:>6g} {_fmt(eps):>10} {res['final'][m]:>8.4f}")
        bar.update()
    bar.start(len(args.sigmas))
    return experiments.dp_sweep(base, args.sigmas, args.clip, show)


def _pm(mean, std) -> str:
    if not isinstance(mean, (int, float)):
        return "-"
    return f"{mean:.4f} ± {'-' if std is None else f'{std:.4f}'}"


def _print_sweep_summary(kind: str, agg: dict) -> None:
    """The points of a repeated sweep: mean ± sample std over the seeds."""
    n, std = agg["repeats"]["n"], agg["std"]
    print(f"mean ± sample std (n - 1) over {n} seeds {','.join(map(str, agg['repeats']['seeds']))}:")
    if kind == "byzantine":
        print(f"{'aggregator':<14} {'attackers':>9} {'final':>18}")
        for rule, row in agg["aggregators"].items():
            for i, k in enumerate(row["byzantine"]):
                print(f"{rule:<14} {k:>9} {_pm(row['final'][i], std['aggregators'][rule]['final'][i]):>18}")
    elif kind in ("selection", "compression"):
        table = agg["policies" if kind == "selection" else "schemes"]
        print(f"{'scheme' if kind == 'compression' else 'policy':<13} {'final':>18} {'energy J':>18}")
        for name, row in table.items():
            d = std["policies" if kind == "selection" else "schemes"][name]
            print(f"{name:<13} {_pm(row['final'], d['final']):>18} {_pm(row['energy_j'], d['energy_j']):>18}")
    else:
        print(f"{'sigma':>6} {'epsilon':>10} {'final':>18}")
        if agg.get("no_dp") is not None:
            print(f"{0:>6g} {'inf':>10} {_pm(agg['no_dp'], std.get('no_dp')):>18}")
        for p, d in zip(agg["points"], std["points"]):
            print(f"{p['sigma']:>6g} {_fmt(p['epsilon']):>10} {_pm(p['final'], d['final']):>18}")


def cmd_data(args: argparse.Namespace) -> int:
    from learningchain.learning import data
    try:
        if args.data is not None:
            return check_data_dir(args)
        if args.dataset is None:
            if args.samples is not None:
                raise ConfigError("--samples needs --dataset (the shipped partitions have fixed sizes)")
            paths = data.regenerate(args.out or "data", seed=args.seed)
        else:
            name = f"{args.dataset}-{args.nodes or 4}-{args.split}" + (f"-{args.alpha:g}" if args.split != "iid" else "")
            paths = [data.write_partitions(Path(args.out or "data") / name, args.dataset, args.nodes or 4,
                                           args.split, args.alpha, args.seed, args.samples)]
    except ConfigError as exc:
        return _fail("data", exc)
    for p in paths:
        print(f"wrote {p}/ (node*.npz, test.npz, meta.json)")
    return 0


def check_data_dir(args: argparse.Namespace) -> int:
    """``data --data DIR``: read and check a user's directory, one line per file."""
    from learningchain.learning import data
    if args.dataset is not None or args.samples is not None or args.out is not None:
        raise ConfigError("--data DIR checks your files and writes nothing: drop --dataset, --samples and --out")
    d = data.load_data_dir(args.data)
    if args.nodes is not None and args.nodes != len(d.files):
        raise ConfigError(f"--nodes {args.nodes} does not match the {len(d.files)} node files in {d.directory}")
    i = d.info
    print(f"{d.directory}: {len(d.files)} nodes, {i.task}, {i.n_features} features"
          + (f", {i.n_outputs} classes" if i.task == "classification" else "")
          + f", {i.n_samples} training samples" + ("" if d.test is None else f", {len(d.test[1])} test samples"))
    for line in data.summary_lines(d):
        print(f"  {line}")
    if d.test is None:
        print(data.no_test_line(d.directory), file=sys.stderr)
    return 0


def add_samples_flag(parser: argparse.ArgumentParser) -> None:
    from learningchain.learning import data
    parser.add_argument(
        "--samples", type=positive_int, metavar="N",
        help=f"samples to generate for {' / '.join(data.SYNTHETIC)} (training and the "
             f"{round(100 * data.TEST_SIZE)} %% hold-out); default: {data.SYNTHETIC_SAMPLES}, or enough for "
             f"{data.SYNTHETIC_PER_NODE} training samples per node when there are more nodes "
             f"(e.g. {data.default_samples(data.SYNTHETIC[0], 1000)} for 1000). The other datasets "
             f"have a fixed size and refuse it")


def _one_line_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.error = OneLineParser.error.__get__(parser)  # type: ignore[method-assign]
    return parser


def register(subparsers) -> None:
    """Add ``simulate``, ``experiment`` and ``data`` to ``subparsers`` (their flags
    when the command is parsed: :func:`~learningchain.cli.argtypes.later`)."""
    later(subparsers, _one_line_errors(subparsers.add_parser(
        "simulate", help="run N participants x R rounds in one process on the real ledger core")), _simulate_flags)
    later(subparsers, _one_line_errors(subparsers.add_parser(
        "experiment", help="a sweep of simulations: byzantine (rules x attackers), dp (noise), selection "
                           "(policies: accuracy against energy) or compression (update schemes)")), _experiment_flags)
    later(subparsers, _one_line_errors(subparsers.add_parser("data", help="(re)write partition files")), _data_flags)


def _simulate_flags(p: argparse.ArgumentParser) -> None:
    from learningchain.learning import aggregation, data
    from learningchain.learning.attacks import ATTACKS
    p.add_argument("--config", help="configs/NAME.json (flags override it)")
    p.add_argument("--nodes", type=positive_int, help="participants, one update each per round (with --data: "
                                                      "its node files, and --nodes must match)")
    p.add_argument("--rounds", type=positive_int, help="rounds to run")
    p.add_argument("--dataset", choices=data.DATASETS, help="bundled data set (default digits)")
    add_data_dir_flag(p)
    add_samples_flag(p)
    p.add_argument("--split", choices=data.SPLITS, help="how the data is spread over the nodes (default iid)")
    p.add_argument("--alpha", type=non_negative, help="Dirichlet concentration (smaller: more skew)")
    add_model_flags(p, default=None)
    p.add_argument("--aggregator", choices=aggregation.RULES,
                   help="aggregation rule (default fedavg); robust rules are sized for --byzantine")
    p.add_argument("--agg-param", action="append", metavar="NAME=VALUE",
                   help="aggregation parameter, repeatable (e.g. f=2); overrides the sizing for --byzantine")
    p.add_argument("--byzantine", type=count, help="number of attacking participants")
    p.add_argument("--attack", choices=ATTACKS, help="what the attackers do (with --byzantine)")
    add_dp_flags(p, defaults=False)
    p.add_argument("--dp-noise", choices=("seeded", "os"),
                   help="DP noise: seeded = reproducible experiments, NOT private (default); os = OS entropy")
    p.add_argument("--seed", type=count, help="seed of the data split, keys, training and noise (default 0)")
    p.add_argument("--seeds", type=_seeds, metavar="LIST",
                   help="run once per seed (0,1,2 or 0..4) and report mean ± std; not with --seed")
    p.add_argument("--quorum", type=positive_int, help="updates that close a round (default: nodes)")
    p.add_argument("--full-nodes", type=positive_int, help="validating ledgers (default min(nodes, 3))")
    p.add_argument("--selection", choices=("all", "random-k", "top-k", "energy-aware"),
                   help="participant selection policy (default all)")
    p.add_argument("--select-k", type=positive_int, help="participants selected per round")
    p.add_argument("--explore", type=count, help="random picks among the k (top-k, energy-aware)")
    p.add_argument("--energy-budget", type=non_negative, help="per-node learning budget, joules")
    p.add_argument("--hash-nj", type=count, help="nanojoules per proof-of-work hash (4000)")
    p.add_argument("--compression", choices=("q8", "topk"), help="send compressed deltas")
    p.add_argument("--topk-fraction", type=non_negative, help="share of entries a topk update sends (0.1)")
    p.add_argument("--skip-threshold", type=non_negative, help="skip when ||w - G(r-1)|| is below this")
    p.add_argument("--secure-aggregation", action="store_true",
                   help="secure aggregation (docs/protocol.md section 14): masked inputs, only their sum revealed")
    p.add_argument("--sa-threshold", type=positive_int, help="shares that rebuild a secret (default 2N/3 + 1)")
    p.add_argument("--sa-clip", metavar="C", help="per-coordinate clipping range of a delta (default 0.5)")
    p.add_argument("--sa-scale", type=positive_int, help="fixed-point scale (default: the largest that fits)")
    p.add_argument("--sa-phase-timeout", type=positive_int, help="blocks per phase (default round timeout)")
    p.add_argument("--sa-drop-after-setup", type=count, help="members that vanish after setup, each round")
    p.add_argument("--sa-drop-after-input", type=count, help="members that vanish after input, each round")
    p.add_argument("--no-baselines", action="store_true", help="skip centralized/local-only training")
    p.add_argument("--out", help="output directory (default out/NAME)")
    p.set_defaults(func=cmd_simulate)



def _experiment_flags(p: argparse.ArgumentParser) -> None:
    from learningchain.learning import aggregation, data
    from learningchain.learning.attacks import ATTACKS
    p.add_argument("kind", choices=("byzantine", "dp", "selection", "compression"),
                   help="byzantine: each rule of --aggregators against 0..--max-byzantine attackers; dp: each "
                        "noise multiplier of --sigmas; selection: each policy of --policies; compression: "
                        "each scheme of --schemes")
    p.add_argument("--dataset", choices=data.DATASETS, help="bundled data set (default digits)")
    add_data_dir_flag(p)
    add_samples_flag(p)
    p.add_argument("--nodes", type=positive_int,
                   help="participants per simulation (default 10; with --data: its node files)")
    p.add_argument("--rounds", type=positive_int, default=10, help="rounds per simulation (default 10)")
    p.add_argument("--split", choices=data.SPLITS, help="how the data is spread over the nodes (default iid)")
    p.add_argument("--alpha", type=non_negative,
                   help="Dirichlet concentration of --split dirichlet or quantity (default 0.5; smaller: more skew)")
    add_model_flags(p)
    p.add_argument("--attack", choices=ATTACKS, default="sign-flip", help="what attackers do (default sign-flip)")
    p.add_argument("--aggregators", default=",".join(("fedavg", "median", "trimmed-mean", "krum")),
                   help="byzantine: comma-separated rules (default fedavg,median,trimmed-mean,krum)")
    p.add_argument("--max-byzantine", type=count, default=3,
                   help="byzantine: attackers from 0 up to this (default 3); robust rules are sized for it")
    p.add_argument("--byzantine", type=count, default=0, help="selection/compression: attackers (default 0)")
    p.add_argument("--aggregator", choices=aggregation.RULES, help="selection/compression: rule (fedavg)")
    p.add_argument("--policies", default="all,random-k,top-k,energy-aware", help="selection: policies")
    p.add_argument("--k", type=positive_int, default=8, help="selection: participants per round")
    p.add_argument("--explore", type=count, default=4, help="selection: random picks among k")
    p.add_argument("--schemes", default="q8,topk,skip", help="compression: none,q8,topk,skip")
    p.add_argument("--topk-fraction", type=non_negative, default=0.1,
                   help="compression: share of entries a topk update sends (default 0.1)")
    p.add_argument("--skip-threshold", type=non_negative, default=0.85,
                   help="compression: skip sends a skip when ||w - G(r-1)|| is below this (default 0.85)")
    p.add_argument("--sigmas", type=number_list, default=[0.0, 0.3, 1.0, 3.0],
                   help="dp: comma-separated noise multipliers (default 0,0.3,1,3)")
    p.add_argument("--clip", type=non_negative, default=1.0, help="dp: clip norm C")
    p.add_argument("--seed", type=count, help="seed of the data split, keys and training (default 0)")
    p.add_argument("--seeds", type=_seeds, metavar="LIST",
                   help="run every point once per seed (0,1,2 or 0..4): mean ± std per point, error bars; "
                        "not with --seed")
    p.add_argument("--out", help="output directory (default out/experiment-KIND)")
    p.set_defaults(func=cmd_experiment)


def _data_flags(p: argparse.ArgumentParser) -> None:
    from learningchain.learning import data
    p.add_argument("--dataset", choices=data.DATASETS, help="default: the shipped partitions")
    p.add_argument("--data", metavar="DIR",
                   help="check your own data directory instead (node0.npz, node1.npz, ... and test.npz, as "
                        "simulate/experiment/demo --data take it): one line per file, nothing written")
    add_samples_flag(p)
    p.add_argument("--nodes", type=positive_int,
                   help="partitions to write, one per node (default 4; with --data: must match its node files)")
    p.add_argument("--split", choices=data.SPLITS, default="iid",
                   help="iid, dirichlet (label skew, --alpha) or quantity (size skew); default iid")
    p.add_argument("--alpha", type=non_negative, default=0.5,
                   help="Dirichlet concentration of --split dirichlet or quantity (default 0.5; smaller: more skew)")
    p.add_argument("--seed", type=count, default=0, help="seed of the split (default 0)")
    p.add_argument("--out", help="root directory (default data/)")
    p.set_defaults(func=cmd_data)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog=PROG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
