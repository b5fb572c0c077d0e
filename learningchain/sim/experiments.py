"""Sweeps over simulations: Byzantine robustness and differential privacy.

Each point is a full :class:`~learningchain.sim.simulator.Simulation` (real
ledger, signatures, proof of work), so the numbers are those of the protocol,
not of an aggregation rule in isolation.

* :func:`byzantine_sweep`: for each aggregation rule, the final metric as the
  number of attackers grows from 0 to ``max_byzantine`` (attackers are nested:
  the first k of one seeded order), plus the metric per round (the figure of
  Blanchard et al. 2017 and of the seed report: error against rounds).
* :func:`dp_sweep`: final metric against the privacy budget epsilon spent by
  each node after all rounds, for several noise multipliers sigma.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from learningchain.learning import aggregation
from learningchain.core.errors import ConfigError
from learningchain.learning.models import build_model
from learningchain.sim.results import (cumulative_energy, plot_byzantine_sweep, plot_dp_sweep, plot_energy,
                                   primary_metric)
from learningchain.sim.simulator import SimConfig, simulate

DEFAULT_AGGREGATORS = ("fedavg", "median", "trimmed-mean", "krum")


def parse_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in allowed]
    if not items or bad:
        raise ConfigError(f"{what}: unknown {', '.join(bad) or '(empty list)'}; choose from {', '.join(allowed)}")
    return items


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def byzantine_sweep(base: SimConfig, aggregators: Sequence[str], max_byzantine: int,
                    progress: Callable[[str, int, dict], None] | None = None,
                    note: Callable[[str], None] = _stderr) -> dict:
    """``{"metric", "attack", "nodes", "rounds", "aggregators": {rule: {"byzantine",
    "final", "per_round", "rejected_attackers", "params", ["note"]}}}``.

    When a rule cannot be set for ``max_byzantine`` attackers with this many
    nodes (Bulyan needs n >= 4f + 3), its f is lowered to the largest it can
    honour; ``note`` is told (stderr by default) and the row keeps the note."""
    if not 0 <= max_byzantine < base.nodes:
        raise ConfigError(f"max-byzantine must be in [0, nodes) = [0, {base.nodes}), got {max_byzantine}")
    sweep: dict = {"attack": base.attack, "nodes": base.nodes, "rounds": base.rounds,
                   "dataset": base.dataset, "model": base.model, "split": base.split,
                   "aggregators": {}}
    for rule in aggregators:
        params = aggregation.sized_params(rule, base.nodes, max_byzantine, base.n_quorum)  # for the most attackers
        need = aggregation.min_updates(rule, params)
        if need > base.nodes:
            raise ConfigError(f"{rule} with {params} needs {need} updates, only {base.nodes} nodes")
        row: dict = {"params": params, "byzantine": [], "final": [], "per_round": {},
                     "recall": []}
        if rule == "bulyan" and params["f"] < max_byzantine:
            row["note"] = (f"bulyan: f lowered from {max_byzantine} to {params['f']} because Bulyan "
                           f"needs n >= 4f + 3 and there are {base.nodes} nodes; runs with more than "
                           f"{params['f']} attacker(s) exceed what it is set to tolerate")
            note(f"note: {row['note']}")
        for k in range(max_byzantine + 1):
            cfg = replace(base, aggregator=rule, aggregator_params=params, byzantine=k,
                          name=f"{base.name}-{rule}-{k}")
            res = simulate(cfg, with_baselines=False)
            metric = primary_metric(res["final"])
            sweep["metric"] = metric
            row["byzantine"].append(k)
            row["final"].append(res["final"][metric])
            row["per_round"][str(k)] = [e["metrics"][metric] for e in res["rounds"]]
            caught = sum(e["attackers_rejected"] for e in res["rounds"])
            total = sum(e["attackers_rejected"] + e["attackers_accepted"] for e in res["rounds"])
            row["recall"].append(caught / total if total else None)
            if progress:
                progress(rule, k, res)
        sweep["aggregators"][rule] = row
    return sweep


def dp_sweep(base: SimConfig, sigmas: Sequence[float], clip: float,
             progress: Callable[[float, dict], None] | None = None) -> dict:
    """``{"metric", "clip", "delta", "points": [{"sigma", "epsilon", "final"}], "no_dp"}``."""
    if not clip > 0:
        raise ConfigError(f"dp clip must be > 0, got {clip}")
    out: dict = {"clip": clip, "delta": 1e-5, "nodes": base.nodes, "rounds": base.rounds,
                 "points": [], "no_dp": None}
    for sigma in sigmas:
        if sigma < 0:
            raise ConfigError(f"sigma must be >= 0, got {sigma}")
        cfg = replace(base, dp_sigma=float(sigma), dp_clip=float(clip) if sigma > 0 else 0.0,
                      name=f"{base.name}-dp-{sigma:g}")
        res = simulate(cfg, with_baselines=False)
        metric = primary_metric(res["final"])
        out["metric"] = metric
        if sigma == 0:
            out["no_dp"] = res["final"][metric]
        else:
            out["points"].append({"sigma": float(sigma), "epsilon": res["rounds"][-1]["epsilon"],
                                  "final": res["final"][metric]})
        if progress:
            progress(sigma, res)
    return out


def _summary(res: dict, metric: str) -> dict:
    return {"final": res["final"][metric], "energy_j": cumulative_energy(res)[-1] if res["rounds"] else 0.0,
            "per_round": [e["metrics"][metric] for e in res["rounds"]],
            "cumulative_j": cumulative_energy(res),
            "selected": [e.get("selected") for e in res["rounds"]],
            "attackers_selected": [e.get("attackers_selected") for e in res["rounds"]],
            "skipped": [e.get("skipped", 0) for e in res["rounds"]],
            "bytes_per_update": [e.get("bytes_per_update") for e in res["rounds"]],
            "payload_per_update": [e.get("payload_per_update") for e in res["rounds"]]}


def selection_sweep(base: SimConfig, policies: Sequence[str], k: int, params: dict | None = None,
                    progress: Callable[[str, dict], None] | None = None,
                    per_policy: dict | None = None) -> dict:
    """Each selection policy on the same network; ``all`` first, as the reference.
    Per policy: final metric, energy, saving against ``all``, and the energy spent
    when the model first came within ``tolerance`` (1 point) of ``all``'s final.
    ``params`` go to top-k and energy-aware unless ``per_policy`` names the policy."""
    out: dict = {"nodes": base.nodes, "rounds": base.rounds, "k": k, "byzantine": base.byzantine,
                 "attack": base.attack, "aggregator": base.aggregator, "tolerance": 0.01,
                 "policies": {}, "runs": {}}
    order = ["all"] + [p for p in policies if p != "all"]
    for policy in order:
        extra = {} if policy in ("all", "random-k") else dict(params or {})
        extra = dict((per_policy or {}).get(policy, extra))
        cfg = replace(base, selection=policy, select_k=None if policy == "all" else k,
                      selection_params=extra, name=f"{base.name}-{policy}")
        res = simulate(cfg, with_baselines=False)
        metric = primary_metric(res["final"])
        out["metric"] = metric
        row = _summary(res, metric)
        ref = out["policies"].get("all", row)
        row["saving"] = 1 - row["energy_j"] / ref["energy_j"] if ref["energy_j"] else 0.0
        goal = ref["final"] - out["tolerance"]
        hit = next((j for j, v in enumerate(row["per_round"]) if v >= goal), None)
        row["energy_to_target_j"] = None if hit is None else row["cumulative_j"][hit]
        row["params"] = extra
        out["policies"][policy] = row
        out["runs"][policy] = {"initial": res["initial"], "final": res["final"],
                               "rounds": [{"metrics": e["metrics"], "energy": {"total_j": e["energy"]["total_j"]}}
                                          for e in res["rounds"]]}
        if progress:
            progress(policy, row)
    return out


def compression_sweep(base: SimConfig, schemes: Sequence[str], topk_fraction: float = 0.1,
                      skip_threshold: float = 0.0,
                      progress: Callable[[str, dict], None] | None = None) -> dict:
    """Uncompressed, then each scheme (``q8``, ``topk``, ``skip``): final metric,
    bytes per update tx, binary payload against raw float32, energy."""
    raw = sum(4 * math.prod(shape) for _, shape in build_model(base.model_spec()).expected_shapes().values())
    out: dict = {"nodes": base.nodes, "rounds": base.rounds, "raw_float32_bytes": raw, "schemes": {}}
    for scheme in ["none"] + [s for s in schemes if s != "none"]:
        cfg = replace(base, compression=scheme if scheme in ("q8", "topk") else None,
                      topk_fraction=topk_fraction, skip_threshold=skip_threshold if scheme == "skip" else 0.0,
                      name=f"{base.name}-{scheme}")
        res = simulate(cfg, with_baselines=False)
        metric = primary_metric(res["final"])
        row = _summary(res, metric)
        sizes = [b for b in row["bytes_per_update"] if b]
        row["mean_tx_bytes"] = sum(sizes) / len(sizes) if sizes else 0.0
        loads = [b for b in row["payload_per_update"] if b]
        row["payload_vs_raw"] = (sum(loads) / len(loads)) / raw if loads else None
        out["metric"] = metric
        out["schemes"][scheme] = row
        if progress:
            progress(scheme, row)
    plain = out["schemes"]["none"]["mean_tx_bytes"]
    for row in out["schemes"].values():
        row["vs_uncompressed_tx"] = row["mean_tx_bytes"] / plain if plain else None
    return out


def write_sweep(out_dir: str | Path, name: str, sweep: dict) -> list[Path]:
    """``out_dir/<name>.json`` and the sweep's figures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(sweep, indent=1) + "\n")
    if name == "selection":
        note = f", {sweep.get('aggregator')}"
        if (sweep.get("repeats") or {}).get("seeds"):
            note += f" (mean ± std over {len(sweep['repeats']['seeds'])} seeds)"
        return [path, plot_energy(out, sweep["runs"], std=(sweep.get("std") or {}).get("runs"), title=note)]
    if name == "compression":
        return [path]
    if name == "byzantine":
        return [path, *plot_byzantine_sweep(out, sweep)]
    return [path, plot_dp_sweep(out, sweep)]
