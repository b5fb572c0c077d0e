"""The experiment configs of configs/*.json run through the in-process simulator.

Prints one row per config: final metric, the reference it is judged against
(a baseline or the clean run), the gap, the config's target and whether the
run met it, and the seconds the simulation took; then where the time of the
largest run went. ``--seeds 0..4`` runs each config once per seed and reports
the same columns as mean ± sample std over the seeds, with n and how many
seeds met the target. Figures only, no assertions. ``--quick`` runs a subset;
results and figures go to out/bench/NAME/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from learningchain.sim.results import higher_is_better, plot_results, primary_metric, write_results  # noqa: E402
from learningchain.sim.config import load_config  # noqa: E402
from learningchain.sim.repeats import parse_seeds, pm, stats  # noqa: E402
from learningchain.sim.simulator import Simulation  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUICK = ("digits-4-iid-mlp", "diabetes-4-linear", "digits-10-iid", "digits-10-byz-signflip-krum",
         "digits-10-byz-signflip-fedavg")


def run(name: str, out_root: Path, seed: int | None = None) -> dict:
    over = {"out": str(out_root / name)} if seed is None else {"out": str(out_root / name), "seed": seed}
    cfg = load_config(ROOT / "configs" / f"{name}.json", over)
    target = cfg.target or {}
    with_baselines = bool({"baseline", "beats"} & set(target))
    res = Simulation(cfg).run(with_baselines=with_baselines)
    if with_baselines:
        write_results(cfg.out, res)
        plot_results(cfg.out, res)
    return res


def assess(res: dict, target: dict, clean: dict) -> dict:
    """The target of one run, as numbers: {"ref_name", "ref", "gap", "percent",
    "text", "ok"} (ref/gap None when the target has none, e.g. max_seconds)."""
    m = primary_metric(res["final"])
    final = res["final"][m]
    sign = 1 if higher_is_better(m) else -1
    if "max_seconds" in target:
        s = res["simulation_s"]
        return {"ref_name": None, "ref": None, "gap": None, "percent": False,
                "text": f"< {target['max_seconds']} s", "ok": s < target["max_seconds"]}
    if "clean" in target:
        ref = clean[target["clean"]]["final"][m]
        drop = sign * (ref - final)
        if "max_drop" in target:
            ok = drop <= target["max_drop"]
            text = f"drop <= {target['max_drop']:.2f}"
        else:
            ok = drop > target["min_drop"]
            text = f"drop > {target['min_drop']:.2f}"
        return {"ref_name": "clean", "ref": ref, "gap": drop, "percent": False, "text": text, "ok": ok}
    base = res["baselines"][target["baseline"]][m]
    if "max_rel_gap" in target:
        gap = sign * (base - final) / abs(base)
        ok = gap <= target["max_rel_gap"]
        text = f"rel gap <= {100 * target['max_rel_gap']:.0f}%"
        percent = True
    else:
        gap = sign * (base - final)
        ok = gap <= target["max_gap"]
        text = f"gap <= {target['max_gap']:.3f}"
        percent = False
    if "beats" in target:
        other = res["baselines"][target["beats"]][m]
        beats = sign * (final - other) > 0
        ok = ok and beats
        text += f", > {target['beats']} {other:.4f}"
    return {"ref_name": target["baseline"], "ref": base, "gap": gap, "percent": percent, "text": text, "ok": ok,
            "beats": other if "beats" in target else None}


def judge(res: dict, target: dict, clean: dict) -> tuple[str, str, str, str]:
    """(reference, gap, target text, met) for one run."""
    a = assess(res, target, clean)
    if a["ref"] is None:
        return "-", "-", a["text"], "yes" if a["ok"] else "NO"
    gap = f"{100 * a['gap']:+.2f}%" if a["percent"] else f"{a['gap']:+.4f}"
    return f"{a['ref_name']} {a['ref']:.4f}", gap, a["text"], "yes" if a["ok"] else "NO"


def ordered(names: list[str]) -> list[str]:
    """Clean references first, so that attacked runs can be judged against them."""
    refs = set()
    for n in names:
        target = json.loads((ROOT / "configs" / f"{n}.json").read_text()).get("target") or {}
        refs |= {target.get("clean"), target.get("clean_same_rule")}
    return sorted(names, key=lambda n: (0 if n == "digits-10-iid" else 1 if n in refs else 2, n))


def run_seeds(names: list[str], seeds: list[int], out_root: Path) -> int:
    """Each config once per seed; its target as mean ± sample std (n - 1) over the seeds."""
    print(f"seeds {','.join(map(str, seeds))}: mean ± sample std (n - 1) over the seeds; met = seeds meeting the target")
    print(f"{'config':<36} {'metric':<9} {'final':>17}  {'reference':<30} {'gap':>17}  "
          f"{'target':<40} {'met':>5} {'n':>2} {'s/seed':>6}")
    done: dict[int, dict[str, dict]] = {s: {} for s in seeds}
    start = time.perf_counter()
    for name in names:
        rows, secs = [], []
        for seed in seeds:
            res = run(name, out_root / f"seed-{seed}", seed)
            done[seed][name] = res
            rows.append(assess(res, res["config"].get("target") or {}, done[seed]))
            secs.append(res["simulation_s"])
        m = primary_metric(res["final"])
        final = stats([done[s][name]["final"][m] for s in seeds])
        scale = 100 if rows[0]["percent"] else 1
        unit = "%" if rows[0]["percent"] else ""
        ref = f"{rows[0]['ref_name']} {pm(stats([r['ref'] for r in rows]))}" if rows[0]["ref"] is not None else "-"
        gap = pm(stats([scale * r["gap"] for r in rows]), 2 if unit else 4) + unit if rows[0]["gap"] is not None else "-"
        met = sum(bool(r["ok"]) for r in rows)
        text = rows[0]["text"]
        if rows[0].get("beats") is not None:  # the other baseline over the seeds too, not seed 0's
            text = f"{text.rsplit(' ', 1)[0]} {pm(stats([r['beats'] for r in rows]))}"
        print(f"{name:<36} {m:<9} {pm(final):>17}  {ref:<30} {gap:>17}  {text:<40} "
              f"{met:>3}/{len(seeds):<1} {final['n']:>2} {sum(secs) / len(secs):>6.1f}", flush=True)
    print(f"\n{len(names)} configs x {len(seeds)} seeds in {time.perf_counter() - start:.1f} s")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--only", help="comma-separated config names")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    ap.add_argument("--seeds", type=parse_seeds, metavar="LIST",
                    help="run each config once per seed (0,1,2 or 0..4) and report its target as mean ± std")
    args = ap.parse_args()
    names = sorted(p.stem for p in (ROOT / "configs").glob("*.json"))
    if args.quick:
        names = [n for n in names if n in QUICK]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    names = ordered(names)
    if args.seeds is not None:
        return run_seeds(names, args.seeds, Path(args.out))
    print(f"{'config':<36} {'metric':<9} {'final':>8}  {'reference':<27} {'gap':>8}  "
          f"{'target':<40} {'met':<4} {'seconds':>8}")
    done: dict[str, dict] = {}
    largest = None
    for name in names:
        t0 = time.perf_counter()
        res = run(name, Path(args.out))
        seconds = time.perf_counter() - t0
        done[name] = res
        target = res["config"].get("target") or {}
        m = primary_metric(res["final"])
        ref, gap, text, met = judge(res, target, done)
        print(f"{name:<36} {m:<9} {res['final'][m]:>8.4f}  {ref:<27} {gap:>8}  {text:<40} {met:<4} "
              f"{res['simulation_s']:>8.1f}", flush=True)
        if target.get("clean_same_rule") in done:
            same = done[target["clean_same_rule"]]["final"][m]
            print(f"{'':<36} {'':<9} {'':>8}  {'same rule, no attack':<20} {same:.4f} "
                  f"{(same - res['final'][m]) * (1 if higher_is_better(m) else -1):>+8.4f}", flush=True)
        if largest is None or res["config"]["nodes"] > largest[1]["config"]["nodes"]:
            largest = (name, res, seconds)
    if largest:
        name, res, seconds = largest
        n = len(res["rounds"])
        tot = Counter()
        for e in res["rounds"]:
            tot.update(e["timing"])
        per_round = res["simulation_s"] / n
        print(f"\n{name}: {res['config']['nodes']} nodes x {n} rounds on {res['config']['full_nodes']} full "
              f"nodes: simulation {res['simulation_s']:.1f} s ({per_round:.2f} s per round), "
              f"{seconds:.1f} s including set-up; "
              f"{res['rounds'][0]['bytes'] / 1e6:.2f} MB of update txs per round")
        print("  per round: " + ", ".join(f"{k} {v / n:.3f} s ({100 * v / n / per_round:.0f}%)"
                                          for k, v in tot.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
