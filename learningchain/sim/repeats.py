"""Repeated experiments: the same configuration run once per seed, summarised.

Pure functions (no I/O): the CLI runs the seeds and writes the files.

Statistics: ``mean`` and the **sample** standard deviation (``n - 1`` in the
denominator, :data:`STD`) over the seeds that have a value; ``n`` counts them.
With one value the sample std is undefined and is ``None`` (null in JSON),
never 0, so that a single run cannot pass for a perfectly reproducible one.
Missing values (a run with fewer rounds, a ``None`` metric, a skipped
baseline) are left out of that point's ``n``; a point no run has is ``None``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

STD = "sample standard deviation (n - 1); null when n < 2"


def parse_seeds(text: str) -> list[int]:
    """``0,1,2`` or ``0..4`` (inclusive) or a mix (``0..2,7``): distinct seeds >= 0, in order.
    Raise ``ValueError`` with a one-line reason otherwise."""
    seeds: list[int] = []
    for item in (s.strip() for s in str(text).split(",")):
        if not item:
            continue
        lo, sep, hi = item.partition("..")
        try:
            first, last = (int(lo), int(hi)) if sep else (int(item), int(item))
        except ValueError:
            raise ValueError(f"{text!r}: seeds are integers >= 0, as 0,1,2 or 0..4") from None
        if first < 0 or last < first:
            raise ValueError(f"{text!r}: seeds are integers >= 0 and a range a..b needs a <= b")
        seeds.extend(s for s in range(first, last + 1) if s not in seeds)
    if not seeds:
        raise ValueError(f"{text!r}: give at least one seed, e.g. 0,1,2 or 0..4")
    return seeds


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def stats(values: Sequence[Any]) -> dict:
    """``{"mean", "std", "n", "values"}`` of the finite numbers among ``values``
    (``values`` keeps every entry, ``None`` included, in seed order)."""
    xs = [float(v) for v in values if _number(v)]
    n = len(xs)
    mean = sum(xs) / n if n else None
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n >= 2 else None
    return {"mean": mean, "std": std, "n": n, "values": list(values)}


def _metrics_stats(docs: Sequence[Mapping | None]) -> dict | None:
    present = [d for d in docs if d]
    if not present:
        return None
    names = [k for k in present[0] if _number(present[0][k]) or present[0][k] is None]
    return {k: stats([(d or {}).get(k) for d in docs]) for k in names}


def aggregate_runs(runs: Mapping[int, Mapping]) -> dict:
    """Summary of ``{seed: results}`` (results.json documents of one config)::

        {"repeats": {"seeds": [...], "n": runs, "std": STD},
         "config": first run's config without its seed,
         "initial" | "final": {metric: stats},
         "rounds": [{"round": r, "metrics": {metric: stats}}],     # r over all runs
         "baselines": {name: {metric: stats} | None},
         "privacy_epsilon": stats | absent}

    where ``stats`` is :func:`stats` (``values`` in the order of ``seeds``)."""
    if not runs:
        raise ValueError("no runs to aggregate")
    seeds = list(runs)
    docs = [runs[s] for s in seeds]
    config = {k: v for k, v in (docs[0].get("config") or {}).items() if k != "seed"}
    by_round: list[dict[int, Mapping]] = [{e["round"]: e for e in d.get("rounds", [])} for d in docs]
    all_rounds = sorted(set().union(*by_round))
    rounds = [{"round": r, "metrics": _metrics_stats([b[r]["metrics"] if r in b else None for b in by_round])}
              for r in all_rounds]
    names = []
    for d in docs:
        names += [k for k in (d.get("baselines") or {}) if k not in names and k != "note"]
    baselines = {k: _metrics_stats([(d.get("baselines") or {}).get(k) for d in docs]) for k in names}
    out = {"repeats": {"seeds": seeds, "n": len(seeds), "std": STD}, "config": config,
           "initial": _metrics_stats([d.get("initial") for d in docs]),
           "final": _metrics_stats([d.get("final") for d in docs]),
           "rounds": rounds, "baselines": baselines}
    eps = [next(iter((d.get("privacy") or {}).values()), {}).get("epsilon") for d in docs]
    if any(_number(e) for e in eps):
        out["privacy_epsilon"] = stats(eps)
    return out


def mean_std_tree(docs: Sequence[Any]) -> tuple[Any, Any]:
    """Two documents shaped like each of ``docs`` (one sweep per seed): every
    number replaced by its mean over the docs, and by its sample std.

    A leaf equal in every doc (an attacker count, a rule name) is kept as it is
    in the mean tree (std 0 for numbers, ``None`` for the rest); other
    non-numbers become ``None``; lists are taken element by element, dicts key
    by key over the union (missing entries leave that point's n)."""
    present = [d for d in docs if d is not None]
    if not present:
        return None, None
    first = present[0]
    if all(isinstance(d, Mapping) for d in present):
        keys: list = []
        for d in present:
            keys += [k for k in d if k not in keys]
        pairs = {k: mean_std_tree([d.get(k) for d in present]) for k in keys}
        return {k: p[0] for k, p in pairs.items()}, {k: p[1] for k, p in pairs.items()}
    if all(isinstance(d, (list, tuple)) for d in present):
        size = max(len(d) for d in present)
        pairs = [mean_std_tree([d[i] if i < len(d) else None for d in present]) for i in range(size)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    if all(_number(d) for d in present):
        s = stats(present)
        if all(d == first for d in present):
            return first, (0.0 if s["n"] >= 2 else None)
        return s["mean"], s["std"]
    if all(d == first for d in present):
        return first, None
    return None, None


def aggregate_sweeps(sweeps: Mapping[int, Mapping]) -> dict:
    """One sweep document per seed → the mean sweep (same shape, so the sweep
    plots read it) with ``"repeats": {"seeds", "n", "std"}``, ``"std"`` (the
    same shape, the sample std of each point) and ``"per_seed"``."""
    if not sweeps:
        raise ValueError("no sweeps to aggregate")
    seeds = list(sweeps)
    docs = [{k: v for k, v in sweeps[s].items() if k != "provenance"} for s in seeds]
    mean, std = mean_std_tree(docs)
    return {**mean, "repeats": {"seeds": seeds, "n": len(seeds), "std": STD}, "std": std,
            "per_seed": {str(s): d for s, d in zip(seeds, docs)}}


def pm(s: Mapping | None, digits: int = 4) -> str:
    """``0.9123 ± 0.0100`` of a :func:`stats` (``± -`` when std is null, ``-`` when no value)."""
    if not s or s.get("mean") is None:
        return "-"
    std = "-" if s.get("std") is None else f"{s['std']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {std}"
