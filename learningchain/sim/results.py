"""The results of a learning run, as a file and as figures.

One schema for the in-process simulator and the live demo, so that a figure
drawn from either means the same thing (``results.json``)::

    {"config":   {...how the run was set up...},
     "initial":  {metric: value}                      # G0 on the test set
     "rounds":   [{"round", "height", "metrics": {metric: value},
                   "accepted": [tx ids], "rejected": {tx id: reason},
                   "attackers_rejected", "attackers_accepted",
                   "precision", "recall",              # of rejection as attacker detection
                   "timing": {phase: seconds}, "bytes": tx bytes,
                   "epsilon": eps, "delta": delta,     # only with DP: (eps, delta)-DP spent so far
                   "dp_mode": "node" | "sample",       # only with DP (simulator)
                   # optional (simulator): "selected", "attackers_selected", "skipped",
                   # "bytes_per_update", "energy": {"total_j", "train_j", "comm_j",
                   # "pow_j", "per_node": {name: J}}  (learningchain/learning/energy.py)
                   # optional (live demo): "traffic_bytes" (all the nodes sent), "model_digest"
                   }, ...]
     "final":    {metric: value},                     # G(R)
     "baselines": {"centralized": {metric: value},   # null when skipped (--no-baselines)
                   "local_only": {metric: mean over nodes, "per_node": [{...}]},   # or null
                   "centralized_sklearn": {...}},     # optional
     "elapsed_s": seconds,
     "privacy":  {node name: {"mode", "epsilon", "delta", "rounds", "noise_multiplier",
                  "target_epsilon", "relation", ...}},   # optional, only DP nodes (learning/privacy.py)
     "provenance": {"config", "seeds", "command", "git", "packages", "python", "host", ...}}
                  # resolved configuration, versions, commit (learningchain/sim/provenance.py)

Metric names: ``accuracy precision recall f1`` (classification, macro
averages) or ``rmse mae r2`` (regression).

Figures (matplotlib, Agg backend: no display needed): ``metric.png`` (the
primary metric per round with the baselines as horizontal lines),
``updates.png`` (accepted and rejected updates per round) and, for sweeps,
``byzantine.png`` / ``byzantine_rounds.png`` and ``dp.png``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1")
REGRESSION_METRICS = ("rmse", "mae", "r2")
ROUND_KEYS = ("round", "height", "metrics", "accepted", "rejected", "attackers_rejected",
              "attackers_accepted", "precision", "recall", "timing", "bytes")
TOP_KEYS = ("config", "rounds", "final", "baselines", "initial", "elapsed_s")
RESULTS_FILE = "results.json"


class ResultsError(ValueError):
    """A results document does not follow the schema."""


def primary_metric(metrics: Mapping[str, Any]) -> str:
    """``accuracy`` for classifiers, ``rmse`` for regressors."""
    if "accuracy" in metrics:
        return "accuracy"
    if "rmse" in metrics:
        return "rmse"
    raise ResultsError(f"metrics {sorted(metrics)} hold neither accuracy nor rmse")


def higher_is_better(metric: str) -> bool:
    return metric not in ("rmse", "mae")


def detection(rejected_ids: Iterable[str], accepted_ids: Iterable[str],
              attacker_ids: Iterable[str]) -> dict:
    """Rejection seen as attacker detection, over one round's updates.

    precision = attackers rejected / updates rejected; recall = attackers
    rejected / attacker updates. ``None`` when undefined (nothing rejected, no
    attacker)."""
    rejected, accepted, bad = set(rejected_ids), set(accepted_ids), set(attacker_ids)
    caught = len(rejected & bad)
    return {"attackers_rejected": caught, "attackers_accepted": len(accepted & bad),
            "precision": caught / len(rejected) if rejected else None,
            "recall": caught / len(bad & (rejected | accepted)) if bad & (rejected | accepted) else None}


def round_entry(round: int, height: int, metrics: Mapping[str, float], commitment: Mapping,
                attacker_ids: Iterable[str] = (), timing: Mapping[str, float] | None = None,
                nbytes: int = 0, epsilon: float | None = None, delta: float | None = None) -> dict:
    """One element of ``rounds`` from a round commitment (as the chain holds it)
    and the ids of the updates known to come from attackers."""
    accepted = list(commitment.get("accepted", []))
    rejected = dict(commitment.get("rejected", {}))
    entry = {"round": int(round), "height": int(height),
             "metrics": {k: float(v) for k, v in metrics.items()},
             "accepted": accepted, "rejected": rejected,
             **detection(rejected, accepted, attacker_ids),
             "timing": {k: round_s(v) for k, v in (timing or {}).items()}, "bytes": int(nbytes)}
    if epsilon is not None:
        entry["epsilon"] = float(epsilon)
    if delta is not None:
        entry["delta"] = float(delta)
    return entry


def round_s(seconds: float) -> float:
    return float(f"{seconds:.4f}")


def _json_safe(obj: Any) -> Any:
    """inf/NaN become strings so that the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return _json_safe(obj.item())
    return obj


def check_results(results: Mapping) -> None:
    """Raise :class:`ResultsError` naming the first thing that breaks the schema."""
    missing = [k for k in TOP_KEYS if k not in results]
    if missing:
        raise ResultsError(f"results miss {', '.join(missing)}")
    names = set(results["final"])
    if names not in (set(CLASSIFICATION_METRICS), set(REGRESSION_METRICS)):
        raise ResultsError(f"final metrics must be {CLASSIFICATION_METRICS} or "
                           f"{REGRESSION_METRICS}, got {sorted(names)}")
    if set(results["initial"]) != names:
        raise ResultsError("initial metrics must use the same names as final")
    for which in ("centralized", "local_only"):
        if which not in results["baselines"]:
            raise ResultsError(f"baselines miss {which} (null when the run skipped it)")
        base = results["baselines"][which]
        if base is not None and not names <= set(base):
            raise ResultsError(f"baselines.{which} must hold {sorted(names)} or be null")
    local = results["baselines"]["local_only"]
    if local is not None and "per_node" not in local:
        raise ResultsError("baselines.local_only must hold per_node")
    for i, entry in enumerate(results["rounds"]):
        lacking = [k for k in ROUND_KEYS if k not in entry]
        if lacking:
            raise ResultsError(f"rounds[{i}] misses {', '.join(lacking)}")
        if set(entry["metrics"]) != names:
            raise ResultsError(f"rounds[{i}].metrics must use the names of final")


def write_results(out_dir: str | os.PathLike, results: Mapping) -> Path:
    """Check and write ``out_dir/results.json`` (created if needed)."""
    check_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def write_json(path: str | os.PathLike, doc: Any) -> Path:
    """Strict JSON (inf/NaN as strings) at ``path``, written atomically; for
    documents that are not one run's results (e.g. the summary of repeats)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(_json_safe(doc), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def read_results(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{p}: unreadable results ({exc})") from None
    check_results(doc)
    return doc


# --- figures ------------------------------------------------------------------

def _baseline_lines(ax, baselines: Mapping, metric: str) -> None:
    styles = {"centralized": ("tab:green", "--"), "local_only": ("tab:red", ":"),
              "centralized_sklearn": ("tab:gray", "-.")}
    for name, (colour, style) in styles.items():
        value = (baselines.get(name) or {}).get(metric)  # null: skipped (--no-baselines), no line
        if isinstance(value, (int, float)) and math.isfinite(value):
            label = name.replace("_", "-") + (" (mean)" if name == "local_only" else "")
            ax.axhline(value, color=colour, linestyle=style, label=f"{label}: {value:.3f}")


def plot_results(out_dir: str | os.PathLike, results: Mapping) -> list[Path]:
    """``metric.png`` (primary metric of G(r) per round, G0 at round 0, the
    baselines as lines) and ``updates.png`` (accepted/rejected per round)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = primary_metric(results["final"])
    rounds = [e["round"] for e in results["rounds"]]
    values = [e["metrics"][metric] for e in results["rounds"]]
    title = _title(results.get("config", {}))

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot([0] + rounds, [results["initial"][metric]] + values, marker="o", label="global model G(r)")
    _baseline_lines(ax, results["baselines"], metric)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "metric.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 3.6))
    acc = [len(e["accepted"]) for e in results["rounds"]]
    rej_bad = [e["attackers_rejected"] for e in results["rounds"]]
    rej_good = [len(e["rejected"]) - b for e, b in zip(results["rounds"], rej_bad)]
    ax.bar(rounds, acc, color="tab:blue", label="accepted")
    ax.bar(rounds, rej_bad, bottom=acc, color="tab:red", label="rejected (attacker)")
    ax.bar(rounds, rej_good, bottom=[a + b for a, b in zip(acc, rej_bad)], color="tab:orange",
           label="rejected (honest)")
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("updates")
    ax.set_title("updates per round, as committed on chain\n" + title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "updates.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def rule_text(rule: Any, params: Mapping | None) -> str:
    """``krum (f=2, m=1)``: a rule and its parameters, as plot titles show them."""
    if not params:
        return str(rule)
    return f"{rule} ({', '.join(f'{k}={v}' for k, v in sorted(params.items()))})"


def _title(config: Mapping, seeds: Sequence | None = None) -> str:
    parts = [str(config.get(k)) for k in ("dataset", "model") if config.get(k)]
    if config.get("nodes"):
        parts.append(f"{config['nodes']} nodes")
    if config.get("split"):
        parts.append(str(config["split"]))
    if config.get("aggregator"):
        parts.append(rule_text(config["aggregator"], config.get("aggregator_params")))
    if config.get("byzantine"):
        parts.append(f"{config['byzantine']} x {config.get('attack')}")
    if seeds:
        parts.append(f"mean ± std over {len(seeds)} seed{'s' if len(seeds) != 1 else ''}")
    return ", ".join(parts)


def plot_repeats(out_dir: str | os.PathLike, summary: Mapping) -> Path:
    """``metric.png`` of a repeated run (learningchain/sim/repeats.py
    :func:`aggregate_runs`): the mean of the primary metric per round with a
    ±1 sample std band, the baselines' means as horizontal lines."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = primary_metric(summary["final"])
    points = [(0, summary["initial"][metric])] + [(e["round"], e["metrics"][metric]) for e in summary["rounds"]]
    points = [(r, st) for r, st in points if st and st.get("mean") is not None]
    xs = [r for r, _ in points]
    mean = [st["mean"] for _, st in points]
    std = [st["std"] or 0.0 for _, st in points]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    n = summary.get("repeats", {}).get("n", 1)
    ax.plot(xs, mean, marker="o", label=f"global model G(r), mean of {n}")
    ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                    alpha=0.25, label="± 1 std (sample, n - 1)")
    means = {k: ({metric: v[metric]["mean"]} if v and v.get(metric) else None)
             for k, v in (summary.get("baselines") or {}).items()}
    _baseline_lines(ax, means, metric)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.set_title(_title(summary.get("config", {}), summary.get("repeats", {}).get("seeds")), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out / "metric.png")


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _seeds_note(sweep: Mapping) -> str:
    seeds = (sweep.get("repeats") or {}).get("seeds")
    return f" (mean ± std over {len(seeds)} seeds)" if seeds else ""


def _line(ax, xs, ys, err, **kw) -> None:
    """A line, with error bars when ``err`` holds any."""
    if err is not None and any(e for e in err):
        ax.errorbar(xs, ys, yerr=[e or 0.0 for e in err], capsize=3, **kw)
    else:
        ax.plot(xs, ys, **kw)


def plot_byzantine_sweep(out_dir: str | os.PathLike, sweep: Mapping) -> list[Path]:
    """Two figures from a Byzantine sweep::

        {"metric": "accuracy", "attack": "sign-flip", "nodes": 10,
         "aggregators": {rule: {"byzantine": [0, 1, ...], "final": [...],
                                "per_round": {"<k>": [metric per round]}}}}

    ``byzantine.png``: final metric against the number of attackers, one line
    per rule. ``byzantine_rounds.png``: error (1 - accuracy, or the metric for
    regression) against rounds at the largest attacker count, one line per rule."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metric = sweep.get("metric", "accuracy")
    rules = sweep["aggregators"]
    std_rules = (sweep.get("std") or {}).get("aggregators") or {}
    note = _seeds_note(sweep)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for rule, data in rules.items():
        _line(ax, data["byzantine"], data["final"], (std_rules.get(rule) or {}).get("final"), marker="o",
              label=rule_text(rule, data.get("params")))
    ax.set_xlabel(f"attackers ({sweep.get('attack')}) of {sweep.get('nodes')} nodes")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"final {metric}")
    ax.set_title("final global model against the number of attackers" + note, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "byzantine.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.2))
    worst = None
    for rule, data in rules.items():
        per_round = data.get("per_round", {})
        if not per_round:
            continue
        worst = max(per_round, key=int)
        curve = per_round[worst]
        err = [1.0 - v for v in curve] if metric == "accuracy" else curve
        xs = list(range(1, len(err) + 1))
        line, = ax.plot(xs, err, marker=".", label=rule_text(rule, data.get("params")))
        spread = ((std_rules.get(rule) or {}).get("per_round") or {}).get(worst)
        if spread and any(spread):
            lo = [max(e - (d or 0.0), 1e-6) for e, d in zip(err, spread)]  # a log axis: keep the band above 0
            ax.fill_between(xs, lo, [e + (d or 0.0) for e, d in zip(err, spread)], color=line.get_color(),
                            alpha=0.2)
    ax.set_xlabel("round")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("test error" if metric == "accuracy" else metric)
    ax.set_yscale("log")
    ax.set_title(f"error per round with {worst} attacker(s) ({sweep.get('attack')})" + note, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "byzantine_rounds.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def plot_dp_sweep(out_dir: str | os.PathLike, sweep: Mapping) -> Path:
    """``dp.png``: final metric against epsilon, from
    ``{"metric", "points": [{"sigma", "epsilon", "final"}], "no_dp": value}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    std_points = (sweep.get("std") or {}).get("points") or [None] * len(sweep["points"])
    pairs = [(p, d) for p, d in zip(sweep["points"], std_points)
             if isinstance(p["epsilon"], (int, float)) and math.isfinite(p["epsilon"])]
    points = [p for p, _ in pairs]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    _line(ax, [p["epsilon"] for p in points], [p["final"] for p in points],
          [(d or {}).get("final") for _, d in pairs] if sweep.get("std") else None, marker="o",
          label="DP (clip + Gaussian noise)")
    for p in points:
        ax.annotate(f"σ={p['sigma']:g}", (p["epsilon"], p["final"]), fontsize=7,
                    textcoords="offset points", xytext=(3, 3))
    if sweep.get("no_dp") is not None:
        ax.axhline(sweep["no_dp"], color="tab:green", linestyle="--",
                   label=f"no DP: {sweep['no_dp']:.3f}")
    if points:  # a log axis needs a point: `--sigmas 0` has only the no-DP line (epsilon = inf)
        ax.set_xscale("log")
    else:
        ax.text(0.5, 0.5, "no noisy point (every sigma was 0): only the no-DP line", transform=ax.transAxes,
                ha="center", fontsize=9)
    ax.set_xlabel(f"epsilon (delta = {sweep.get('delta', 1e-5):g}) after all rounds")
    ax.set_ylabel(f"final {sweep.get('metric', 'accuracy')}")
    ax.set_title(f"privacy against accuracy, clip {sweep.get('clip')}" + _seeds_note(sweep), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, out / "dp.png")


def cumulative_energy(results: Mapping) -> list[float]:
    """Joules spent after each round (the rounds' ``energy.total_j`` summed)."""
    out, total = [], 0.0
    for e in results["rounds"]:
        total += e.get("energy", {}).get("total_j", 0.0)
        out.append(total)
    return out


def plot_energy(out_dir: str | os.PathLike, runs: Mapping[str, Mapping], name: str = "energy.png",
                std: Mapping[str, Mapping] | None = None, title: str = "") -> Path:
    """``energy.png``: primary metric of G(r) against the cumulative estimated
    energy of the network, one line per run (e.g. per selection policy); with
    ``std`` (runs shaped alike, repeats.mean_std_tree) vertical error bars."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    metric = "accuracy"
    for label, res in runs.items():
        metric = primary_metric(res["final"])
        xs = [0.0] + cumulative_energy(res)
        ys = [res["initial"][metric]] + [e["metrics"][metric] for e in res["rounds"]]
        spread = None
        if std and std.get(label):
            d = std[label]
            spread = [(d.get("initial") or {}).get(metric)] + [((e or {}).get("metrics") or {}).get(metric)
                                                               for e in d.get("rounds") or []]
        _line(ax, xs, ys, spread, marker=".", label=label)
    ax.set_xlabel("cumulative estimated energy (J)")
    ax.set_ylabel(metric)
    ax.set_title("global model against the energy spent" + title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_dp_curves(path: str | os.PathLike, curves: Mapping[str, Mapping], delta: float = 1e-5) -> Path:
    """Accuracy against epsilon, one panel per setup, from ``{setup: {"points":
    [(eps, accuracy)], "no_dp": acc, "centralized": acc}}`` (bench/dp.py)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(curves)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, c) in zip(axes.ravel(), curves.items()):
        pts = sorted(c["points"])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="DP-SGD (sample mode)")
        ax.axhline(c["no_dp"], color="tab:green", linestyle="--", label=f"non-private {c['no_dp']:.3f}")
        ax.axhline(c["centralized"], color="tab:gray", linestyle=":", label=f"centralized {c['centralized']:.3f}")
        ax.set_xscale("log", base=2)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"record-level epsilon (delta {delta:g})")
        ax.set_ylabel("final accuracy")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
